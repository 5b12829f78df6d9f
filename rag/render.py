"""The sources panel as a reader reads it: one card per post, its passages rendered as safe Markdown.

Safety: passages are CommonMark rendered by markdown-it with raw HTML off, so `<script>` or an
`onerror=` attribute in a post shows as text; links survive only to http(s) URLs, images become
links. The supporting sentences are marked with two private-use characters before rendering (moved
off the block markers Markdown reads, `lift_sentinels`) and turned into `<mark>` afterwards, split
at every tag so the result stays well nested.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any, Collection, Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .generation import fallback_quotes
from .i18n import t
from .metadata import without_header
from .text import content_bigrams, split_segments

MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
_SENTINELS = re.compile(f"[{MARK_OPEN}{MARK_CLOSE}]")


def esc(text: Any) -> str:
    """HTML-escape anything (None -> "")."""
    return html.escape("" if text is None else str(text), quote=True)


def link_url(url: str | None) -> str | None:
    """Only absolute http(s) URLs become links (no `javascript:`, no paths relative to this server)."""
    if not url:
        return None
    u = str(url).strip()
    return u if re.match(r"^https?://[^\s\"'<>]+$", u, re.I) else None


def public_url(url: str | None, site_url: str = "") -> str | None:
    """A post's address for a reader: absolute as it is; a site-relative path joined to `site_url`
    when one is configured; otherwise None (the caller shows the path as text)."""
    u = (url or "").strip()
    if link_url(u):
        return u
    if u.startswith("/") and not u.startswith("//") and link_url(site_url):
        return link_url(site_url.rstrip("/") + u)
    return None


# ------------------------------------------------------------------ which sentences support a claim

def marked_segments(segs: Sequence[str], claims: Sequence[str], min_claim_share: float = 0.3,
                    min_sentence_share: float = 0.6) -> set[int]:
    """Indices of the segments that support the claims.

    For each claim, the segment sharing the most content bigrams with it is marked when that overlap
    covers at least `min_claim_share` of the claim's bigrams; any segment whose own bigrams are mostly
    (`min_sentence_share`) in a claim is marked too (a claim spanning several sentences).
    """
    grams = [content_bigrams(s) for s in segs]
    marked: set[int] = set()
    for claim in claims:
        c = content_bigrams(claim)
        if not c:
            continue
        overlaps = [len(g & c) for g in grams]
        if overlaps and max(overlaps) > 0:
            best = max(range(len(segs)), key=lambda i: overlaps[i])
            if overlaps[best] / len(c) >= min_claim_share:
                marked.add(best)
        for i, g in enumerate(grams):
            if len(g) >= 4 and overlaps[i] / len(g) >= min_sentence_share:
                marked.add(i)
    return marked


def with_mark_sentinels(passage: str, claims: Sequence[str]) -> str:
    """The passage (sentinels from the post removed) with MARK_OPEN/MARK_CLOSE around supporting sentences."""
    segs = split_segments(_SENTINELS.sub("", passage or ""))
    marked = marked_segments(segs, claims) if claims else set()
    out = []
    for i, s in enumerate(segs):
        if i in marked:
            body = s.rstrip("\n")
            out.append(MARK_OPEN + body + MARK_CLOSE + s[len(body):])
        else:
            out.append(s)
    return "".join(out)


def apply_marks(fragment: str) -> str:
    """Sentinels -> `<mark>`, closed before and reopened after every tag so marks never straddle one."""
    out, open_ = [], False
    for piece in re.split(r"(<[^>]*>)", fragment):
        if piece.startswith("<"):
            out.append("</mark>" + piece + "<mark>" if open_ else piece)
            continue
        for ch in re.split(f"([{MARK_OPEN}{MARK_CLOSE}])", piece):
            if ch == MARK_OPEN:
                if not open_:
                    out.append("<mark>")
                open_ = True
            elif ch == MARK_CLOSE:
                if open_:
                    out.append("</mark>")
                open_ = False
            else:
                out.append(ch)
    if open_:
        out.append("</mark>")
    return "".join(out).replace("<mark></mark>", "")


# ------------------------------------------------------------------ safe Markdown

# Lines whose shape is their meaning (a fence with text after it is no fence): their sentinels move
# to the start of the next line. Blank lines, fences, rules and setext underlines, table delimiters.
_STRUCTURAL = re.compile(r"^[ \t]*(?:(?:`{3,}|~{3,}).*|=+|-+|([-*_])(?:[ \t]*\1){2,}"
                         r"|\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?)?[ \t]*$")
# Block markers opening a line, nested ones too (`> - `); sentinels go behind them.
_MARKERS = re.compile(r"(?:(?:[-*+]|\d{1,9}[.)]|#{1,6})(?:[ \t]+|$)|>[ \t]?|\|[ \t]*)*")
_LINE_LEAD = re.compile(f"[ \t{MARK_OPEN}{MARK_CLOSE}]*")
_BETWEEN_TAGS = re.compile(r">\n+(?=<)")


def _marks(text: str) -> str:
    return "".join(_SENTINELS.findall(text))


def _row_close(body: str) -> str:
    """`a | b |` + sentinels -> `a | b ` + sentinels + `|`: text after a row's last pipe is a cell of its own."""
    core = body.rstrip(MARK_OPEN + MARK_CLOSE + " \t")
    if not core.endswith("|") or core == body:
        return body
    tail, cell = body[len(core):], core[:-1].rstrip(" \t")
    return cell + _marks(tail) + core[len(cell):] + _SENTINELS.sub("", tail)


def lift_sentinels(text: str) -> str:
    """The mark sentinels moved where Markdown does not read them: from the start of a line to behind
    its block markers (`- `, `## `, `> `, `| `), from after a table row's last `|` to before it, and
    off structural lines (`_STRUCTURAL`) to the next line. Text and line structure are unchanged."""
    out, carry = [], ""
    for line in text.split("\n"):
        bare = _SENTINELS.sub("", line)
        if _STRUCTURAL.fullmatch(bare):
            out.append(bare)
            carry += _marks(line)
            continue
        lead = _LINE_LEAD.match(line).group(0)
        rest = line[len(lead):]
        markers = _MARKERS.match(rest).group(0)
        out.append(_SENTINELS.sub("", lead) + markers + carry + _marks(lead) + _row_close(rest[len(markers):]))
        carry = ""
    return "\n".join(out)


@functools.cache
def _markdown() -> MarkdownIt:
    """CommonMark with tables and ~~strike~~; raw HTML is text, images are links (no remote loads from
    a post), newlines inside a paragraph stay line breaks. Every link is parsed (then `_safe_links`
    keeps only http(s) ones), so `[x](javascript:...)` shows as `x`, not as its source."""
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "xhtmlOut": False})
    md.enable(["table", "strikethrough"]).disable("image")
    md.validateLink = lambda url: True
    return md


def _safe_links(children: list[Token]) -> list[Token]:
    """Links to http(s) URLs open in a new tab; any other link (javascript:, data:, a path on this
    server) loses its tags and leaves its text."""
    kept, drop_close = [], False
    for tok in children:
        if tok.type == "link_open":
            url = link_url(tok.attrGet("href"))
            drop_close = url is None
            if drop_close:
                continue
            tok.attrs = {"href": url, "target": "_blank", "rel": "noopener noreferrer nofollow"}
        elif tok.type == "link_close" and drop_close:
            drop_close = False
            continue
        kept.append(tok)
    return kept


def render_markdown(text: str) -> str:
    """A passage's Markdown as safe HTML (markdown-it, `_markdown`): nothing in it becomes markup it
    did not ask for, headings sit three levels down (h4..h6 inside a card), no whitespace between
    tags (a `<mark>` reopened there would be stray text). Sentinels survive, moved off the block
    syntax (`lift_sentinels`)."""
    md = _markdown()
    tokens = md.parse(lift_sentinels((text or "").replace("\r\n", "\n").replace("\r", "\n")))
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(6, int(tok.tag[1]) + 3)}"
        elif tok.type == "inline" and tok.children:
            tok.children = _safe_links(tok.children)
    return _BETWEEN_TAGS.sub(">", md.renderer.render(tokens, md.options, {})).strip()


def render_passage(passage: str, claims: Sequence[str] = ()) -> str:
    """A passage as safe HTML with its supporting sentences in `<mark>`."""
    return apply_marks(render_markdown(with_mark_sentinels(passage, claims)))


# ------------------------------------------------------------------ cards

def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _ord(chunk_id: str | None) -> int:
    try:
        return int(str(chunk_id).rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return 0


def group_sources(sources: Sequence[dict], n_cited: int, quoted: Collection[int] = ()) -> tuple[list[dict], list[dict]]:
    """(cited cards, other cards): one card per post, posts in order of their first number, passages
    in reading order. A passage is cited when its number is at most `n_cited` (or the extractive
    fallback of an ungrounded answer `quoted` it); the uncited passages of every post go to the other cards."""
    cited: dict[str, dict] = {}
    other: dict[str, dict] = {}
    for s in sorted(sources, key=lambda s: int(s["n"])):
        target = cited if int(s["n"]) <= n_cited or int(s["n"]) in quoted else other
        key = s.get("post_id") or s.get("title") or str(s["n"])
        card = target.setdefault(key, {"post_id": s.get("post_id"), "title": s.get("title"), "date": s.get("date"),
                                       "url": s.get("url"), "tags": list(s.get("tags") or []), "passages": []})
        card["passages"].append(s)
    cards = (list(cited.values()), list(other.values()))
    for group in cards:
        for card in group:
            card["passages"].sort(key=lambda s: (_ord(s.get("chunk_id")), int(s["n"])))
    return cards


def _day(date: str | None, lang: str) -> str:
    return (date or "")[:10] or t(lang, "no_date")


def _card_html(card: dict, lang: str, cited: bool, claims: Sequence[dict], supported: dict,
               site_url: str, quoted: dict[int, list[str]] | None = None) -> str:
    quoted = quoted or {}
    title = esc(card.get("title") or card.get("post_id") or t(lang, "untitled"))
    url = public_url(card.get("url"), site_url)
    if url:
        title_html = f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{title}</a>'
    else:
        title_html = f'<span class="rag-title">{title}</span>'
        if card.get("url"):
            title_html += f' <code class="rag-path">{esc(card["url"])}</code>'
    nums = "".join(f'<span class="rag-n">[{int(s["n"])}]</span>' for s in card["passages"])
    tags = "".join(f'<span class="rag-tag">{esc(x)}</span>' for x in card.get("tags") or [])
    passages = []
    for s in card["passages"]:
        n = int(s["n"])
        mine = [c.get("text", "") for c in claims if n in (c.get("citations") or [])] if cited else []
        flag = ""
        if n in quoted:  # an ungrounded answer: nothing of the model's is confirmed, mark what the fallback quotes
            mine = quoted[n]
            flag = f'<span class="rag-flag rag-flag-quoted">{esc(t(lang, "quoted_fallback"))}</span>'
        elif not cited:
            flag = f'<span class="rag-flag rag-flag-uncited">{esc(t(lang, "not_cited"))}</span>'
        if cited and supported.get(n) is False:
            flag += f'<span class="rag-flag rag-flag-warn">{esc(t(lang, "claim_unconfirmed"))}</span>'
        passages.append(f'<div class="rag-passage" data-n="{n}"><div class="rag-passage-n">'
                        f'<span class="rag-n">[{n}]</span>{flag}</div>'
                        f'<div class="rag-md">{render_passage(without_header(s.get("text") or ""), mine)}</div></div>')
    return (f'<details class="rag-src rag-card {"rag-cited" if cited else "rag-uncited"}" open>'
            f'<summary class="rag-src-head">{nums} {title_html}'
            f' <span class="rag-date">{esc(_day(card.get("date"), lang))}</span></summary>'
            f'<div class="rag-tags">{tags}</div>{"".join(passages)}</details>')


def format_sources_html(answer: Any, lang: str = "en", site_url: str = "") -> str:
    """The sources panel: a card per post with the passages the answer used, numbered like its `[n]`;
    the other passages collapsed under one line."""
    mode = _get(answer, "mode")
    sources = _get(answer, "sources") or []
    n_cited = len(_get(answer, "citations") or [])
    heading = t(lang, {"refused": "nearest", "error": "retrieved"}.get(mode, "sources"))
    if not sources:
        return sources_message(lang, "no_passages", heading)
    supported = {c.get("n"): c.get("supported") for c in _get(answer, "citations") or []}
    claims = _get(answer, "claims") or []
    quoted = fallback_quotes(answer)  # source n -> sentences the extractive fallback quotes from it
    cited, other = group_sources(sources, n_cited, quoted)
    parts = [_card_html(c, lang, True, claims, supported, site_url, quoted) for c in cited]
    others = [_card_html(c, lang, False, claims, supported, site_url, quoted) for c in other]
    if others and cited:
        n_other = sum(len(c["passages"]) for c in other)
        parts.append(f'<details class="rag-others"><summary>{esc(t(lang, "other_passages", n=n_other))}</summary>'
                     f'{"".join(others)}</details>')
    else:  # nothing cited (a refusal, an error): the passages are all there is
        parts += others
    return f'<div class="rag-sources" lang="{esc(lang)}"><h3>{esc(heading)}</h3>{"".join(parts)}</div>'


def sources_message(lang: str, key: str, heading: str | None = None) -> str:
    """The sources panel holding only a message (empty, searching)."""
    return (f'<div class="rag-sources" lang="{esc(lang)}"><h3>{esc(heading or t(lang, "sources"))}</h3>'
            f'<p class="rag-empty">{esc(t(lang, key))}</p></div>')


def mode_badge(mode: str | None, lang: str, model: str = "") -> str:
    """A one-word badge for how the answer was made; a click opens the explanation."""
    if mode not in ("extractive", "llm", "refused", "error"):
        return ""
    return (f'<details class="rag-mode rag-mode-{mode}"><summary>{esc(t(lang, "badge_" + mode))}</summary>'
            f'<span class="rag-mode-why">{esc(t(lang, "explain_" + mode, model=model or "?"))}</span></details>')


def starter_questions(posts: Sequence[dict], lang: str, n: int = 3) -> list[str]:
    """Questions to start from, made from the archive's most recent dated posts' titles."""
    dated = [p for p in posts if p.get("title")]
    dated.sort(key=lambda p: (p.get("date") or "")[:10], reverse=True)
    out: list[str] = []
    for p in dated:
        q = t(lang, "starter", title=" ".join(str(p["title"]).split()))
        if q not in out:
            out.append(q)
        if len(out) >= n:
            break
    return out
