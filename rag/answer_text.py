"""An answer as text: plain text for `rag ask`, the `/ask` API, the MCP tool and `/v1`, and the
escaped Markdown of the web chat's message.

One home for turning an `Answer` into words, below the servers and free of Gradio, so the CLI, the
page, the MCP tools and the OpenAI-compatible API import it instead of each other. All of them say
the same things in the same order (`generation.reader_blocks`: notice, fallback, heading, answer),
then the statements the cited sources do not support, then the numbered sources. The sources panel
(HTML cards) is rag/render.py's.
"""

from __future__ import annotations

import html
import re
from typing import Any, Collection, Sequence

from .generation import fallback_quotes, reader_blocks, source_label
from .i18n import t
from .metadata import without_header
from .render import mode_badge


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of an `Answer` or of its JSON (`Answer.as_json()`): both are rendered."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _unsupported(answer: Any) -> list[dict]:
    """The claims the cited sources do not support; none for an answer not matched to the archive at
    all (grounded "no": its notice already says so)."""
    if _get(answer, "grounded") == "no":
        return []
    return [c for c in _get(answer, "claims") or [] if not c.get("supported")]


def _source_note(n: int, n_cited: int, quoted: Collection[int]) -> str:
    """Why an uncited source is listed: quoted by the extractive fallback, or not cited at all ("" when cited)."""
    if n <= n_cited:
        return ""
    return "quoted in the extractive answer" if n in quoted else "not cited"


# ------------------------------------------------------------------ plain text

def api_answer_text(answer: Any) -> str:
    """Plain text for the `/ask` API, the `ask_archive` MCP tool and `/v1`: the answer, then the
    numbered source list."""
    mode = _get(answer, "mode")
    parts = []
    if mode == "error":
        parts.append("Error: the chat model failed; the answer could not be completed.")
    parts += [block for _, block in reader_blocks(answer)]
    unsupported = _unsupported(answer) if mode not in ("refused", "error") else []
    if unsupported:
        parts.append("Not supported by the cited sources:\n" + "\n".join(
            f"- {' '.join(str(c.get('text', '')).split())}" for c in unsupported))
    sources = _get(answer, "sources") or []
    if sources:
        n_cited, quoted = len(_get(answer, "citations") or []), fallback_quotes(answer)
        lines = ["Nearest passages:" if mode == "refused" else "Sources:"]
        for s in sources:
            url = f" {s['url']}" if s.get("url") else ""
            note = _source_note(s["n"], n_cited, quoted)
            lines.append(f"{source_label(s)}{url}" + (f" ({note})" if note else ""))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def cli_answer_text(answer: Any, streamed: bool = False) -> str:
    """What `rag ask` prints of the answer itself. `streamed`: the answer's text was already written to
    the terminal as it came, so only what comes around it (a notice, the extractive fallback) is left."""
    blocks = reader_blocks(answer)
    if streamed:
        blocks = [b for b in blocks if b[0] in ("notice", "fallback")]
    return "\n\n".join(text for _, text in blocks)


def cli_footer_text(answer: Any) -> str:
    """What `rag ask` prints after the answer: the unsupported statements, then the sources with a
    snippet each ("" when there are neither)."""
    lines = []
    unsupported = _unsupported(answer)
    if unsupported:
        lines.append(f"\n! {len(unsupported)} statement(s) not supported by the cited sources:")
        lines += [f"  - {c['text']}" for c in unsupported]
    sources = _get(answer, "sources") or []
    if sources:
        lines.append("\nSources:" if _get(answer, "mode") != "refused" else "\nNearest passages:")
        lines.append(cli_sources_text(sources, len(_get(answer, "citations") or []), fallback_quotes(answer)))
    return "\n".join(lines)


def cli_sources_text(sources: Sequence[dict], n_cited: int, quoted: Collection[int] = ()) -> str:
    """The numbered sources for a terminal: label, `<url>`, why an uncited one is listed, and the
    first 200 characters of the passage (without the front-matter line: title and date are above)."""
    lines = []
    for src in sources:
        note = _source_note(src["n"], n_cited, quoted)
        where = f" <{src['url']}>" if src.get("url") else ""
        lines.append(f"{source_label(src)}{where}" + (f"  ({note})" if note else ""))
        lines.append("    " + " ".join(without_header(src["text"]).split())[:200])
    return "\n".join(lines)


# ------------------------------------------------------------------ Markdown (the web chat)

_MD_CHARS = re.compile(r"([\\`*_\[\]|~$])")
_MD_LINE_START = re.compile(r"^([ \t]*)([#+=-]|\d+[.)])", re.M)
_LEADING_WS = re.compile(r"^[ \t]+", re.M)


def md_escape(text: Any) -> str:
    """Text shown literally inside Markdown: no HTML, no links, emphasis, code, headings, lists or LaTeX."""
    s = "" if text is None else str(text)
    s = _MD_CHARS.sub(r"\\\1", s)
    s = _MD_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)
    s = html.escape(s, quote=True)
    # leading indentation would make an (unescaped, literal) code block: keep it as non-breaking spaces
    return _LEADING_WS.sub(lambda m: "&nbsp;" * len(m.group(0).expandtabs(4)), s)


def strip_note(text: str, notes: Sequence[str]) -> str:
    """The answer without a leading mode note (the badge says it instead)."""
    body = (text or "").lstrip()
    for note in notes:
        note = (note or "").strip()
        if note and body.startswith(note):
            return body[len(note):].lstrip("\n")
    return text or ""


def format_answer_markdown(answer: Any, lang: str = "en", notes: Sequence[str] = (), model: str = "") -> str:
    """The chat message for a final answer: the mode badge, the escaped text (without the mode note,
    `notes`, that the badge replaces), then warnings (unsupported claims, errors), in `lang`."""
    mode = _get(answer, "mode")
    text = strip_note(_get(answer, "answer") or "", notes)
    badge = mode_badge(mode, lang, model)
    badge = badge + "\n\n" if badge else ""  # an HTML block of its own, floated beside the text by CSS
    parts: list[str] = []
    if mode == "error":  # the detail (endpoint host, upstream text) goes to the server log, not to readers
        parts.append(t(lang, "error_head"))
        if text.strip():
            parts.append(t(lang, "partial_answer") + "\n\n" + md_escape(text.strip()))
        return badge + "\n\n".join(parts)
    if mode == "refused":
        parts.append(t(lang, "refused_head"))
        parts.append(md_escape(text.strip()))
        return badge + "\n\n".join(parts)
    for kind, block in reader_blocks(answer):
        if kind == "notice":
            parts.append(f"**{md_escape(block)}**")
        elif kind == "heading":
            parts.append(f"*{md_escape(block)}*")
        elif kind == "answer" and _get(answer, "grounded") == "no" and _get(answer, "model_answer") is None:
            parts.append("\n".join("> " + line for line in md_escape(block).split("\n")))  # set apart
        else:
            parts.append(md_escape(strip_note(block, notes).strip()))
    unsupported = _unsupported(answer)
    if unsupported:
        lines = [t(lang, "unsupported_head")]
        for c in unsupported:
            cites = "".join(f"\\[{n}\\]" for n in c.get("citations") or [])
            why = t(lang, "not_found_in", cites=cites) if cites else t(lang, "no_citation")
            lines.append(f"- {md_escape(' '.join(str(c.get('text', '')).split()))} — *{why}*")
        parts.append("\n".join(lines))
    invalid = _get(answer, "invalid_citations") or []
    if invalid:
        parts.append(t(lang, "invalid_citations", cites=", ".join(f"\\[{int(n)}\\]" for n in invalid)))
    return badge + "\n\n".join(parts)
