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
from .corpus import Post, PostError, PostExcluded, clip, iter_post_files, post_id_for, read_post
from .embedding import Embedder, embed_in_batches
from .index import (SCHEMA_VERSION, GenerationWriter, UnusableIndex, NewChunk, WriterLock, connect,
                    current_generation)
from .keyword import get_tokenizer
from .sites import detect_site, is_candidate


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
    site: str = ""  # "jekyll" or "hugo" when the folder is a site (rag.sites), "" for a plain folder
    excluded: list[dict] = field(default_factory=list)   # {path, reason}: drafts, published: false, future
    redirects: list[dict] = field(default_factory=list)  # {path, redirect_to}: redirect stubs
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
        # informational (how the vectors were computed); compatibility is decided by embedder + dim
        "engine": str(getattr(embedder, "engine", "")),
        "keyword_tokenizer": settings.keyword_tokenizer,
        "chunk_tokens": str(settings.chunk_tokens),
        "chunk_overlap_tokens": str(settings.chunk_overlap_tokens),
    }


def _embed_hash(embedder_name: str, text: str) -> str:
    return hashlib.sha256(f"{embedder_name}\x00{text}".encode("utf-8")).hexdigest()


class MassDeleteRefused(UnusableIndex):
    """An ingest would remove most of the index (an empty mount point, a wrong folder)."""


def post_failure(exc: BaseException) -> str:
    """The skipped-entry reason for any exception raised by one post (never the whole ingest)."""
    if isinstance(exc, PostError):
        return str(exc)
    return clip(f"cannot index this post ({type(exc).__name__}: {' '.join(str(exc).split())})", 300)


def _kept_ids(path: Path, root: Path, old_ids) -> set[str]:
    """Indexed posts to keep for an entry that could not be read: its own id, or for a folder that
    could not be listed, everything indexed under it."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return set()
    if path.is_dir():
        prefix = "" if rel == Path(".") else rel.as_posix() + "/"
        return {pid for pid in old_ids if pid.startswith(prefix)}
    return {post_id_for(path, root)}


def check_mass_delete(n_old: int, n_removed: int, root: Path, settings: Settings, allowed: bool) -> None:
    if allowed or not n_old or n_removed <= settings.max_remove_share * n_old:
        return
    raise MassDeleteRefused(
        f"refusing to remove {n_removed} of the {n_old} indexed posts: they are not under {root} "
        f"(is it the right folder, and mounted?). Nothing was changed. If the posts were really deleted, "
        f"run again with --allow-mass-delete (limit: RAG_MAX_REMOVE_SHARE={settings.max_remove_share:g})")


def ingest(root: Path, index_dir: Path, settings: Settings, embedder: Embedder, rebuild: bool = False,
           progress: Callable[[int, int], Callable[[int], None]] | None = None,
           allow_mass_delete: bool = False) -> IngestReport:
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
            indexed = set(old_posts)
            if rebuild:
                old_posts = {}
            t = time.perf_counter()
            posts, present = _parse_posts(root, settings, report, indexed)
            report.timings["parse_s"] = time.perf_counter() - t

            check_mass_delete(len(indexed), len(indexed - present), root, settings, allow_mass_delete)
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
            planned, to_embed = _plan_chunks(changed, old_conn, settings, embedder, report)
            _uncount_failed(report, changed, planned, old_posts)
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
    """post id -> content hash of the live index (also when rebuilding: the mass-delete check needs
    them); refuses an index built with other settings unless rebuilding."""
    if old_conn is None:
        return {}
    old_info = {r["key"]: r["value"] for r in old_conn.execute("SELECT key, value FROM info")}
    mismatched = [k for k in ("embedder", "dim", "keyword_tokenizer", "chunk_tokens", "chunk_overlap_tokens",
                              "schema_version") if old_info.get(k) != info[k]]
    if mismatched and not rebuild:
        diffs = ", ".join(f"{k}: index has {old_info.get(k)!r}, settings say {info[k]!r}" for k in mismatched)
        raise UnusableIndex(f"the index at {index_dir} was built with other settings ({diffs}); "
                            f"run with --rebuild to rebuild it, or use another --index directory")
    return {r[0]: r[1] for r in old_conn.execute("SELECT post_id, content_hash FROM posts")}


def _parse_posts(root: Path, settings: Settings, report: IngestReport,
                 indexed: set[str] = frozenset()) -> tuple[dict[str, Post], set[str]]:
    """The readable posts by id, and the ids of every post present (readable or not: a post that
    fails to parse, or sits in a folder that cannot be listed, is skipped, not removed from the index)."""
    posts: dict[str, Post] = {}
    present: set[str] = set()
    first_path: dict[str, str] = {}
    site = detect_site(root)
    report.site = site.kind if site else ""
    for path, problem in iter_post_files(root):
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        if site is not None and not problem and not is_candidate(site, Path(rel).as_posix()):
            continue  # a page, a layout, a README: the generator makes no post of it
        report.posts_seen += 1
        if problem:
            report.skipped.append({"path": rel, "error": problem})
            present |= _kept_ids(path, root, indexed)
            continue
        pid = post_id_for(path, root)
        if pid in first_path:  # files are visited in name order: the second one is always the duplicate
            report.skipped.append({"path": rel, "error": f"duplicate post id {pid!r} (also {first_path[pid]})"})
            continue
        first_path[pid] = rel
        present.add(pid)
        try:
            post = read_post(path, root, int(settings.max_post_mb * 2**20), site)
        except PostExcluded as exc:  # not published: leaves the index if it was there
            present.discard(pid)
            if exc.redirect is not None:
                report.redirects.append({"path": rel, "redirect_to": exc.redirect})
            else:
                report.excluded.append({"path": rel, "reason": str(exc)})
            continue
        except Exception as exc:  # one bad post never stops the ingest
            report.skipped.append({"path": rel, "error": post_failure(exc)})
            continue
        post.path = rel
        posts[pid] = post
        for w in post.warnings:
            report.warnings.append({"path": rel, "warning": w})
    return posts, present


def _plan_chunks(changed: list[Post], old_conn, settings: Settings, embedder: Embedder,
                 report: IngestReport | None = None) -> tuple[list[tuple[Post, list[NewChunk]]], list[NewChunk]]:
    """Chunk and tokenize the changed posts, reusing the stored vector of any unchanged chunk text;
    returns the chunks per post and those still to embed. A post whose chunking fails is left out
    (and listed in `report.skipped`): its indexed version, if any, stays."""
    tokenize = get_tokenizer(settings.keyword_tokenizer)
    planned: list[tuple[Post, list[NewChunk]]] = []
    to_embed: list[NewChunk] = []
    for post in changed:
        items = []
        try:
            chunks = chunk_post(post, embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap_tokens)
            keyword_tokens = [tokenize(c.embed_text) for c in chunks]
        except Exception as exc:
            if report is None:
                raise
            report.skipped.append({"path": post.path, "error": post_failure(exc)})
            continue
        for c, toks in zip(chunks, keyword_tokens):
            h = _embed_hash(embedder.name, c.embed_text)
            vec = None
            if old_conn is not None:
                row = old_conn.execute("SELECT vector FROM chunks WHERE embed_hash=? LIMIT 1", (h,)).fetchone()
                if row is not None:
                    vec = np.frombuffer(row[0], dtype=np.float32)
            nc = NewChunk(c.chunk_id, c.post_id, c.ord, c.text, c.embed_text, c.tokens, h, toks, vec)
            items.append(nc)
            if vec is None:
                to_embed.append(nc)
        planned.append((post, items))
    return planned, to_embed


def _uncount_failed(report: IngestReport, changed: list[Post], planned: list[tuple[Post, list[NewChunk]]],
                    old_posts: dict[str, str]) -> None:
    """Posts left out by `_plan_chunks` are neither added nor updated: their indexed version stays."""
    done = {p.post_id for p, _ in planned}
    for p in changed:
        if p.post_id in done:
            continue
        if p.post_id in old_posts:
            report.posts_updated -= 1
            report.posts_unchanged += 1
        else:
            report.posts_added -= 1


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
