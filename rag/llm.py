"""Client for OpenAI-compatible chat endpoints (OpenAI, Ollama, vLLM, llama.cpp server) over httpx.

Quirks handled: streams that end without `data: [DONE]`, chunks without `choices` or `usage`,
`Retry-After` in seconds or as an HTTP date, error bodies that are not JSON. Retries, waits, error
bodies and redaction are `rag.http`'s (shared with the embeddings client); a chat request is not
idempotent, so one that may have reached the model (timed out or cut after it was sent) is not
retried, and a stream that breaks after text has been delivered raises with that text.
The API key is sent only in the Authorization header and never appears in messages.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Iterator, Sequence

import httpx

from .config import Settings
from .http import (CallBudget, RequestFailed, RetryPolicy, auth_headers, endpoint_url, error_message, read_capped,
                   redact, redact_url, send, shown, url_secrets)

__all__ = ["ChatClient", "LLMConfig", "LLMError", "chat_url", "redact_url"]


class LLMError(Exception):
    """The endpoint failed after retries; the message is safe to show (no key)."""

    def __init__(self, message: str, status: int | None = None, partial: str = ""):
        super().__init__(message)
        self.status = status
        self.partial = partial


def chat_url(base_url: str) -> str:
    """`{base_url}/chat/completions`, query kept, userinfo dropped (`rag.http.endpoint_url`)."""
    return endpoint_url(base_url, "/chat/completions")


@dataclass(frozen=True)
class LLMConfig:
    """The chat client's own view of the endpoint settings: each field `x` is `Settings.llm_x`, and its
    default is read from there, so the defaults have one home (`rag.config`)."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    temperature: float = Settings.llm_temperature
    max_tokens: int = Settings.llm_max_tokens
    connect_timeout: float = Settings.llm_connect_timeout
    read_timeout: float = Settings.llm_read_timeout
    max_retries: int = Settings.llm_max_retries
    backoff: float = 0.5              # client-only: first retry wait, doubled each time
    max_retry_wait: float = 20.0      # client-only: the longest single wait a Retry-After may ask for
    deadline: float = Settings.llm_deadline          # wall-clock seconds for one call, retries and streaming included
    max_answer_bytes: int = Settings.llm_max_answer_bytes  # of one answer's response body
    retry_budget: float = Settings.llm_retry_budget  # total seconds one call may sleep between retries

    @classmethod
    def from_settings(cls, settings) -> "LLMConfig":
        """The endpoint part of `Settings`: each field `x` here is `settings.llm_x` there."""
        names = [f.name for f in fields(cls) if hasattr(settings, "llm_" + f.name)]
        return cls(**{n: getattr(settings, "llm_" + n) for n in names})

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff, self.max_retry_wait, self.retry_budget)


class ChatClient:
    def __init__(self, config: LLMConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.url = chat_url(config.base_url)
        self._sleep = sleep
        self._policy = config.retry_policy()
        self._secrets = url_secrets(config.base_url, config.api_key)
        headers = {"Content-Type": "application/json", **auth_headers(config.base_url, config.api_key)}
        self._timeout = httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                                      write=config.read_timeout, pool=config.connect_timeout)
        self._http = httpx.Client(headers=headers, timeout=self._timeout)

    def close(self) -> None:
        self._http.close()

    def _payload(self, messages: Sequence[dict], stream: bool, max_tokens: int | None) -> dict:
        return {"model": self.config.model, "messages": list(messages), "temperature": self.config.temperature,
                "max_tokens": max_tokens or self.config.max_tokens, "stream": stream}

    def _budget(self) -> CallBudget:
        return CallBudget(self._policy, self.config.deadline)

    def _fail(self, what: str, status: int | None = None, partial: str = "") -> LLMError:
        """The error to raise, upstream text redacted and then cut (`rag.http.shown`)."""
        msg = f"chat endpoint {redact_url(self.url)} failed: {shown(what, self._secrets)}"
        return LLMError(redact(msg, self._secrets), status=status, partial=partial)

    def _send(self, payload: dict, budget: CallBudget) -> httpx.Response:
        """POST with `rag.http`'s retries; returns an open streaming response with status 200."""
        try:
            return send(self._http, self.url, payload, self._policy, budget, self._timeout, idempotent=False,
                        sleep=self._sleep)
        except RequestFailed as exc:
            raise self._fail(exc.reason, exc.status) from None

    def _body(self, resp: httpx.Response) -> bytes:
        data, more = read_capped(resp, self.config.max_answer_bytes)
        if more:
            raise self._fail(f"the response exceeded {self.config.max_answer_bytes} bytes "
                             "(RAG_LLM_MAX_ANSWER_BYTES)")
        return data

    def complete(self, messages: Sequence[dict], max_tokens: int | None = None) -> str:
        """Non-streaming chat completion; returns the assistant text."""
        budget = self._budget()
        resp = self._send(self._payload(messages, False, max_tokens), budget)
        try:
            body = json.loads(self._body(resp))
            if budget.left() < 0:
                raise self._fail(f"no answer within the deadline ({self.config.deadline:g} s, RAG_LLM_DEADLINE)")
        except httpx.TimeoutException:
            raise self._fail("timed out reading the response") from None
        except httpx.HTTPError as exc:
            raise self._fail(f"the response broke off ({type(exc).__name__})") from None
        except (ValueError, json.JSONDecodeError) as exc:
            raise self._fail(f"invalid JSON in the response ({type(exc).__name__})") from None
        finally:
            resp.close()
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._fail("response has no choices[0].message.content") from None
        return content if isinstance(content, str) else ""

    def stream(self, messages: Sequence[dict], max_tokens: int | None = None) -> Iterator[str]:
        """Yield text deltas from an SSE stream, within the call's deadline and byte cap."""
        budget = self._budget()
        resp = self._send(self._payload(messages, True, max_tokens), budget)
        got = []
        try:
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                # Some servers ignore stream=true and answer with one JSON body.
                data = self._body(resp)
                try:
                    text = json.loads(data)["choices"][0]["message"]["content"] or ""
                except (ValueError, KeyError, IndexError, TypeError):
                    raise self._fail("invalid JSON in the response") from None
                if text:
                    yield text
                return
            for line in self._sse_lines(resp, budget, got):
                if not line or line.startswith(":") or not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    raise self._fail("invalid JSON in the stream", partial="".join(got)) from None
                if isinstance(chunk, dict) and "error" in chunk:
                    raise self._fail(f"error in the stream: {error_message(chunk['error'])}", partial="".join(got))
                choices = chunk.get("choices") if isinstance(chunk, dict) else None
                for choice in choices if isinstance(choices, list) else []:
                    if not isinstance(choice, dict):
                        continue
                    d = choice.get("delta")
                    delta = d.get("content") if isinstance(d, dict) else None
                    if delta is None:
                        delta = choice.get("text")
                    if isinstance(delta, str) and delta:
                        got.append(delta)
                        yield delta
            if not got:
                # llama.cpp's server, asked for more than its context, answers 200 and then ends the
                # stream with no data: that is a failure, not an empty answer.
                raise self._fail("the stream ended without an answer")
        except httpx.TimeoutException:
            raise self._fail("the stream stalled (read timeout)", partial="".join(got)) from None
        except httpx.TransportError as exc:
            raise self._fail(f"the stream broke off ({type(exc).__name__})", partial="".join(got)) from None
        finally:
            resp.close()

    def _sse_lines(self, resp: httpx.Response, budget: CallBudget, got: list[str]) -> Iterator[str]:
        """Lines of the stream; fails once the whole body passes the byte cap or the call its deadline
        (a line without an end is buffered only up to the cap)."""
        buf = bytearray()
        total = 0
        for chunk in resp.iter_bytes():
            total += len(chunk)
            if total > self.config.max_answer_bytes:
                raise self._fail(f"the answer exceeded {self.config.max_answer_bytes} bytes "
                                 "(RAG_LLM_MAX_ANSWER_BYTES)", partial="".join(got))
            if budget.left() < 0:
                raise self._fail(f"no complete answer within the deadline ({self.config.deadline:g} s, "
                                 "RAG_LLM_DEADLINE)", partial="".join(got))
            scan = len(buf)
            buf += chunk
            start = 0
            while True:
                nl = buf.find(b"\n", max(start, scan))
                if nl < 0:
                    break
                yield buf[start:nl].decode("utf-8", errors="replace").strip()
                start = nl + 1
            del buf[:start]
        if buf:
            yield buf.decode("utf-8", errors="replace").strip()

