"""Japanese-aware keyword search: tokenizers and a BM25 index stored as a sparse matrix.

Japanese has no spaces, so an English regex tokenizer finds almost nothing; morphological
analysis (fugashi + unidic-lite, or SudachiPy) and character bigrams both work, and their union
was measured best on JaQuAD (see README). Hits with score 0 are never returned: they would only
add noise to fusion.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

Tokenizer = Callable[[str], list[str]]

_WORD_RE = re.compile(r"[0-9a-z][0-9a-z_.+#\-]*|[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u30fc々〆ヶ]+")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u30fc々〆ヶ]")
_STOP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白"}


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def bigram_tokens(text: str) -> list[str]:
    """Latin words whole, CJK runs as overlapping character bigrams (a lone char stays a unigram)."""
    out = []
    for run in _WORD_RE.findall(_norm(text)):
        if _CJK_RE.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.append(run.strip(".-+_"))
    return [t for t in out if t]


_local = threading.local()


def _fugashi_tagger():
    """One MeCab tagger per thread: a tagger is not safe to share between threads."""
    tagger = getattr(_local, "fugashi", None)
    if tagger is None:
        import fugashi  # unidic-lite is found automatically

        tagger = _local.fugashi = fugashi.Tagger()
    return tagger


def fugashi_tokens(text: str) -> list[str]:
    """Morphemes (surface forms) from MeCab/unidic-lite, without particles, auxiliaries or symbols."""
    tagger = _fugashi_tagger()
    out = []
    for w in tagger(_norm(text)):
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
    t = _norm(text)
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


@dataclass
class BM25Index:
    """BM25 (Okapi, k1/b) over documents given as token lists; rows are document positions."""

    vocab: dict[str, int]
    idf: np.ndarray          # (n_terms,)
    matrix: "object"         # scipy.sparse.csc_matrix (n_docs, n_terms) of saturated tf weights
    k1: float = 1.2
    b: float = 0.75

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> "BM25Index":
        from scipy import sparse

        vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        lengths = np.zeros(len(docs), dtype=np.float32)
        for i, toks in enumerate(docs):
            lengths[i] = len(toks)
            counts: dict[int, int] = {}
            for t in toks:
                j = vocab.setdefault(t, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            rows.extend([i] * len(counts))
            cols.extend(counts.keys())
            tfs.extend(counts.values())
        n = len(docs)
        avgdl = float(lengths.mean()) if n else 0.0
        rows_a = np.asarray(rows, dtype=np.int64)
        tf = np.asarray(tfs, dtype=np.float32)
        norm = k1 * (1 - b + b * lengths[rows_a] / max(avgdl, 1e-9)) if n else tf
        w = tf * (k1 + 1) / (tf + norm)
        matrix = sparse.csc_matrix((w, (rows_a, np.asarray(cols, dtype=np.int64))), shape=(n, len(vocab)),
                                   dtype=np.float32)
        df = np.diff(matrix.indptr).astype(np.float32)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        return cls(vocab=vocab, idf=idf, matrix=matrix, k1=k1, b=b)

    @property
    def n_docs(self) -> int:
        return self.matrix.shape[0]

    def scores(self, query_tokens: Iterable[str]) -> np.ndarray:
        """BM25 score of every document (0 where no query term occurs)."""
        out = np.zeros(self.n_docs, dtype=np.float32)
        qcount: dict[int, int] = {}
        for t in query_tokens:
            j = self.vocab.get(t)
            if j is not None:
                qcount[j] = qcount.get(j, 0) + 1
        m = self.matrix
        for j, qtf in qcount.items():
            lo, hi = m.indptr[j], m.indptr[j + 1]
            out[m.indices[lo:hi]] += self.idf[j] * qtf * m.data[lo:hi]
        return out

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
        from scipy import sparse

        sparse.save_npz(directory / "bm25.npz", self.matrix, compressed=False)
        np.save(directory / "bm25_idf.npy", self.idf)
        (directory / "bm25_vocab.json").write_text(
            json.dumps({"k1": self.k1, "b": self.b, "vocab": self.vocab}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "BM25Index":
        from scipy import sparse

        meta = json.loads((directory / "bm25_vocab.json").read_text(encoding="utf-8"))
        return cls(vocab=meta["vocab"], idf=np.load(directory / "bm25_idf.npy"),
                   matrix=sparse.load_npz(directory / "bm25.npz").tocsc(), k1=meta["k1"], b=meta["b"])

