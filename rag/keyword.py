"""Japanese-aware keyword search: tokenizers and a BM25 index stored as a sparse matrix.

Japanese has no spaces, so an English regex tokenizer finds almost nothing; morphological
analysis (fugashi + unidic-lite, or SudachiPy) and character bigrams both work, and their union
was measured best on JaQuAD (docs/benchmarks.md). Hits with score 0 are never returned: they would only
add noise to fusion.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .text import CJK_RE, bigram_tokens, fold

Tokenizer = Callable[[str], list[str]]

ALNUM = re.compile(r"[0-9a-z]+")
_STOP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白"}


_local = threading.local()


def fugashi_tagger():
    """One MeCab tagger per thread (a tagger is not safe to share between threads): the tokenizer here,
    and the question reading (rag/question.py) and span finding (rag/extractive.py) that need parts
    of speech."""
    tagger = getattr(_local, "fugashi", None)
    if tagger is None:
        import fugashi  # unidic-lite is found automatically

        tagger = _local.fugashi = fugashi.Tagger()
    return tagger


def fugashi_tokens(text: str) -> list[str]:
    """Morphemes (surface forms) from MeCab/unidic-lite, without particles, auxiliaries or symbols."""
    tagger = fugashi_tagger()
    out = []
    for w in tagger(fold(text)):
        if w.feature.pos1 in _STOP_POS:
            continue
        s = w.surface.strip()
        if s:
            out.append(s)
    return out


def _sudachi_tokenizer():
    tok = getattr(_local, "sudachi", None)
    if tok is None:
        from sudachipy import Dictionary, SplitMode

        tok = _local.sudachi = Dictionary(dict="core").tokenizer(mode=SplitMode.A)
    return tok


def sudachi_tokens(text: str) -> list[str]:
    """Sudachi mode-A morphemes, normalized forms, without particles, auxiliaries or symbols."""
    tok = _sudachi_tokenizer()
    out = []
    t = fold(text)
    # Sudachi refuses inputs over ~49k bytes; feed it line by line.
    for line in t.split("\n"):
        if not line.strip():
            continue
        for i in range(0, len(line), 4000):
            for m in tok.tokenize(line[i:i + 4000]):
                if m.part_of_speech()[0] in _STOP_POS:
                    continue
                s = m.normalized_form().strip().lower()
                if s:
                    out.append(s)
    return out


def fugashi_bigram_tokens(text: str) -> list[str]:
    """Union of morphemes and bigrams: morphemes give precision, bigrams recall across segmentations."""
    return fugashi_tokens(text) + ["\u0001" + t for t in bigram_tokens(text)]


TOKENIZERS: dict[str, Tokenizer] = {
    "bigram": bigram_tokens,
    "fugashi": fugashi_tokens,
    "sudachi": sudachi_tokens,
    "fugashi+bigram": fugashi_bigram_tokens,
}


def get_tokenizer(name: str) -> Tokenizer:
    try:
        return TOKENIZERS[name]
    except KeyError:
        raise ValueError(f"unknown keyword tokenizer {name!r}; choose one of {sorted(TOKENIZERS)}") from None


BATCH_DOCS = 20_000  # documents counted per vectorized step while building or updating BM25


def _count_terms(docs: Iterable[Sequence[str]], vocab: "_Numbering", batch: int = BATCH_DOCS, row_start: int = 0):
    """(rows, cols, tf) of every distinct (document, term) pair, row-major, and document lengths;
    terms are numbered in `vocab` as they appear."""
    rows_p, cols_p, tf_p, len_p = [], [], [], []
    ids: list[int] = []
    lens: list[int] = []
    start = row_start

    def flush() -> None:
        nonlocal start
        if not lens:
            return
        col = np.asarray(ids, dtype=np.int64)
        row = np.repeat(np.arange(start, start + len(lens), dtype=np.int64), lens)
        key, tf = np.unique((row << 32) | col, return_counts=True)  # sorted by row, then term
        rows_p.append((key >> 32).astype(np.int32))
        cols_p.append((key & 0xFFFFFFFF).astype(np.int32))
        tf_p.append(tf.astype(np.uint32))
        len_p.append(np.asarray(lens, dtype=np.float32))
        start += len(lens)
        ids.clear()
        lens.clear()

    for toks in docs:
        ids.extend(map(vocab.__getitem__, toks))  # C-level loop: 1.6x faster than setdefault
        lens.append(len(toks))
        if len(lens) >= batch:
            flush()
    flush()

    def cat(parts, dt):
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dt)

    return cat(rows_p, np.int32), cat(cols_p, np.int32), cat(tf_p, np.uint32), cat(len_p, np.float32)


class _Numbering(dict):
    """term -> id, numbering unseen terms in order of first appearance."""

    def __missing__(self, term: str) -> int:
        self[term] = n = len(self)
        return n


@dataclass
class BM25Index:
    """BM25 (Okapi, k1/b) over documents given as token lists; rows are document positions.

    Stored column-major (CSC: one posting list per term, saturated tf weights) as plain .npy
    arrays that readers memory-map: a million-chunk matrix (~250M postings, 2 GB) then stays
    in the page cache, shared by processes, and a query touches only its terms' postings.
    """

    vocab: dict[str, int]
    idf: np.ndarray          # (n_terms,) float32
    indptr: np.ndarray       # (n_terms + 1,) int64: postings of term j are [indptr[j], indptr[j+1])
    indices: np.ndarray      # (nnz,) int32 document rows
    data: np.ndarray         # (nnz,) float32 tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))
    n_docs: int
    k1: float = 1.2
    b: float = 0.75
    tf: np.ndarray | None = None       # (nnz,) uint16 raw term counts: what an update re-weights
    lengths: np.ndarray | None = None  # (n_docs,) float32 document lengths in tokens

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], k1: float = 1.2, b: float = 0.75,
              batch: int = BATCH_DOCS) -> "BM25Index":
        """Streams `docs` (any iterable, e.g. a database cursor) in batches, so memory holds the
        postings as arrays, never all token lists at once."""
        vocab = _Numbering()
        rows, cols, tf, lengths = _count_terms(docs, vocab, batch)
        n = lengths.size
        row_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=row_ptr[1:])
        del rows
        from scipy import sparse

        # row-major -> column-major in O(nnz) (scipy's counting sort keeps rows ascending per term)
        m = sparse.csr_matrix((tf, cols, row_ptr), shape=(n, len(vocab))).tocsc()
        del tf, cols
        return cls._weighted(dict(vocab), m.indptr.astype(np.int64), m.indices.astype(np.int32, copy=False),
                             m.data, lengths, k1, b)

    @classmethod
    def _weighted(cls, vocab: dict[str, int], indptr: np.ndarray, indices: np.ndarray, tf: np.ndarray,
                  lengths: np.ndarray, k1: float, b: float) -> "BM25Index":
        """BM25 weights and idf from raw counts in column-major order."""
        n = lengths.size
        avgdl = float(lengths.mean()) if n else 1.0
        norm = (k1 * (1 - b + b * lengths / max(avgdl, 1e-9))).astype(np.float32)
        tf32 = tf.astype(np.float32)
        data = tf32 * np.float32(k1 + 1) / (tf32 + norm[indices])
        del tf32
        df = np.diff(indptr)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        return cls(vocab=vocab, idf=idf, indptr=indptr, indices=indices, data=data.astype(np.float32, copy=False),
                   n_docs=n, k1=k1, b=b, tf=np.minimum(tf, 65535).astype(np.uint16), lengths=lengths)

    def updated(self, keep: np.ndarray, new_docs: Iterable[Sequence[str]]) -> "BM25Index":
        """The index after dropping the rows where `keep` is False and appending `new_docs` as the
        last rows: the same postings, weights and idf as a full rebuild, found without tokens.

        Kept postings stay in order (rows renumbered); new rows come after every old one, so each
        term's list is its kept postings then its new ones. Costs a few vectorized passes over
        the postings instead of a Python loop over every token of the archive.
        """
        if self.tf is None or self.lengths is None:
            raise ValueError("this BM25 index has no raw term counts (written before they were kept)")
        k1, b = self.k1, self.b
        keep = np.asarray(keep, dtype=bool)
        vocab = _Numbering(self.vocab)
        n_old_terms = len(self.vocab)
        # old postings, minus dropped rows, rows renumbered
        old_df = np.diff(np.asarray(self.indptr))
        if keep.all():
            rows_k, tf_k, df_k = np.asarray(self.indices), np.asarray(self.tf), old_df
        else:
            new_row = (np.cumsum(keep) - 1).astype(np.int32)
            mask = keep[self.indices]
            rows_k, tf_k = new_row[np.asarray(self.indices)[mask]], np.asarray(self.tf)[mask]
            col_of = np.repeat(np.arange(n_old_terms, dtype=np.int32), old_df)
            df_k = np.bincount(col_of[mask], minlength=n_old_terms)
            del mask, col_of
        n_kept = int(keep.sum())
        # new postings, row-major, then ordered by term (stable: rows stay ascending)
        rows_n, cols_n, tf_n, len_n = _count_terms(new_docs, vocab, row_start=n_kept)
        order = np.argsort(cols_n, kind="stable")
        rows_n, cols_n, tf_n = rows_n[order], cols_n[order], tf_n[order]
        n_terms = len(vocab)
        df_old = np.zeros(n_terms, dtype=np.int64)
        df_old[:n_old_terms] = df_k
        df_new = np.bincount(cols_n, minlength=n_terms)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df_old + df_new, out=indptr[1:])
        nnz = int(indptr[-1])
        indices = np.empty(nnz, dtype=np.int32)
        tf = np.empty(nnz, dtype=np.uint16)
        # old postings keep their order: destination = start of the term's new list + rank in the term
        old_start = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df_old, out=old_start[1:])
        shift = np.repeat(indptr[:-1] - old_start[:-1], df_old)
        dest = np.arange(rows_k.size, dtype=np.int64) + shift
        indices[dest], tf[dest] = rows_k, tf_k
        del dest, shift, rows_k, tf_k
        new_start = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df_new, out=new_start[1:])
        dest = indptr[:-1][cols_n] + df_old[cols_n] + (np.arange(cols_n.size) - new_start[:-1][cols_n])
        indices[dest], tf[dest] = rows_n, np.minimum(tf_n, 65535).astype(np.uint16)
        lengths = np.concatenate([np.asarray(self.lengths)[keep], len_n]).astype(np.float32)
        # terms left with no postings are dropped, as a full rebuild would never have seen them
        live = (df_old + df_new) > 0
        if not live.all():
            new_col = np.cumsum(live) - 1
            indptr = np.concatenate([[0], np.cumsum((df_old + df_new)[live])]).astype(np.int64)
            vocab = {t: int(new_col[j]) for t, j in vocab.items() if live[j]}
        return self._weighted(dict(vocab), indptr, indices, tf, lengths, k1, b)

    @property
    def latin_pieces(self) -> frozenset[str]:
        """Every alphanumeric run of the Latin-script terms (`muses-cn` gives `muses`, `cn`): a
        name is looked up piece by piece, as a question may join it with another hyphen than the
        post. Built once per loaded index."""
        pieces = self.__dict__.get("_latin_pieces")
        if pieces is None:
            pieces = self.__dict__["_latin_pieces"] = frozenset(
                p for t in self.vocab if not CJK_RE.search(t) for p in ALNUM.findall(t))
        return pieces

    def rows_with_all(self, terms: Iterable[str]) -> np.ndarray:
        """Document rows holding every one of `terms` (none when a term is unknown), rarest first."""
        cols = []
        for t in set(terms):
            j = self.vocab.get(t)
            if j is None:
                return np.zeros(0, dtype=np.int32)
            cols.append(j)
        if not cols:
            return np.zeros(0, dtype=np.int32)
        cols.sort(key=lambda j: self.indptr[j + 1] - self.indptr[j])
        rows = np.asarray(self.indices[self.indptr[cols[0]]:self.indptr[cols[0] + 1]])
        for j in cols[1:]:
            if rows.size == 0:
                break
            rows = np.intersect1d(rows, self.indices[self.indptr[j]:self.indptr[j + 1]], assume_unique=True)
        return rows

    def best_row_share(self, terms: Iterable[str]) -> float:
        """The largest fraction of `terms` that one document row holds (unknown terms held nowhere)."""
        cols, n = [], 0
        for t in set(terms):
            n += 1
            j = self.vocab.get(t)
            if j is not None:
                cols.append(np.asarray(self.indices[self.indptr[j]:self.indptr[j + 1]]))
        if not cols:
            return 0.0
        _, counts = np.unique(np.concatenate(cols), return_counts=True)
        return float(counts.max()) / n

    def term_idf(self, terms: Iterable[str]) -> dict[str, float]:
        """idf of each term the index contains (unknown terms are left out)."""
        return {t: float(self.idf[self.vocab[t]]) for t in terms if t in self.vocab}

    @property
    def max_idf(self) -> float:
        """The largest idf (1.0 for an empty index): the weight of a term no document has."""
        return float(self.idf.max()) if self.idf.size else 1.0

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def scores(self, query_tokens: Iterable[str]) -> np.ndarray:
        """BM25 score of every document (0 where no query term occurs).

        The query's columns are sliced out and multiplied by their idf weights in scipy's C loops:
        3x faster than a numpy scatter-add over the ~3M postings a question hits at 1M chunks.
        """
        qcount: dict[int, int] = {}
        for t in query_tokens:
            j = self.vocab.get(t)
            if j is not None:
                qcount[j] = qcount.get(j, 0) + 1
        if not qcount or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        cols = np.fromiter(qcount, dtype=np.int64, count=len(qcount))
        w = self.idf[cols] * np.fromiter(qcount.values(), dtype=np.float32, count=len(qcount))
        return np.asarray(self._matrix()[:, cols] @ w, dtype=np.float32)

    def _matrix(self):
        """The postings as a scipy CSC matrix over the same (possibly memory-mapped) arrays: no copy."""
        m = self.__dict__.get("_csc")
        if m is None:
            from scipy import sparse

            m = sparse.csc_matrix((self.data, self.indices, self.indptr), shape=(self.n_docs, len(self.vocab)),
                                  copy=False)
            self.__dict__["_csc"] = m
        return m

    def search(self, query_tokens: Sequence[str], k: int, allowed: np.ndarray | None = None
               ) -> list[tuple[int, float]]:
        """Top-k (row, score) with score > 0, optionally restricted to a boolean row mask."""
        s = self.scores(query_tokens)
        if allowed is not None:
            s = np.where(allowed, s, 0.0)
        nz = np.flatnonzero(s > 0)
        if nz.size == 0:
            return []
        if nz.size > k:
            part = nz[np.argpartition(-s[nz], k - 1)[:k]]
        else:
            part = nz
        order = part[np.argsort(-s[part], kind="stable")]
        return [(int(i), float(s[i])) for i in order]

    def save(self, directory: Path) -> None:
        for name in ("indptr", "indices", "data", "tf", "lengths"):
            if getattr(self, name) is not None:
                np.save(directory / f"bm25_{name}.npy", np.ascontiguousarray(getattr(self, name)))
        np.save(directory / "bm25_idf.npy", self.idf)
        (directory / "bm25_vocab.json").write_text(
            json.dumps({"k1": self.k1, "b": self.b, "n_docs": self.n_docs, "vocab": self.vocab},
                       ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> "BM25Index":
        meta = json.loads((directory / "bm25_vocab.json").read_text(encoding="utf-8"))
        idf = np.load(directory / "bm25_idf.npy")
        mode = "r" if mmap else None
        arrays = {name: np.load(directory / f"bm25_{name}.npy", mmap_mode=mode)
                  for name in ("indptr", "indices", "data", "tf", "lengths")
                  if name in ("indptr", "indices", "data") or (directory / f"bm25_{name}.npy").exists()}
        return cls(vocab=meta["vocab"], idf=idf, n_docs=int(meta["n_docs"]), k1=meta["k1"], b=meta["b"], **arrays)
