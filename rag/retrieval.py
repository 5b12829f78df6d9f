"""Retrieval: dense (FAISS) and keyword (BM25) legs, fused by weighted normalized scores (default) or
weighted reciprocal ranks, then rows, then near-duplicate removal: small functions, no shared state.

Filters are applied before ranking (FAISS ID selector, BM25 row mask), so k results come back
even when the filter is narrow. Keyword hits with score 0 are dropped before fusion, and the
fused list never holds two near-identical passages.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .config import Settings
from .embedding import Embedder
from .index import UnusableIndex, IndexReader, search_vectors
from .keyword import ALNUM, get_tokenizer
from .question import is_clause, question_names, quoted_phrases
from .text import CJK_RE, bigram_tokens, char_ngrams, content_bigrams, fold, has_cjk, is_english

MODES = ("hybrid", "dense", "keyword")


def parse_day(value: str | None, label: str) -> str | None:
    """A filter date as `YYYY-MM-DD` (None when blank); `label` names the field in the error."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{label} must be a date like 2021-06-30, got {value!r}") from None


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
    return char_ngrams(text, 3)


def near_duplicate(a: set[str], b: set[str], threshold: float) -> bool:
    if not a or not b:
        return False
    return len(a & b) / len(a | b) >= threshold


Leg = list[tuple[int, float]]  # (chunk id, score), best first


def fuse(mode: str, dense_hits: Leg, kw_hits: Leg, settings: Settings,
         weights: tuple[float, float] | None = None) -> Leg:
    """One ranking from the legs the mode ran (`weights`: dense and keyword, default the settings')."""
    if mode == "dense":
        return dense_hits
    if mode == "keyword":
        return kw_hits
    weights = weights or (settings.dense_weight, settings.keyword_weight)
    if settings.fusion == "rrf":
        return weighted_rrf([[i for i, _ in dense_hits], [i for i, _ in kw_hits]], weights, settings.fusion_k)
    return score_fusion([dense_hits, kw_hits], weights)


_LATIN_WORD = re.compile(r"[A-Za-z]+")


def fused_keyword_hits(query: str, kw_hits: Leg, dense_hits: Leg) -> Leg:
    """The keyword hits hybrid fusion counts. English prose over Japanese posts matches by keyword only
    the posts' English fragments, rare words there and so heavy ("until", "series" outranked the post
    the dense leg put first): for an English question (three Latin words or more) only the hits the
    dense leg also found count, the multilingual dense leg crossing the languages and BM25 reordering
    what it found. A lookup of a name or an id (YJIT, CVE-2025-27219) and Japanese keep every hit."""
    if not crosslingual(query):
        return kw_hits
    found = {i for i, _ in dense_hits}
    return [(i, s) for i, s in kw_hits if i in found]


def crosslingual(query: str) -> bool:
    """An English question (three Latin words or more), as opposed to a lookup of a name or an id."""
    return is_english(query) and len(_LATIN_WORD.findall(query)) >= 3


def fusion_weights(query: str, dense_texts: Sequence[str], settings: Settings) -> tuple[float, float]:
    """Dense and keyword weights of hybrid fusion. An English question over Japanese posts (the dense
    leg's best chunks have kana or kanji) matches by keyword only their Latin fragments, and
    score fusion scales the best keyword hit to full weight however little it matched, so the
    multilingual dense leg weighs `crosslingual_dense_weight` there; the settings' weights were
    chosen on Japanese questions."""
    if crosslingual(query) and any(has_cjk(t) for t in dense_texts):
        return settings.crosslingual_dense_weight, 1.0 - settings.crosslingual_dense_weight
    return settings.dense_weight, settings.keyword_weight


def hits_from_rows(ranked: Leg, rows: dict, dense_hits: Leg, kw_hits: Leg) -> list[Hit]:
    """Hits for the ranked ids that have a row, in rank order, with each leg's score beside the fused one."""
    dense_of, kw_of = dict(dense_hits), dict(kw_hits)
    out = []
    for cid, score in ranked:
        r = rows.get(cid)
        if r is None:
            continue
        out.append(Hit(id=cid, chunk_id=r["chunk_id"], post_id=r["post_id"], title=r["title"], date=r["date"],
                       url=r["url"], text=r["text"], score=score, dense_score=dense_of.get(cid),
                       keyword_score=kw_of.get(cid), tags=json.loads(r["tags"]),
                       categories=json.loads(r["categories"])))
    return out


def drop_near_duplicates(hits: Sequence[Hit], k: int, threshold: float) -> list[Hit]:
    """The first k hits of which none is a near-duplicate (trigram Jaccard >= threshold) of a better one."""
    kept: list[Hit] = []
    grams: list[set[str]] = []
    for h in hits:
        g = trigram_set(h.text)
        if any(near_duplicate(g, o, threshold) for o in grams):
            continue
        grams.append(g)
        kept.append(h)
        if len(kept) >= k:
            break
    return kept


def _ms(t: float) -> float:
    return (time.perf_counter() - t) * 1000


class Retriever:
    """Searches one loaded index. Holds no per-search state, so one instance serves many threads:
    each search's timings come back with its hits (`search_timed`)."""

    def __init__(self, reader: IndexReader, embedder: Embedder, settings: Settings):
        if reader.embedder_name != embedder.name:
            raise UnusableIndex(
                f"the index at {reader.index_dir} was built with embedder {reader.embedder_name!r}, but the "
                f"configured embedder is {embedder.name!r}; set RAG_EMBEDDER to match or re-ingest with --rebuild")
        dim = int(reader.info.get("dim") or 0)
        if dim and hasattr(embedder, "expect_dim"):
            embedder.expect_dim(dim)   # a remote model: asks the server, and checks every later answer
        elif dim and dim != embedder.dim:
            raise UnusableIndex(f"the index at {reader.index_dir} holds {dim}-dimensional vectors, but the "
                              f"configured embedder gives {embedder.dim}; re-ingest with --rebuild")
        self.reader = reader
        self.embedder = embedder
        self.settings = settings
        import faiss

        faiss.omp_set_num_threads(max(1, settings.query_threads))  # one query: threads only add contention
        self.tokenize = get_tokenizer(reader.info.get("keyword_tokenizer", settings.keyword_tokenizer))
        from concurrent.futures import ThreadPoolExecutor

        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rag-keyword")  # threads start lazily

    def candidate_depth(self, k: int) -> int:
        """How many hits each leg fetches for k results; fusion scores depend on it, so two
        searches rank alike exactly when their depths are equal."""
        return max(self.settings.candidates, k * 3)

    def warm_up(self) -> None:
        """Load the query embedder, the keyword tokenizer and the name lookup (all lazy) before the
        first question."""
        self.embedder.embed_query("warm up")
        self.tokenize("ウォームアップ")
        question_names("ウォームアップ")
        self.reader.bm25.latin_pieces   # noqa: B018 (built once per index: 57 ms for 34k terms here)

    def term_idf(self, terms: Iterable[str]) -> dict[str, float]:
        """BM25 idf of those terms the archive contains (unknown terms are left out)."""
        return self.reader.bm25.term_idf(terms)

    def absent_names(self, question: str) -> list[str]:
        """The names the question uses (`question.question_names`) that no post of the archive
        contains in its title, text, author, tags or categories, then the titles and terms it quotes
        that no chunk holds most of (`quote_absent`): an archive that never names 楳茂都陸平 or
        GraphQL cannot answer a question about them, however close its passages score. A quoted
        clause is not one of them (`name_evidence`)."""
        return self.name_evidence(question)[0]

    def name_evidence(self, question: str) -> tuple[list[str], list[str]]:
        """(`absent_names`, the unheld clauses: those the question quotes, `question.is_clause`, that no
        chunk holds most of), each quote read once; a quote that is also a name is checked as the name.
        An unheld clause is evidence, not a refusal: a reader's restatement of a post keeps a quarter
        to a half of its bigrams, no more than a restatement of what no post says (docs/benchmarks.md)."""
        names = question_names(question)
        absent = [noun for noun in names if self.archive_lacks(noun)]
        unheld: list[str] = []
        if CJK_RE.search(question):   # an English question's quote is English; the posts are not
            seen = {fold(n) for n in names}
            for q in quoted_phrases(question):
                if fold(q) not in seen and self.quote_absent(q):
                    (unheld if is_clause(q) else absent).append(q)
        return absent, unheld

    def quote_absent(self, quote: str) -> bool:
        """A quoted phrase no chunk holds most of (`quote_share` at or below
        `refusal_quote_share`); looked up verbatim when it has no share (`archive_lacks`)."""
        share = self.quote_share(quote)
        if share is None:
            return self.archive_lacks(quote)
        return share <= self.settings.refusal_quote_share

    def archive_lacks(self, word: str) -> bool:
        """True when no post holds `word` in its title, text, author, tags or categories. Kana and
        kanji are looked up in the character-bigram postings (one chunk must hold all of the word's
        bigrams), Latin words piece by piece in the vocabulary; False when the index cannot tell (a
        keyword tokenizer that keeps no bigrams, a word of one kana or kanji)."""
        prefix = self._bigram_prefix()
        if prefix is None:
            return False
        bm25 = self.reader.bm25
        tokens = bigram_tokens(word)   # the index's own bigrams; a lone kana/kanji is no bigram
        # not across a ・: a post may write the name ルイス＝クラーク or ルイス クラーク
        grams = [t for t in tokens if CJK_RE.match(t) and len(t) == 2 and "・" not in t]
        pieces = [p for t in tokens if not CJK_RE.match(t) for p in ALNUM.findall(t)]
        if not grams and not pieces:
            return False
        held = ((not grams or bm25.rows_with_all(prefix + g for g in grams).size > 0)
                and all(p in bm25.latin_pieces for p in pieces))
        return not held and not self.reader.post_field_contains(fold(word))

    def quote_share(self, quote: str) -> float | None:
        """How much of a quoted phrase one chunk holds: the largest fraction of its content bigrams
        (`text.content_bigrams`: kanji, katakana and Latin words, not particles) found in a single
        chunk. Readers quote loosely, so a paraphrase scores high without matching verbatim. None
        when the index keeps no bigrams or the quote has no content bigrams (all hiragana)."""
        prefix = self._bigram_prefix()
        grams = content_bigrams(quote)
        if prefix is None or not grams:
            return None
        return self.reader.bm25.best_row_share(prefix + g for g in grams)

    def _bigram_prefix(self) -> str | None:
        """How the index marks its character bigrams ("\\u0001" beside fugashi words, "" alone), or
        None when its keyword tokenizer keeps none (the name lookups cannot tell then)."""
        name = self.reader.info.get("keyword_tokenizer", self.settings.keyword_tokenizer)
        if name not in ("bigram", "fugashi+bigram"):
            return None
        return "\u0001" if name == "fugashi+bigram" else ""

    @property
    def max_idf(self) -> float:
        """The largest idf in the archive (the weight of a term it has never seen)."""
        return self.reader.bm25.max_idf

    def embed_query(self, query: str) -> np.ndarray:
        return self.embedder.embed_query(query).reshape(1, -1).astype(np.float32)

    def dense(self, query: str, n: int, allowed: np.ndarray | None,
              qv: np.ndarray | None = None) -> Leg:
        if qv is None:
            qv = self.embed_query(query)
        d, i = search_vectors(self.reader.vectors, qv, n, allowed)
        return [(int(x), float(s)) for x, s in zip(i, d) if x >= 0]

    def keyword(self, query: str, n: int, allowed: np.ndarray | None) -> Leg:
        mask = None
        if allowed is not None:
            mask = np.isin(self.reader.bm25_ids, allowed)
        rows = self.reader.bm25.search(self.tokenize(query), n, mask)
        return [(int(self.reader.bm25_ids[r]), s) for r, s in rows]

    def _timed_keyword(self, query: str, n: int, allowed: np.ndarray | None) -> tuple[Leg, float]:
        t = time.perf_counter()
        hits = self.keyword(query, n, allowed)
        return hits, _ms(t)

    def _legs(self, query: str, n: int, mode: str, allowed: np.ndarray | None,
              timings: dict[str, float]) -> tuple[Leg, Leg, np.ndarray | None]:
        """Run the legs the mode needs: (dense hits, keyword hits, query vector or None)."""
        dense_hits: Leg = []
        kw_hits: Leg = []
        qv = None
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
            qv = self.embed_query(query)
            timings["embed_ms"] = _ms(t)
            t = time.perf_counter()
            dense_hits = self.dense(query, n, allowed, qv)
            timings["dense_ms"] = _ms(t)
        if kw_job is not None:
            kw_hits, timings["keyword_ms"] = kw_job.result()
        return dense_hits, kw_hits, qv

    def search_timed(self, query: str, k: int | None = None, mode: str = "hybrid",
                     filters: Filters = Filters()) -> tuple[list[Hit], dict[str, float]]:
        """The hits and this search's timings in ms (filter, embed, dense, keyword, fusion)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        k = k or self.settings.top_k
        n = self.candidate_depth(k)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        allowed = self.reader.filtered_ids(filters.tags, filters.categories, filters.since, filters.until)
        timings["filter_ms"] = _ms(t)
        dense_hits, kw_hits, qv = self._legs(query, n, mode, allowed, timings)
        t = time.perf_counter()
        weights = None
        if mode == "hybrid":
            kw_hits = fused_keyword_hits(query, kw_hits, dense_hits)
            if crosslingual(query) and dense_hits:
                top = self.reader.chunk_rows([i for i, _ in dense_hits[:3]])
                weights = fusion_weights(query, [r["text"] for r in top.values()], self.settings)
        ranked = fuse(mode, dense_hits, kw_hits, self.settings, weights)[:n]
        rows = self.reader.chunk_rows([i for i, _ in ranked])
        hits = drop_near_duplicates(hits_from_rows(ranked, rows, dense_hits, kw_hits), k,
                                    self.settings.dedup_threshold)
        if qv is not None:  # the evidence check wants a cosine for every hit, also keyword-only ones
            for h in hits:
                if h.dense_score is None:
                    h.dense_score = float(self.reader.vectors.reconstruct(h.id) @ qv[0])
        timings["fusion_ms"] = _ms(t)
        return hits, timings

    def search(self, query: str, k: int | None = None, mode: str = "hybrid",
               filters: Filters = Filters()) -> list[Hit]:
        return self.search_timed(query, k, mode, filters)[0]
