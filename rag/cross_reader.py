"""A cross-encoder on the bundled e5 weights that reads a question and a sentence together.

The linear reader (rag.extractive) ranks sentences by lexical features; it cannot see that 「開催地」
asks for the sentence with 「会場は…」, or that a sentence repeating the question's words adds nothing.
This model reads `<s> query: Q </s></s> passage: S </s>` through the bundled multilingual-e5-small
encoder (rag.e5's file in rag.fast_e5's torch encoder: the same 4-bit weights, no download) with low-rank adapters (LoRA) on the top
layers and a linear head on the mean-pooled output, and returns a logit for "S answers Q".

It reranks the linear reader's best few sentences; the two logits are combined by a logistic
regression fitted on held-out training questions, so the result is again P(the sentence answers),
comparable across questions: the extractive answerer refuses when the best one is too low.

Trained by eval/train_cross_reader.py on JaQuAD train (never scored on); the adapters are small
(rag/models/cross_reader.npz, under 1 MB). Where the file is absent, or the setting says "off",
the linear reader alone ranks, as before.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .e5 import load_model

DEFAULT_MODEL = Path(__file__).with_name("models") / "cross_reader.npz"
MODULES = ("qkv", "ao", "fi", "fo")   # the Linear layers of rag.fast_e5's encoder layer
MAX_Q_TOKENS = 48
MAX_S_TOKENS = 96


def add_adapters(encoder, layers: Sequence[int], rank: int, seed: int = 0) -> dict:
    """Wrap the Linear modules of `layers` with trainable low-rank adapters (y = Wx + B(Ax)).

    Returns {"l{i}.{module}.A"/".B": parameter}; B starts at zero, so the wrapped encoder starts
    out computing exactly what the bundled one does."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    class Adapted(nn.Module):
        def __init__(self, base: nn.Linear):
            super().__init__()
            self.base = base
            self.A = nn.Parameter(torch.randn(rank, base.in_features, generator=gen) / base.in_features ** 0.5)
            self.B = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            return self.base(x) + ((x.float() @ self.A.T) @ self.B.T).to(x.dtype)

    params = {}
    for i in layers:
        layer = encoder.layers[i]
        for name in MODULES:
            wrapped = Adapted(getattr(layer, name))
            setattr(layer, name, wrapped)
            params[f"l{i}.{name}.A"] = wrapped.A
            params[f"l{i}.{name}.B"] = wrapped.B
    return params


def merge_adapters(encoder, weights: Mapping[str, np.ndarray]) -> None:
    """Fold trained adapters into the encoder's weights (W += B @ A): no cost at run time."""
    import torch

    for key in {k.rsplit(".", 1)[0] for k in weights if k.startswith("l") and k.endswith((".A", ".B"))}:
        li, name = key.split(".")
        lin = getattr(encoder.layers[int(li[1:])], name)
        delta = torch.from_numpy(weights[key + ".B"].astype(np.float32) @ weights[key + ".A"].astype(np.float32))
        lin.weight.data = (lin.weight.data.float() + delta).to(lin.weight.dtype)


def pair_ids(tok, question: str, sentence: str) -> list[int]:
    """Token ids of one (question, sentence) pair in XLM-R's pair layout, each side truncated."""
    q = tok.content_ids("query: " + question)[:MAX_Q_TOKENS]
    s = tok.content_ids("passage: " + sentence)[:MAX_S_TOKENS]
    return [tok.bos, *q, tok.eos, tok.eos, *s, tok.eos]


def batch_inputs(wemb, unk: int, rows: Sequence[Sequence[int]]):
    """(word embeddings [B, L, H], mask [B, L]) for a batch of id lists, padded to a multiple of 8."""
    import torch

    L = max(len(r) for r in rows)
    L = -(-L // 8) * 8
    ids = np.full((len(rows), L), unk, dtype=np.int64)
    mask = np.zeros((len(rows), L), dtype=np.float32)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1.0
    return torch.from_numpy(wemb(ids)), torch.from_numpy(mask)


def pair_logits(enc, wemb, unk: int, rows: Sequence[Sequence[int]], head, batch: int = 16) -> np.ndarray:
    """`head(pooled)` for each pair of token ids, batched by length (little padding)."""
    import torch

    out = np.zeros(len(rows), dtype=np.float64)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    with torch.inference_mode():
        for a in range(0, len(order), batch):
            idx = order[a:a + batch]
            w, m = batch_inputs(wemb, unk, [rows[i] for i in idx])
            out[idx] = head(enc(w, m)).reshape(-1).numpy()
    return out


@dataclass
class CrossReader:
    """The trained adapters and head, merged into a private copy of the bundled encoder."""

    weights: Mapping[str, np.ndarray]
    stack: np.ndarray            # [w_cross, w_linear, bias]: P = sigmoid(w_c * cross + w_l * logit(linear) + b)
    top: int                     # how many of the linear reader's best sentences it rereads
    refuse_below: float          # best P under which "no sentence answers" (held-out training questions)
    meta: Mapping = field(default_factory=dict)
    _model: tuple | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> "CrossReader":
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                weights = {k: z[k] for k in z.files}
            meta = json.loads(str(weights.pop("meta")))
            return cls(weights, np.asarray(meta["stack"], float), int(meta["top"]),
                       float(meta["refuse_below"]), meta)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read cross reader model {p}: {exc!r}") from None

    def _load_model(self):
        """Built on first use (once, also when several server threads ask at once); runs on the
        process's torch threads, which the embedder settings already chose."""
        with self._lock:
            if self._model is None:
                import torch

                from .cpu import detect_engine
                from .fast_e5 import build_encoder

                _, f, tok, wemb = load_model()   # the file, tokenizer and word table the embedder shares
                # bf16 where the CPU multiplies it natively, else fp32: int8 (the embedder's choice on
                # such CPUs) lost 3.5 points of JaQuAD lead-sentence accuracy here (0.795 -> 0.760)
                enc = build_encoder(f, "bf16" if detect_engine().engine == "bf16" else "fp32")
                merge_adapters(enc, self.weights)
                head_w = torch.from_numpy(self.weights["head.w"].astype(np.float32))
                head_b = float(self.weights["head.b"][0])
                self._model = (enc, tok, wemb, head_w, head_b)
            return self._model

    def logits(self, question: str, sentences: Sequence[str], batch: int = 16) -> np.ndarray:
        """The cross-encoder's logit for each sentence answering `question`."""
        enc, tok, wemb, head_w, head_b = self._load_model()
        rows = [pair_ids(tok, question, s) for s in sentences]
        return pair_logits(enc, wemb, tok.unk, rows, lambda pooled: pooled @ head_w + head_b, batch)

    def combine(self, cross: np.ndarray, linear_p: np.ndarray) -> np.ndarray:
        """P(the sentence answers) from the cross logit and the linear reader's probability."""
        lp = np.clip(linear_p, 1e-6, 1 - 1e-6)
        z = self.stack[0] * cross + self.stack[1] * np.log(lp / (1 - lp)) + self.stack[2]
        return 1.0 / (1.0 + np.exp(-z))


def load_cross_reader(path: str | Path | None = None) -> CrossReader | None:
    """The model at `path` (default: the bundled one), None where the file is absent."""
    p = Path(path) if path else DEFAULT_MODEL
    if not p.exists():
        return None
    return CrossReader.load(p)
