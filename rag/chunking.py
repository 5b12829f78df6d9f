"""Japanese-aware chunking: sentences packed into chunks sized in embedding-model tokens.

A chunk never starts inside a sentence unless the sentence alone exceeds the budget; a heading
starts a new chunk and stays with the text it heads; consecutive chunks of one section share a
small overlap of whole sentences. The post title is prepended to the text that gets embedded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .corpus import Post, split_blocks
from .text import is_fence, split_sentences

TokenCounter = Callable[[str], int]
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    post_id: str
    ord: int
    text: str        # what is shown and cited: section heading + passage
    embed_text: str  # what is embedded and keyword-indexed: title + text
    tokens: int


MAX_CHARS_PER_TOKEN = 32  # a piece is looked for within budget * this many characters


def _hard_split(sentence: str, budget: int, count: TokenCounter) -> list[str]:
    """Split an over-long sentence at character positions so each piece fits the budget.

    Each piece is searched for in a window of budget * MAX_CHARS_PER_TOKEN characters from the
    current position, so a 2 MB line without sentence breaks (a base64 image) costs linear time.
    """
    pieces = []
    start, n = 0, len(sentence)
    window_chars = max(1, budget) * MAX_CHARS_PER_TOKEN
    while start < n:
        end = min(n, start + window_chars)
        if end == n and count(sentence[start:]) <= budget:
            pieces.append(sentence[start:])
            break
        lo, hi = 1, end - start
        while lo < hi:  # longest prefix that fits
            mid = (lo + hi + 1) // 2
            if count(sentence[start:start + mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = lo
        back = max(1, cut - 20)
        window = sentence[start + back:start + cut]
        for sep in ("、", "，", ",", " ", "・"):
            pos = window.rfind(sep)
            if pos >= 0:
                cut = back + pos + 1
                break
        pieces.append(sentence[start:start + cut])
        start += cut
    return pieces


def _units(block: str) -> list[str]:
    """Sentences of a paragraph; a code block is split into lines, list items stay whole."""
    if is_fence(block.lstrip()):
        return [line + "\n" for line in block.splitlines()]
    units = []
    for line in block.split("\n"):
        sents = split_sentences(line, keep_quotes=False)
        if sents:
            sents[-1] = sents[-1].rstrip("\n") + "\n"
        units.extend(sents)
    return units


def chunk_post(post: Post, count: TokenCounter, max_tokens: int = 200, overlap_tokens: int = 40) -> list[Chunk]:
    """Cut a cleaned post into chunks; pure given the token counter."""
    sections: list[tuple[str, list[str]]] = []  # (heading path, units)
    headings: list[tuple[int, str]] = []
    current: list[str] = []

    def flush():
        if current:
            sections.append((" > ".join(h for _, h in headings), list(current)))
            current.clear()

    for block in split_blocks(post.body):
        m = _HEADING_RE.match(block.strip())
        if m and "\n" not in block.strip():
            flush()
            level = len(m.group(1))
            headings[:] = [(lv, h) for lv, h in headings if lv < level] + [(level, m.group(2))]
            continue
        units = _units(block)
        if current and units:
            current[-1] = current[-1].rstrip("\n") + "\n\n"
        current.extend(units)
    flush()

    texts: list[str] = []
    for heading, units in sections:
        head = f"## {heading}\n" if heading else ""
        budget = max(16, max_tokens - (count(head) if head else 0))
        sized: list[tuple[str, int]] = []
        for u in units:
            n = count(u)
            if n > budget:
                sized.extend((p, count(p)) for p in _hard_split(u, budget, count))
            else:
                sized.append((u, n))
        i = 0
        while i < len(sized):
            start = i
            total = 0
            while i < len(sized) and (total + sized[i][1] <= budget or i == start):
                total += sized[i][1]
                i += 1
            texts.append(head + "".join(u for u, _ in sized[start:i]).strip())
            if i < len(sized):
                back, carried = i, 0
                while back - 1 > start and carried + sized[back - 1][1] <= overlap_tokens:
                    back -= 1
                    carried += sized[back][1]
                i = back if back > start else i
    chunks = []
    for n, text in enumerate(t for t in texts if t.strip()):
        chunks.append(Chunk(
            chunk_id=f"{post.post_id}#{n}",
            post_id=post.post_id,
            ord=n,
            text=text,
            embed_text=f"{post.title}\n{text}",
            tokens=count(text),
        ))
    return chunks


def _split_head(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    return (first, rest) if first.startswith("## ") else ("", text)


def join_chunks(texts: list[str], min_overlap: int = 8) -> str:
    """A post's cleaned text from its chunks, in order: each section heading once, the sentences that
    consecutive chunks share once (the inverse of `chunk_post`, up to whitespace at chunk borders)."""
    out: list[str] = []
    prev_head, prev_body = None, ""
    for text in texts:
        head, body = _split_head(text)
        if head == prev_head and out:
            k = next((k for k in range(min(len(prev_body), len(body)), min_overlap - 1, -1)
                      if prev_body.endswith(body[:k])), 0)
            rest = body[k:]
            if rest.strip():
                out.append(rest if k else "\n" + rest)
            prev_body = body
            continue
        if out:
            out.append("\n\n")
        out.append(f"{head}\n{body}" if head else body)
        prev_head, prev_body = head, body
    return "".join(out).strip()
