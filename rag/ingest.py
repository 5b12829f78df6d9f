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
from .index import (SCHEMA_VERSION, GenerationWriter, IndexError_, NewChunk, WriterLock, connect,
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
        old_posts: dict[str, str] = {}
        old_conn = None
        if prev is not None:
            old_conn = connect(prev / "meta.sqlite", readonly=True)
            old_info = {r["key"]: r["value"] for r in old_conn.execute("SELECT key, value FROM info")}
            mismatched = [k for k in ("embedder", "keyword_tokenizer", "chunk_tokens", "chunk_overlap_tokens",
                                      "schema_version") if old_info.get(k) != info[k]]
            if mismatched and not rebuild:
                old_conn.close()
                diffs = ", ".join(f"{k}: index has {old_info.get(k)!r}, settings say {info[k]!r}" for k in mismatched)
                raise IndexError_(f"the index at {index_dir} was built with other settings ({diffs}); "
                                  f"run with --rebuild to rebuild it, or use another --index directory")
            if not rebuild:
                old_posts = {r[0]: r[1] for r in old_conn.execute("SELECT post_id, content_hash FROM posts")}

        # 1. Parse.
        t = time.perf_counter()
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
        report.timings["parse_s"] = time.perf_counter() - t

        changed = [p for pid, p in posts.items() if old_posts.get(pid) != p.content_hash]
        removed = [pid for pid in old_posts if pid not in present]
        report.posts_added = sum(1 for p in changed if p.post_id not in old_posts)
        report.posts_updated = len(changed) - report.posts_added
        report.posts_removed = len(removed)
        report.posts_unchanged = len(posts) - len(changed)

        if not changed and not removed and prev is not None and not rebuild:
            report.chunks_total = old_conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            old_conn.close()
            report.seconds = time.perf_counter() - t0
            return report

        # 2. Chunk and tokenize changed posts; reuse stored vectors of unchanged chunk texts.
        t = time.perf_counter()
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
        if old_conn is not None:
            old_conn.close()
        report.timings["chunk_s"] = time.perf_counter() - t

        # 3. Embed.
        t = time.perf_counter()
        tick = progress(len(to_embed), 0) if progress and to_embed else None
        vecs = embed_in_batches(embedder, [c.embed_text for c in to_embed], settings.embed_batch_size, tick)
        for c, v in zip(to_embed, vecs):
            c.vector = v
        report.chunks_embedded = len(to_embed)
        report.timings["embed_s"] = time.perf_counter() - t

        # 4. Write a new generation and publish it.
        t = time.perf_counter()
        writer = GenerationWriter(index_dir, info, start_empty=rebuild)
        try:
            for pid in removed:
                writer.delete_post(pid)
            for post, items in planned:
                writer.put_post(post, items)
            writer.publish(embedder.dim)
        except BaseException:
            writer.abort()
            raise
        report.timings["write_s"] = time.perf_counter() - t
        report.timings.update({f"write_{k}": v for k, v in writer.timings.items()})
        report.bm25 = "updated" if writer.bm25_updated else "rebuilt"
        conn = connect(writer.gen / "meta.sqlite", readonly=True)
        report.chunks_total = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        conn.close()
    report.seconds = time.perf_counter() - t0
    return report


def report_json(report: IngestReport) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)
