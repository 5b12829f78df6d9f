"""How this project talks to OpenAI-compatible HTTP endpoints (chat, embeddings): one home for it, so a
fix reaches both `rag.llm.ChatClient` and `rag.remote_embedding.OpenAIEmbedder`.

- Retried: connect failures, 408/409/425/429 and 5xx but 501/505 (what the OpenAI SDK retries, plus
  425 Too Early); other 4xx never. A request that may already be running upstream (timed out or cut
  after it was sent) is retried only when the caller says it is idempotent (embeddings, not chat).
- Waits: `Retry-After` (seconds or an HTTP date), else exponential backoff with up to +25% jitter, each
  capped at `max_wait`; all of one call's waits together fit `budget`, and none runs past its deadline.
- Error bodies: at most `MAX_ERROR_BYTES` read (a body that never ends must not hang the caller); the
  message of an OpenAI-style error JSON, else the text.
- Upstream text reaches a message only after the key and the URL's credentials are redacted, and is
  cut only then (a key straddling the cut must not leak its prefix).
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

MAX_ERROR_BYTES = 16_384    # of an error body: enough for any message, never a whole upstream page
MESSAGE_CHARS = 200         # of upstream text in an error message (cut after redaction)
RETRY_STATUS = frozenset({408, 409, 425, 429})  # and 5xx, except:
FINAL_5XX = frozenset({501, 505})               # not implemented / version not supported: retrying cannot help

T = TypeVar("T")


# ------------------------------------------------------------------ URLs and secrets

def _host(parts) -> str:
    """host[:port] without userinfo, IPv6 literals bracketed."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str) -> str:
    """URL without credentials or query string (which may hold a key): the form shown in messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, _host(parts), parts.path, "", ""))


def endpoint_url(base_url: str, path: str) -> str:
    """`base_url` + `path`, keeping a query string (`?api-version=`) and dropping userinfo (httpx would
    turn `user:pass@` into Basic auth and replace the Bearer key; `auth_headers` decides instead)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, _host(parts), parts.path.rstrip("/") + path, parts.query, ""))


def auth_headers(base_url: str, api_key: str) -> dict[str, str]:
    """Bearer `api_key`; without one, Basic from the URL's `user:pass@` (a proxy's login); else none."""
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    parts = urlsplit(base_url)
    if parts.username is not None:
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(login).decode("ascii")}
    return {}


def url_secrets(base_url: str, api_key: str = "") -> list[str]:
    """What must never appear in a message: the key, the URL's userinfo and its query values."""
    parts = urlsplit(base_url)
    found = [api_key, parts.username or "", parts.password or ""]
    for kv in parts.query.split("&"):
        if "=" in kv:
            found.append(kv.split("=", 1)[1])
    found += [unquote(s) for s in found]   # servers echo what they decoded
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """Servers echo keys in error bodies ("Incorrect API key provided: sk-..."): each secret -> ***."""
    for sec in secrets:
        text = text.replace(sec, "***")
    return text


def shown(text: str, secrets: list[str], limit: int = MESSAGE_CHARS) -> str:
    """Upstream text fit for a message: redacted first, then cut to `limit` characters."""
    text = redact(text, secrets)
    return text[:limit] + "…" if len(text) > limit else text


# ------------------------------------------------------------------ bodies

def read_capped(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), True
    return bytes(buf), False


def error_message(err: Any) -> str:
    """The message of a parsed error: `{"error": {"message": m}}`, `{"error": m}` (Ollama, TEI),
    `{"message": m}` (vLLM), `{"detail": m}` (FastAPI), else the object as text; whitespace collapsed."""
    if isinstance(err, dict):
        inner = err.get("error")
        if isinstance(inner, (dict, str)) and inner:
            return error_message(inner)
        for key in ("message", "detail"):
            if err.get(key):
                return error_message(err[key])
        err = json.dumps(err, ensure_ascii=False)
    return " ".join(str(err).split())


def error_detail(data: bytes) -> str:
    """The message of an error body (JSON as `error_message` reads it, else the text), uncut."""
    try:
        return error_message(json.loads(data))
    except ValueError:
        return " ".join(data.decode("utf-8", errors="replace").split())


# ------------------------------------------------------------------ when to retry, how long to wait

def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for: delay-seconds or an HTTP date (relative to `now`,
    epoch seconds); None when absent or unreadable. A date in the past means 0."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:          # "-0000": RFC 5322's "UTC, zone unknown"
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2         # attempts after the first
    backoff: float = 0.5         # first wait without Retry-After, doubled each time
    max_wait: float = 20.0       # the longest single wait, whatever Retry-After asks
    budget: float = 10.0         # all of one call's waits together

    @staticmethod
    def retries_status(status: int) -> bool:
        return status in RETRY_STATUS or (status >= 500 and status not in FINAL_5XX)

    @staticmethod
    def retries_error(exc: httpx.TransportError, idempotent: bool) -> bool:
        """A connect failure never reached the server; anything later may have: idempotent calls only."""
        if isinstance(exc, httpx.UnsupportedProtocol):
            return False
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return True
        return idempotent

    def delay(self, attempt: int, after: float | None, rand: float) -> float:
        """The wait before attempt `attempt + 1`: Retry-After if given, else backoff; `rand` in [0, 1)."""
        wait = self.backoff * (2 ** attempt) * (1 + rand * 0.25) if after is None else after
        return min(wait, self.max_wait)


class CallBudget:
    """One call's wall-clock deadline and what is left of its retry-wait budget."""

    def __init__(self, policy: RetryPolicy, deadline: float = math.inf, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.deadline = clock() + deadline
        self.sleep_left = policy.budget

    def left(self) -> float:
        return self.deadline - self._clock()

    def reserve(self, delay: float) -> bool:
        """Take `delay` from the budget; False (nothing taken) when it does not fit or outlasts the deadline."""
        if delay > self.sleep_left or delay >= self.left():
            return False
        self.sleep_left -= delay
        return True

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base`, no part of it longer than what is left of the deadline."""
        left = max(0.001, self.left())

        def cap(x: float | None) -> float:
            return left if x is None else min(x, left)

        return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write),
                             pool=cap(base.pool))


# ------------------------------------------------------------------ one request, retried

class RequestFailed(Exception):
    """An HTTP call that failed for good. `reason` may hold upstream text: redact before showing it.
    `retryable`: the failure was of a retried kind and the attempts or the budget ran out."""

    def __init__(self, reason: str, status: int | None = None, attempts: int = 1, retryable: bool = False):
        super().__init__(reason)
        self.reason, self.status, self.attempts, self.retryable = reason, status, attempts, retryable


def transport_reason(exc: httpx.TransportError, idempotent: bool) -> str:
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({name})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({name})"
    if idempotent:
        return f"the connection broke ({name})"
    return f"the connection broke after the request was sent ({name}); not retried"


def _status_reason(resp: httpx.Response) -> str:
    """`HTTP 503: message`, reading at most MAX_ERROR_BYTES of the body, and closing it."""
    try:
        detail = error_detail(read_capped(resp, MAX_ERROR_BYTES)[0])
    except httpx.HTTPError as exc:
        detail = f"error body unreadable ({type(exc).__name__})"
    finally:
        resp.close()
    return f"HTTP {resp.status_code}" + (f": {detail}" if detail else "")


def send(client: httpx.Client, url: str, payload: dict, policy: RetryPolicy, budget: CallBudget,
         timeout: httpx.Timeout, *, idempotent: bool, read: Callable[[httpx.Response], T] | None = None,
         sleep: Callable[[float], None] = time.sleep,
         on_attempt: Callable[[int], None] | None = None) -> httpx.Response | T:
    """POST `payload` as JSON, retried as the module docstring says; raises RequestFailed.

    Returns the open streaming 200 response (the caller closes it), or, with `read`, what `read` makes
    of it: the body is then read inside the attempt, so a body that breaks off is retried like a
    request that did (idempotent calls only)."""
    attempt = 0
    while True:
        if on_attempt is not None:
            on_attempt(attempt)
        after = None
        try:
            resp = client.send(client.build_request("POST", url, json=payload, timeout=budget.timeout(timeout)),
                               stream=True)
            if resp.status_code == 200:
                if read is None:
                    return resp
                try:
                    return read(resp)
                finally:
                    resp.close()
        except httpx.TransportError as exc:
            reason, status = transport_reason(exc, idempotent), None
            retryable = policy.retries_error(exc, idempotent)
        except httpx.HTTPError as exc:   # a body that cannot be decoded (gzip gone wrong): the same next time
            raise RequestFailed(f"unreadable response ({type(exc).__name__})", None, attempt + 1) from None
        else:
            status, after = resp.status_code, retry_after(resp.headers.get("retry-after"))
            reason, retryable = _status_reason(resp), policy.retries_status(resp.status_code)
        if not retryable:
            raise RequestFailed(reason, status, attempt + 1)
        delay = policy.delay(attempt, after, random.random())
        if attempt >= policy.max_retries or not budget.reserve(delay):
            raise RequestFailed(reason, status, attempt + 1, retryable=True)
        sleep(delay)
        attempt += 1
