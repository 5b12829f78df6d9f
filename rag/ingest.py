"""Ingest: posts folder -> chunks -> embeddings -> a new index generation.

Incremental: a post whose content hash is unchanged is not touched; a changed post is re-chunked,
and only chunks whose embedded text is new are embedded (others reuse their stored vector).
A post that fails to parse is reported in `skipped` and, if an older version was indexed, that
version stays: bad input never costs what is already indexed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .chunking import chunk_post
from .config import Settings
from .corpus import Post, PostError, iter_post_files, post_id_for, read_post
from .embedding import Embedder, embed_in_batches
from .index import (SCHEMA_VERSION, GenerationWriter, UnusableIndex, NewChunk, WriterLock, connect,
                    current_generation)
from .keyword import get_tokenizer


@dataclass
class IngestReport:
    posts_seen: int = 0
    posts_added: int = 0
    posts_updated: int = 0
    posts_removed: int = 0
    posts_unchanged: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    skipped: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    bm25: str = ""  # "updated" (previous postings reused) or "rebuilt"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def index_info(settings: Settings, embedder: Embedder) -> dict[str, str]:
    return {
        "schema_version": str(SCHEMA_VERSION),
        "embedder": embedder.name,
        "dim": str(embedder.dim),
        "keyword_tokenizer": settings.keyword_tokenizer,
        "chunk_tokens": str(settings.chunk_tokens),
        "chunk_overlap_tokens": str(settings.chunk_overlap_tokens),
    }


def _embed_hash(embedder_name: str, text: str) -> str:
    return hashlib.sha256(f"{embedder_name}\x00{text}".encode("utf-8")).hexdigest()


def ingest(root: Path, index_dir: Path, settings: Settings, embedder: Embedder, rebuild: bool = False,
           progress: Callable[[int, int], Callable[[int], None]] | None = None) -> IngestReport:
    """Bring the index at index_dir in line with the posts under root."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"posts folder not found: {root}")
    report = IngestReport()
    info = index_info(settings, embedder)
    with WriterLock(index_dir, timeout=settings.lock_timeout):
        prev = current_generation(index_dir)
        old_conn = connect(prev / "meta.sqlite", readonly=True) if prev is not None else None
        try:
            old_posts = _previous_posts(old_conn, info, index_dir, rebuild)
            t = time.perf_counter()
            posts, present = _parse_posts(root, settings, report)
            report.timings["parse_s"] = time.perf_counter() - t

            changed = [p for pid, p in posts.items() if old_posts.get(pid) != p.content_hash]
            removed = [pid for pid in old_posts if pid not in present]
            report.posts_added = sum(1 for p in changed if p.post_id not in old_posts)
            report.posts_updated = len(changed) - report.posts_added
            report.posts_removed = len(removed)
            report.posts_unchanged = len(posts) - len(changed)
            if not changed and not removed and old_conn is not None and not rebuild:
                report.chunks_total = old_conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
                report.seconds = time.perf_counter() - t0
                return report

            t = time.perf_counter()
            planned, to_embed = _plan_chunks(changed, old_conn, settings, embedder)
            report.timings["chunk_s"] = time.perf_counter() - t
        finally:
            if old_conn is not None:
                old_conn.close()

        t = time.perf_counter()
        _embed(to_embed, embedder, settings.embed_batch_size, progress)
        report.chunks_embedded = len(to_embed)
        report.timings["embed_s"] = time.perf_counter() - t

        t = time.perf_counter()
        writer = _write_generation(index_dir, info, rebuild, removed, planned, embedder.dim)
        report.timings["write_s"] = time.perf_counter() - t
        report.timings.update({f"write_{k}": v for k, v in writer.timings.items()})
        report.bm25 = "updated" if writer.bm25_updated else "rebuilt"
        conn = connect(writer.gen / "meta.sqlite", readonly=True)
        report.chunks_total = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        conn.close()
    report.seconds = time.perf_counter() - t0
    return report


def _previous_posts(old_conn, info: dict[str, str], index_dir: Path, rebuild: bool) -> dict[str, str]:
    """post id -> content hash of the live index; refuses an index built with other settings unless rebuilding."""
    if old_conn is None:
        return {}
    old_info = {r["key"]: r["value"] for r in old_conn.execute("SELECT key, value FROM info")}
    mismatched = [k for k in ("embedder", "keyword_tokenizer", "chunk_tokens", "chunk_overlap_tokens",
                              "schema_version") if old_info.get(k) != info[k]]
    if mismatched and not rebuild:
        diffs = ", ".join(f"{k}: index has {old_info.get(k)!r}, settings say {info[k]!r}" for k in mismatched)
        raise UnusableIndex(f"the index at {index_dir} was built with other settings ({diffs}); "
                            f"run with --rebuild to rebuild it, or use another --index directory")
    if rebuild:
        return {}
    return {r[0]: r[1] for r in old_conn.execute("SELECT post_id, content_hash FROM posts")}


def _parse_posts(root: Path, settings: Settings, report: IngestReport) -> tuple[dict[str, Post], set[str]]:
    """The readable posts by id, and the ids of every post file present (readable or not: a post
    that fails to parse is skipped, not removed from the index)."""
    posts: dict[str, Post] = {}
    present: set[str] = set()
    for path, problem in iter_post_files(root):
        report.posts_seen += 1
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        if problem:
            report.skipped.append({"path": rel, "error": problem})
            try:
                present.add(post_id_for(path, root))
            except ValueError:
                pass
            continue
        pid = post_id_for(path, root)
        if pid in posts:
            report.skipped.append({"path": rel, "error": f"duplicate post id {pid!r} (also {posts[pid].path})"})
            continue
        present.add(pid)
        try:
            post = read_post(path, root, int(settings.max_post_mb * 2**20))
        except PostError as exc:
            report.skipped.append({"path": rel, "error": str(exc)})
            continue
        post.path = rel
        posts[pid] = post
        for w in post.warnings:
            report.warnings.append({"path": rel, "warning": w})
    return posts, present


def _plan_chunks(changed: list[Post], old_conn, settings: Settings, embedder: Embedder
                 ) -> tuple[list[tuple[Post, list[NewChunk]]], list[NewChunk]]:
    """Chunk and tokenize the changed posts, reusing the stored vector of any unchanged chunk text;
    returns the chunks per post and those still to embed."""
    tokenize = get_tokenizer(settings.keyword_tokenizer)
    planned: list[tuple[Post, list[NewChunk]]] = []
    to_embed: list[NewChunk] = []
    for post in changed:
        items = []
        for c in chunk_post(post, embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap_tokens):
            h = _embed_hash(embedder.name, c.embed_text)
            vec = None
            if old_conn is not None:
                row = old_conn.execute("SELECT vector FROM chunks WHERE embed_hash=? LIMIT 1", (h,)).fetchone()
                if row is not None:
                    vec = np.frombuffer(row[0], dtype=np.float32)
            nc = NewChunk(c.chunk_id, c.post_id, c.ord, c.text, c.embed_text, c.tokens, h,
                          tokenize(c.embed_text), vec)
            items.append(nc)
            if vec is None:
                to_embed.append(nc)
        planned.append((post, items))
    return planned, to_embed


def _embed(chunks: list[NewChunk], embedder: Embedder, batch_size: int,
           progress: Callable[[int, int], Callable[[int], None]] | None) -> None:
    tick = progress(len(chunks), 0) if progress and chunks else None
    vecs = embed_in_batches(embedder, [c.embed_text for c in chunks], batch_size, tick)
    for c, v in zip(chunks, vecs):
        c.vector = v


def _write_generation(index_dir: Path, info: dict[str, str], rebuild: bool, removed: list[str],
                      planned: list[tuple[Post, list[NewChunk]]], dim: int) -> GenerationWriter:
    """Write a new generation and publish it; nothing is published if anything fails."""
    writer = GenerationWriter(index_dir, info, start_empty=rebuild)
    try:
        for pid in removed:
            writer.delete_post(pid)
        for post, items in planned:
            writer.put_post(post, items)
        writer.publish(dim)
    except BaseException:
        writer.abort()
        raise
    return writer


def report_json(report: IngestReport) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)
