"""Client for OpenAI-compatible chat endpoints (OpenAI, Ollama, vLLM, llama.cpp server) over httpx.

Quirks handled: streams that end without `data: [DONE]`, chunks without `choices` or `usage`,
`Retry-After` in seconds or as an HTTP date, error bodies that are not JSON. Retries (bounded,
exponential backoff) on connect errors, 429 and 5xx; never on other 4xx. A stream that breaks
after text has been delivered is not retried (the reader already saw that text); it raises.
The API key is sent only in the Authorization header and never appears in messages.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from .config import Settings


class LLMError(Exception):
    """The endpoint failed after retries; the message is safe to show (no key)."""

    def __init__(self, message: str, status: int | None = None, partial: str = ""):
        super().__init__(message)
        self.status = status
        self.partial = partial


def _host(parts) -> str:
    """host[:port] without userinfo, IPv6 literals bracketed."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str) -> str:
    """URL without credentials or query string (which may hold a key)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, _host(parts), parts.path, "", ""))


def chat_url(base_url: str) -> str:
    """`{base_url}/chat/completions`, keeping a query string (`?api-version=`) and dropping userinfo
    (httpx would turn `user:pass@` into Basic auth and replace the Bearer key)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, _host(parts), parts.path.rstrip("/") + "/chat/completions", parts.query, ""))


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


MAX_ERROR_BYTES = 16_384    # of an error body: enough for any message, never a whole upstream page
MESSAGE_CHARS = 200         # of upstream text in an error message (cut after redaction)


def _read_capped(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), True
    return bytes(buf), False


def _error_detail(data: bytes) -> str:
    """The message of an error body (JSON `error.message`, else the text), whitespace collapsed, uncut:
    it is cut after the key has been redacted."""
    try:
        body = json.loads(data)
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, json.JSONDecodeError):
        msg = data.decode("utf-8", errors="replace")
    return " ".join(str(msg or "").split())


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


class _Budget:
    """One call's deadline and retry-sleep budget."""

    def __init__(self, config: LLMConfig):
        self.deadline = time.monotonic() + config.deadline
        self.sleep_left = config.retry_budget

    def left(self) -> float:
        return self.deadline - time.monotonic()


safe_url = redact_url  # old name, kept for importers; `app.link_url` is the unrelated link check


class ChatClient:
    def __init__(self, config: LLMConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.url = chat_url(config.base_url)
        self._sleep = sleep
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        timeout = httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                                write=config.read_timeout, pool=config.connect_timeout)
        self._http = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _payload(self, messages: Sequence[dict], stream: bool, max_tokens: int | None) -> dict:
        return {"model": self.config.model, "messages": list(messages), "temperature": self.config.temperature,
                "max_tokens": max_tokens or self.config.max_tokens, "stream": stream}

    def _wait(self, attempt: int, resp: httpx.Response | None, budget: _Budget) -> bool:
        """Sleep before the next attempt; False (no sleep) when the wait does not fit the call's budget."""
        delay = _retry_after(resp) if resp is not None else None
        if delay is None:
            delay = self.config.backoff * (2 ** attempt) * (1 + random.random() * 0.25)
        delay = min(delay, self.config.max_retry_wait)
        if delay > budget.sleep_left or delay >= budget.left():
            return False
        budget.sleep_left -= delay
        self._sleep(delay)
        return True

    def _timeout(self, budget: _Budget) -> httpx.Timeout:
        left = max(0.001, budget.left())
        return httpx.Timeout(connect=min(self.config.connect_timeout, left), read=min(self.config.read_timeout, left),
                             write=min(self.config.read_timeout, left), pool=min(self.config.connect_timeout, left))

    def _redact(self, text: str) -> str:
        """Servers echo keys in error bodies ("Incorrect API key provided: sk-..."): never pass them on."""
        secrets = [self.config.api_key] if self.config.api_key else []
        parts = urlsplit(self.config.base_url)
        secrets += [x for x in (parts.username, parts.password) if x]
        for kv in parts.query.split("&"):
            if "=" in kv and kv.split("=", 1)[1]:
                secrets.append(kv.split("=", 1)[1])
        for sec in secrets:
            if len(sec) >= 4:
                text = text.replace(sec, "***")
        return text

    def _fail(self, what: str, status: int | None = None, partial: str = "") -> LLMError:
        """The error to raise: the key is redacted from the whole text first, and only then is upstream
        text cut (a key straddling the cut must not leak its prefix)."""
        what = self._redact(what)
        if len(what) > MESSAGE_CHARS:
            what = what[:MESSAGE_CHARS] + "…"
        return LLMError(self._redact(f"chat endpoint {redact_url(self.url)} failed: {what}"), status=status,
                        partial=partial)

    def _send(self, payload: dict, budget: _Budget) -> httpx.Response:
        """POST with retries; returns an open streaming response with status 200.

        Retried: connect failures (the request never left), 429 and 5xx, within the call's retry budget
        and deadline. A connection that breaks after the request was sent is not retried: a
        non-idempotent endpoint may already be working on (and billing) it."""
        last = "no attempt"
        status = None
        for attempt in range(self.config.max_retries + 1):
            more = attempt < self.config.max_retries
            try:
                req = self._http.build_request("POST", self.url, json=payload, timeout=self._timeout(budget))
                resp = self._http.send(req, stream=True)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
                if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) and more and self._wait(attempt, None, budget):
                    continue
                raise self._fail(last) from None
            except httpx.ConnectError as exc:
                last = f"cannot connect ({type(exc).__name__})"
                if more and self._wait(attempt, None, budget):
                    continue
                raise self._fail(last) from None
            except httpx.TransportError as exc:
                raise self._fail(f"the connection broke after the request was sent ({type(exc).__name__}); "
                                 "not retried") from None
            if resp.status_code == 200:
                return resp
            status = resp.status_code
            try:
                data, more_body = _read_capped(resp, MAX_ERROR_BYTES)
                detail = _error_detail(data)
            except httpx.HTTPError as exc:
                detail = f"error body unreadable ({type(exc).__name__})"
            finally:
                resp.close()
            last = f"HTTP {status}" + (f": {detail}" if detail else "")
            if (status == 429 or status >= 500) and more and self._wait(attempt, resp, budget):
                continue
            break
        raise self._fail(last, status)

    def _body(self, resp: httpx.Response) -> bytes:
        data, more = _read_capped(resp, self.config.max_answer_bytes)
        if more:
            raise self._fail(f"the response exceeded {self.config.max_answer_bytes} bytes "
                             "(RAG_LLM_MAX_ANSWER_BYTES)")
        return data

    def complete(self, messages: Sequence[dict], max_tokens: int | None = None) -> str:
        """Non-streaming chat completion; returns the assistant text."""
        budget = _Budget(self.config)
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
        budget = _Budget(self.config)
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
                    raise self._fail(f"error in the stream: {_error_detail_obj(chunk['error'])}", partial="".join(got))
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

    def _sse_lines(self, resp: httpx.Response, budget: _Budget, got: list[str]) -> Iterator[str]:
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


def _error_detail_obj(err) -> str:
    """Uncut, like _error_detail: `_fail` redacts, then cuts."""
    if isinstance(err, dict):
        return " ".join(str(err.get("message", err)).split())
    return " ".join(str(err).split())
