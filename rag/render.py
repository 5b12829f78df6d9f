"""The sources panel as a reader reads it: one card per post, its passages rendered as safe Markdown.

Safety: a passage is HTML-escaped *first*; only then is a small Markdown subset (headings, lists,
block quotes, code blocks, inline code, bold, http(s) links) turned into tags this module writes.
So nothing a post contains can become markup: `<script>` shows as text.
The supporting sentences are marked with two private-use characters before rendering and turned
into `<mark>` afterwards, split at every tag so the result stays well nested.
"""

from __future__ import annotations

import html
import re
from typing import Any, Collection, Sequence

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

_FENCE = re.compile(r"^\s*(```+|~~~+)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_ORDERED = re.compile(r"^(\s*)\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_LEAD = re.compile(f"^([ \\t]*)([{MARK_OPEN}{MARK_CLOSE}]*)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")


def _inline(text: str) -> str:
    """One line of Markdown as HTML: escaped text, code spans, bold, http(s) links (others stay text)."""
    out = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_inline_text(text[pos:m.start()]))
        out.append(f"<code>{esc(m.group(2))}</code>")
        pos = m.end()
    out.append(_inline_text(text[pos:]))
    return "".join(out)


def _inline_text(text: str) -> str:
    s = esc(text)  # escaped first: what follows only adds our own tags around escaped text

    def link(m: re.Match) -> str:
        url = link_url(html.unescape(m.group(2)))
        if not url:
            return m.group(1)
        return f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer nofollow">{m.group(1)}</a>'

    s = _LINK.sub(link, s)
    return _BOLD.sub(r"<strong>\1</strong>", s)


def _split_lead(line: str) -> tuple[str, str]:
    """Sentinels right at the start of a line are moved behind its block marker (`- `, `## `)."""
    m = _LEAD.match(line)
    return m.group(2), m.group(1) + line[m.end():]


def render_markdown(text: str) -> str:
    """A safe subset of Markdown as HTML (see the module docstring). Sentinels pass through untouched."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []
    list_kind: str | None = None

    def flush_para():
        if para:
            out.append("<p>" + "<br>".join(_inline(x) for x in para) + "</p>")
            para.clear()

    def close_list():
        nonlocal list_kind
        if list_kind:
            out.append(f"</{list_kind}>")
            list_kind = None

    i = 0
    while i < len(lines):
        lead, line = _split_lead(lines[i])
        fence = _FENCE.match(line)
        if fence:
            flush_para()
            close_list()
            marker = fence.group(1)
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker[:3]):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of a passage cut inside a code block)
            out.append("<pre><code>" + lead + esc("\n".join(body)) + "</code></pre>")
            continue
        if not line.strip():
            flush_para()
            close_list()
            if lead:
                out.append(lead)
            i += 1
            continue
        heading, bullet, ordered = _HEADING.match(line), _BULLET.match(line), _ORDERED.match(line)
        quote, rule = _QUOTE.match(line), _RULE.match(line)
        if heading:
            flush_para()
            close_list()
            level = min(6, len(heading.group(1)) + 3)  # h4..h6 inside a card
            out.append(f"<h{level}>{lead}{_inline(heading.group(2))}</h{level}>")
        elif rule:
            flush_para()
            close_list()
            out.append(lead + "<hr>")
        elif bullet or ordered:
            flush_para()
            kind = "ul" if bullet else "ol"
            if list_kind != kind:
                close_list()
                out.append(f"<{kind}>")
                list_kind = kind
            m = bullet or ordered
            depth = min(3, len(m.group(1).expandtabs(4)) // 2)
            cls = f' class="rag-depth{depth}"' if depth else ""
            out.append(f"<li{cls}>{lead}{_inline(m.group(2))}</li>")
        elif quote:
            flush_para()
            close_list()
            out.append(f"<blockquote>{lead}{_inline(quote.group(1))}</blockquote>")
        else:
            close_list()
            para.append(lead + line.strip())
        i += 1
    flush_para()
    close_list()
    return "".join(out)


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


def strip_note(text: str, notes: Sequence[str]) -> str:
    """The answer without a leading mode note (the badge says it instead)."""
    body = (text or "").lstrip()
    for note in notes:
        note = (note or "").strip()
        if note and body.startswith(note):
            return body[len(note):].lstrip("\n")
    return text or ""


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
