"""Retrieval: dense (FAISS), keyword (BM25) and their weighted reciprocal-rank fusion.

Filters are applied before ranking (FAISS ID selector, BM25 row mask), so k results come back
even when the filter is narrow. Keyword hits with score 0 are dropped before fusion, and the
fused list never holds two near-identical passages.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .config import Settings
from .embedding import Embedder
from .index import IndexError_, IndexReader, search_vectors
from .keyword import get_tokenizer

MODES = ("hybrid", "dense", "keyword")


@dataclass(frozen=True)
class Filters:
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None


@dataclass
class Hit:
    id: int
    chunk_id: str
    post_id: str
    title: str
    date: str | None
    url: str | None
    text: str
    score: float
    dense_score: float | None = None
    keyword_score: float | None = None
    tags: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def as_dict(self, rank: int) -> dict:
        return {"rank": rank, "post_id": self.post_id, "title": self.title, "date": self.date, "url": self.url,
                "chunk_id": self.chunk_id, "text": self.text, "score": round(float(self.score), 6)}


def weighted_rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion with a weight per ranking: sum_w w / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for r, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + r)
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def score_fusion(legs: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float]) -> list[tuple[int, float]]:
    """Convex combination of max-normalized scores; a document missing from a leg scores 0 there.

    Dense cosines are shifted by the leg's minimum first (they bunch near 0.8 for e5), BM25 scores
    are divided by the leg's maximum (0 is a real zero there).
    """
    scores: dict[int, float] = {}
    for leg, w, shift in zip(legs, weights, (True, False)):
        if not leg:
            continue
        vals = [v for _, v in leg]
        lo = min(vals) if shift else 0.0
        span = (max(vals) - lo) or 1.0
        for doc, v in leg:
            scores[doc] = scores.get(doc, 0.0) + w * (v - lo) / span
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def trigram_set(text: str) -> set[str]:
    t = "".join(text.split())
    return {t[i:i + 3] for i in range(max(1, len(t) - 2))}


def near_duplicate(a: set[str], b: set[str], threshold: float) -> bool:
    if not a or not b:
        return False
    return len(a & b) / len(a | b) >= threshold


class Retriever:
    def __init__(self, reader: IndexReader, embedder: Embedder, settings: Settings):
        if reader.embedder_name != embedder.name:
            raise IndexError_(
                f"the index at {reader.index_dir} was built with embedder {reader.embedder_name!r}, but the "
                f"configured embedder is {embedder.name!r}; set RAG_EMBEDDER to match or re-ingest with --rebuild")
        self.reader = reader
        self.embedder = embedder
        self.settings = settings
        import faiss

        faiss.omp_set_num_threads(max(1, settings.query_threads))  # one query: threads only add contention
        self.tokenize = get_tokenizer(reader.info.get("keyword_tokenizer", settings.keyword_tokenizer))
        self.last_timings: dict[str, float] = {}
        from concurrent.futures import ThreadPoolExecutor

        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rag-keyword")  # threads start lazily

    def _timed_keyword(self, query: str, n: int, allowed: np.ndarray | None) -> tuple[list, float]:
        t = time.perf_counter()
        hits = self.keyword(query, n, allowed)
        return hits, (time.perf_counter() - t) * 1000

    def candidate_depth(self, k: int) -> int:
        """How many hits each leg fetches for k results; fusion scores depend on it, so two
        searches rank alike exactly when their depths are equal."""
        return max(self.settings.candidates, k * 3)

    def warm_up(self) -> None:
        """Load the query embedder and the keyword tokenizer (both lazy) before the first question."""
        self.embedder.embed_query("warm up")
        self.tokenize("ウォームアップ")

    def dense(self, query: str, n: int, allowed: np.ndarray | None,
              qv: np.ndarray | None = None) -> list[tuple[int, float]]:
        if qv is None:
            qv = self.embedder.embed_query(query).reshape(1, -1).astype(np.float32)
        d, i = search_vectors(self.reader.vectors, qv, n, allowed)
        return [(int(x), float(s)) for x, s in zip(i, d) if x >= 0]

    def keyword(self, query: str, n: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        mask = None
        if allowed is not None:
            mask = np.isin(self.reader.bm25_ids, allowed)
        rows = self.reader.bm25.search(self.tokenize(query), n, mask)
        return [(int(self.reader.bm25_ids[r]), s) for r, s in rows]

    def search(self, query: str, k: int | None = None, mode: str = "hybrid",
               filters: Filters = Filters()) -> list[Hit]:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        k = k or self.settings.top_k
        n = self.candidate_depth(k)
        timings: dict[str, float] = {}
        qv = None  # per call: a Retriever is shared by the web app's threads
        t = time.perf_counter()
        allowed = self.reader.filtered_ids(filters.tags, filters.categories, filters.since, filters.until)
        timings["filter_ms"] = (time.perf_counter() - t) * 1000
        dense_hits: list[tuple[int, float]] = []
        kw_hits: list[tuple[int, float]] = []
        kw_job = None
        if mode in ("hybrid", "keyword"):
            if mode == "hybrid" and self.settings.parallel_legs:
                # BM25 runs beside query embedding + FAISS (both release the GIL): on 2 cores the
                # legs overlap instead of adding up (eval/bench_retrieval.py)
                kw_job = self._executor.submit(self._timed_keyword, query, n, allowed)
            else:
                kw_hits, timings["keyword_ms"] = self._timed_keyword(query, n, allowed)
        if mode in ("hybrid", "dense"):
            t = time.perf_counter()
            qv = self.embedder.embed_query(query).reshape(1, -1).astype(np.float32)
            timings["embed_ms"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            dense_hits = self.dense(query, n, allowed, qv)
            timings["dense_ms"] = (time.perf_counter() - t) * 1000
        if kw_job is not None:
            kw_hits, timings["keyword_ms"] = kw_job.result()
        t = time.perf_counter()
        dense_of = dict(dense_hits)
        kw_of = dict(kw_hits)
        if mode == "dense":
            ranked = dense_hits
        elif mode == "keyword":
            ranked = kw_hits
        else:
            weights = [self.settings.dense_weight, self.settings.keyword_weight]
            if self.settings.fusion == "rrf":
                ranked = weighted_rrf([[i for i, _ in dense_hits], [i for i, _ in kw_hits]], weights,
                                      self.settings.fusion_k)
            else:
                ranked = score_fusion([dense_hits, kw_hits], weights)
        rows = self.reader.chunk_rows([i for i, _ in ranked[: n]])
        hits: list[Hit] = []
        grams: list[set[str]] = []
        for cid, score in ranked:
            r = rows.get(cid)
            if r is None:
                continue
            g = trigram_set(r["text"])
            if any(near_duplicate(g, o, self.settings.dedup_threshold) for o in grams):
                continue
            grams.append(g)
            hits.append(Hit(id=cid, chunk_id=r["chunk_id"], post_id=r["post_id"], title=r["title"], date=r["date"],
                            url=r["url"], text=r["text"], score=score, dense_score=dense_of.get(cid),
                            keyword_score=kw_of.get(cid), tags=json.loads(r["tags"]),
                            categories=json.loads(r["categories"])))
            if len(hits) >= k:
                break
        if qv is not None:
            for h in hits:
                if h.dense_score is None:
                    h.dense_score = float(self.reader.vectors.reconstruct(h.id) @ qv[0])
        timings["fusion_ms"] = (time.perf_counter() - t) * 1000
        self.last_timings = timings
        return hits
