"""Context assembly: what the answerer reads, built from the retrieved chunks.

A 200-token chunk often stops one sentence short of the answer, and the five best chunks of a
long post are five fragments of one text. So the hits are grouped by post (best post first),
each hit grows into its neighbouring chunks (same section first) while a character budget
allows, and each post becomes one source whose pieces are joined in reading order with the
chunks' sentence overlap removed. The functions below are pure except `fetch_neighbours`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from .retrieval import Hit

GAP = "\n…\n"  # between non-adjacent pieces of one post


@dataclass
class Source(Hit):
    """A post's assembled text; a Hit (fields of its best chunk) plus the chunks it holds."""

    chunk_ids: list[str] = field(default_factory=list)


def chunk_ord(chunk_id: str) -> int:
    """`post#3` -> 3 (chunk ids are `post_id#ord`)."""
    return int(chunk_id.rsplit("#", 1)[1])


def heading_of(text: str) -> str:
    """The `## a > b` line a chunk starts with ('' when it has none)."""
    first = text.split("\n", 1)[0]
    return first if first.startswith("## ") else ""


def join_adjacent(a: str, b: str, min_overlap: int = 4) -> str:
    """Text of chunk a followed by chunk b (the next chunk of the post), without their overlap.

    Consecutive chunks of one section repeat the heading and share a few whole sentences; b
    starts with its heading line and then with the end of a.
    """
    head = heading_of(b)
    body = b[len(head) + 1:] if head else b
    if head and head == heading_of(a):
        for i in range(max(0, len(a) - len(body)), len(a) - min_overlap + 1):
            if body.startswith(a[i:]):
                return a[:i] + body
        return a + "\n\n" + body
    return a + "\n\n" + b


def plan(hit_ords: Sequence[int], texts: Mapping[int, str], budget: int, used: int = 0,
         max_distance: int = 2) -> tuple[list[int], int]:
    """Ords of one post to include: its hits, then neighbours by distance (same section first).

    `texts` holds the post's chunks that may be added (ord -> text). Returns (sorted ords, chars
    used so far including `used`). A hit is always included; a neighbour only when it fits.
    """
    chosen: list[int] = []
    for o in hit_ords:
        if o in texts and o not in chosen:
            chosen.append(o)
            used += len(texts[o])
    for d in range(1, max_distance + 1):
        cands = []
        for o in hit_ords:
            for n in (o + d, o - d):
                if n in texts and n not in chosen and n not in cands:
                    cands.append(n)
        same = [n for n in cands if any(heading_of(texts[n]) == heading_of(texts[o]) for o in hit_ords
                                        if o in texts)]
        for n in same + [n for n in cands if n not in same]:
            if used + len(texts[n]) <= budget:
                chosen.append(n)
                used += len(texts[n])
    return sorted(chosen), used


def render(ords: Sequence[int], texts: Mapping[int, str]) -> str:
    """Chunks of one post in reading order: adjacent ones joined without overlap, gaps marked."""
    out = ""
    prev = None
    for o in ords:
        if prev is None:
            out = texts[o]
        elif o == prev + 1:
            out = join_adjacent(out, texts[o])
        else:
            out = out + GAP + texts[o]
        prev = o
    return out


def group_by_post(hits: Sequence[Hit]) -> list[list[Hit]]:
    """Hits grouped by post, posts in order of their best hit, hits in rank order."""
    groups: dict[str, list[Hit]] = {}
    for h in hits:
        groups.setdefault(h.post_id, []).append(h)
    return list(groups.values())


def assemble(hits: Sequence[Hit], neighbours: Callable[[str, Iterable[int]], Mapping[int, str]],
             budget: int, max_distance: int = 2, max_sources: int | None = None,
             header: Callable[[str], str] | None = None) -> list[Source]:
    """One source per post, best post first, within `budget` characters (hits always fit first).

    `neighbours(post_id, ords)` returns the texts of those chunks of the post that exist;
    `header(post_id)`, when given, is a first line for the source (its front matter).
    Every hit's own chunk is kept (in rank order until the budget is spent, at least the first);
    the remaining budget grows the hits into neighbouring chunks, best post first.
    """
    groups = group_by_post(hits)
    if max_sources:
        groups = groups[:max_sources]
    heads = {g[0].post_id: (header(g[0].post_id) if header else "") for g in groups}
    heads = {p: h + "\n" if h else "" for p, h in heads.items()}
    used = 0
    kept: list[list[Hit]] = []
    for g in groups:  # the hits themselves, rank order
        keep = []
        head = len(heads[g[0].post_id])
        for h in g:
            extra = len(h.text) + (0 if keep else head)
            if not kept and not keep or used + extra <= budget:
                keep.append(h)
                used += extra
        if keep:
            kept.append(keep)
    out: list[Source] = []
    for g in kept:
        ords = [chunk_ord(h.chunk_id) for h in g]
        wanted = {o + d for o in ords for d in range(-max_distance, max_distance + 1)} - set(ords)
        texts = dict(neighbours(g[0].post_id, sorted(x for x in wanted if x >= 0)))
        texts.update({chunk_ord(h.chunk_id): h.text for h in g})
        own = sum(len(h.text) for h in g)  # already counted, like the header
        chosen, after = plan(ords, texts, budget, used - own, max_distance)
        used = after
        best = g[0]
        pid = best.post_id
        out.append(Source(**{**best.__dict__, "text": heads[pid] + render(chosen, texts),
                             "chunk_ids": [f"{pid}#{o}" for o in chosen]}))
    return out


def fetch_neighbours(reader) -> Callable[[str, Iterable[int]], dict[int, str]]:
    """`neighbours` for `assemble` over an open index (SQLite `chunks` table)."""

    def get(post_id: str, ords: Iterable[int]) -> dict[int, str]:
        ords = list(ords)
        if not ords:
            return {}
        q = "SELECT ord, text FROM chunks WHERE post_id=? AND ord IN (%s)" % ",".join("?" * len(ords))
        return {r[0]: r[1] for r in reader.conn.execute(q, [post_id, *ords])}

    return get


def front_matter(reader, post_id: str) -> dict | None:
    """A post's title, date, author and tags from the index (None when it is not indexed)."""
    r = reader.conn.execute("SELECT post_id, title, date, author, tags FROM posts WHERE post_id=?",
                            (post_id,)).fetchone()
    if r is None:
        return None
    return {"post_id": r[0], "title": r[1], "date": r[2], "author": r[3], "tags": json.loads(r[4])}


def fetch_header(reader, make: Callable[[dict], str]) -> Callable[[str], str]:
    """`header` for `assemble`: `make(post)` over the post's front matter from the index."""

    def get(post_id: str) -> str:
        post = front_matter(reader, post_id)
        return make(post) if post else ""

    return get
