"""An OpenAI-compatible chat API over the archive, for chat front-ends (Open WebUI, LibreChat, bots).

`POST /v1/chat/completions` (plain JSON or `stream: true` server-sent events) and `GET /v1/models`
(one model, `rag-archive`) are mounted on `rag serve`'s own app (`app_kwargs()` below), next to the
page and the MCP endpoint. The last user message is the question; earlier user/assistant pairs are
the history, so follow-ups work; system messages are ignored (the archive's prompts apply). The reply
is the page's `/ask` text (`answer_text.api_answer_text`: the answer with `[n]` markers, then the
numbered sources with URLs), and the same sources as data in the extra field `sources`.

Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`. When RAG_AUTH or
RAG_API_TOKEN is set, `/v1/*` and the MCP endpoint need `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from typing import Any, Callable, Iterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from .answer_text import api_answer_text
from .config import Settings
from .generation import check_question

log = logging.getLogger(__name__)

MODEL_ID = "rag-archive"
MAX_BODY_BYTES = 1_000_000      # a long conversation with our cited answers is ~100 kB
MAX_HISTORY_ANSWER_CHARS = 4000  # earlier answers only help rewrite a follow-up; the rewrite reads 500
MCP_PATH = "/gradio_api/mcp"


# ------------------------------------------------------------------ errors and auth

class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.extra = extra or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                          **self.extra}}

    def response(self, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def token_check(api_token: str = "", login: tuple[str, str] | None = None) -> Callable[[str | None], bool] | None:
    """A check of the `Authorization` header, or None when neither a token nor a login is configured.

    Accepted: `Bearer <RAG_API_TOKEN>`, `Bearer <user:password>` (the RAG_AUTH value as the token: what
    an OpenAI client sends as its api_key), and HTTP Basic with the login's user and password."""
    pair = f"{login[0]}:{login[1]}".encode() if login else None
    tokens = [t for t in (api_token.encode() if api_token else None, pair) if t]
    if not tokens:
        return None

    def ok(header: str | None) -> bool:
        scheme, _, value = (header or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic" and pair:
            try:
                return hmac.compare_digest(base64.b64decode(value, validate=True), pair)
            except binascii.Error:
                return False
        if scheme.lower() != "bearer" or not value:
            return False
        v = value.encode()
        return any(hmac.compare_digest(v, t) for t in tokens)

    return ok


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class TokenGuard:
    """ASGI middleware: requests under the guarded path prefixes need a valid Authorization header."""

    def __init__(self, app: Any, check: Callable[[str | None], bool], prefixes: tuple[str, ...]):
        self.app, self.check, self.prefixes = app, check, prefixes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") != "OPTIONS" and \
                _under(scope.get("path", ""), self.prefixes):
            header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None)
            if not self.check(header):
                err = APIError(401, "Missing or wrong API token: send `Authorization: Bearer <token>` "
                                    "(RAG_API_TOKEN, or the RAG_AUTH value user:password).",
                               "invalid_request_error", "invalid_api_key")
                await err.response({"WWW-Authenticate": 'Bearer realm="rag-archive"'})(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ requests

def _text(content: Any) -> str:
    """A message's text: a string, or OpenAI's list of content parts (text parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise APIError(400, "message content must be a string or a list of content parts", param="messages")


def strip_source_list(answer: str) -> str:
    """An earlier reply of ours without its source list (only the answer helps a follow-up)."""
    for heading in ("\n\nSources:\n", "\n\nNearest passages:\n"):
        answer = answer.split(heading, 1)[0]
    return answer[:MAX_HISTORY_ANSWER_CHARS]


def parse_chat(body: Any, settings: Settings) -> tuple[str, list[tuple[str, str]], bool]:
    """(question, history pairs, stream) from a chat completions request, or APIError."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, "", MODEL_ID):
        raise APIError(404, f"The model `{model}` does not exist; this server has one model: {MODEL_ID}",
                       code="model_not_found", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "`messages` must be a non-empty list", param="messages")
    turns: list[tuple[str, str]] = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise APIError(400, "each message must be an object with a `role`", param="messages")
        if m["role"] in ("user", "assistant"):
            turns.append((m["role"], _text(m.get("content"))))
    if not turns or turns[-1][0] != "user":
        raise APIError(400, "the last message must be the user's question", param="messages")
    try:
        question = check_question(turns[-1][1], settings.max_question_chars)
    except ValueError as exc:
        code = "question_too_long" if "limit" in str(exc) else "empty_question"
        raise APIError(400, str(exc), param="messages", code=code) from None
    history: list[tuple[str, str]] = []
    pending: str | None = None
    for role, text in turns[:-1]:
        if role == "user":
            pending = text
        elif pending is not None:  # an answer to a question: one turn
            history.append((pending[:settings.max_question_chars], strip_source_list(text)))
            pending = None
    keep = max(0, settings.max_history_turns)
    return question, history[-keep:] if keep else [], bool(body.get("stream"))


async def read_json(request: Request) -> Any:
    """The body as JSON, read up to MAX_BODY_BYTES."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise APIError(413, f"the request body is larger than {MAX_BODY_BYTES:,} bytes", code="request_too_large")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > MAX_BODY_BYTES:
            raise APIError(413, f"the request body is larger than {MAX_BODY_BYTES:,} bytes",
                           code="request_too_large")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "the request body is not valid JSON") from None


# ------------------------------------------------------------------ replies

def source_data(answer: Any) -> list[dict]:
    """The numbered sources as data: `cited` says whether the answer cites it."""
    n_cited = len(answer.citations or [])
    return [{"n": s["n"], "post_id": s["post_id"], "title": s.get("title"), "date": s.get("date"),
             "url": s.get("url"), "chunk_id": s.get("chunk_id"), "cited": s["n"] <= n_cited, "text": s.get("text")}
            for s in answer.sources or []]


def _upstream_error(answer: Any) -> APIError:
    """The chat endpoint failed: a generic message (the detail, which may name internal hosts, is logged
    by the caller, as the page does), and the passages retrieved for the question."""
    return APIError(502, "The chat model failed; the answer could not be completed.", "upstream_error",
                    "chat_model_failed", extra={"sources": source_data(answer)})


class ChatAPI:
    """The request handlers, bound to the server's assistant."""

    def __init__(self, assistant: Any, settings: Settings):
        self.assistant, self.settings, self.format = assistant, settings, api_answer_text
        self.created = int(time.time())

    def _head(self, kind: str) -> dict:
        return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": kind, "created": int(time.time()),
                "model": MODEL_ID}

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model()]})

    async def model(self, request: Request) -> Response:
        if request.path_params["model"] != MODEL_ID:
            raise APIError(404, f"The model `{request.path_params['model']}` does not exist", code="model_not_found")
        return JSONResponse(self._model())

    def _model(self) -> dict:
        return {"id": MODEL_ID, "object": "model", "created": self.created, "owned_by": "rag-archive",
                "answer_mode": self.assistant.model_label}

    async def chat(self, request: Request) -> Response:
        question, history, stream = parse_chat(await read_json(request), self.settings)
        if stream:
            return StreamingResponse(self._events(question, history), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = await run_in_threadpool(self.assistant.ask, question, history)
        if answer.mode == "error":
            log.warning("chat endpoint error: %s", answer.error)
            raise _upstream_error(answer)
        body = self._head("chat.completion")
        body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": self.format(answer)},
                            "logprobs": None, "finish_reason": "stop"}]
        body.update(self._extra(answer))
        return JSONResponse(body)

    def _extra(self, answer: Any) -> dict:
        return {"sources": source_data(answer), "answer_mode": answer.mode,
                "grounded": getattr(answer, "grounded", None), "notice": getattr(answer, "notice", None)}

    def _events(self, question: str, history: list) -> Iterator[str]:
        """Server-sent events: the answer as the assistant streams it (renumbered, so its [n] are final),
        then whatever the final reply adds (warnings, the source list), then the sources as data."""
        head = self._head("chat.completion.chunk")

        def event(delta: dict, finish: str | None = None, **extra: Any) -> str:
            chunk = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                     **extra}
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        yield event({"role": "assistant", "content": ""})
        sent, held, final = "", "", None  # trailing whitespace is held back: the reply is stripped
        try:
            for kind, payload in self.assistant.stream(question, history):
                if kind != "delta":
                    final = payload
                    continue
                text = held + str(payload)
                if not sent:
                    text = text.lstrip()
                body = text.rstrip()
                held = text[len(body):]
                if body:
                    sent += body
                    yield event({"content": body})
            if final is None:
                raise RuntimeError("the assistant returned no answer")
        except ValueError as exc:
            yield f"data: {json.dumps(APIError(400, str(exc)).body(), ensure_ascii=False)}\n\n"
            return
        except Exception as exc:
            log.exception("streaming an answer to %r failed", question[:200])
            err = APIError(500, f"something went wrong while answering ({type(exc).__name__})", "server_error")
            yield f"data: {json.dumps(err.body(), ensure_ascii=False)}\n\n"
            return
        if final.mode == "error":
            log.warning("chat endpoint error: %s", final.error)
            yield f"data: {json.dumps(_upstream_error(final).body(), ensure_ascii=False)}\n\n"
            return
        full = self.format(final)
        if full.startswith(sent):
            rest = full[len(sent):]
        else:  # the reply puts something before the answer text: send what the stream lacks, after it
            rest = "\n\n" + full.replace(sent, "", 1).strip() if sent and sent in full else "\n\n" + full
        if rest:
            yield event({"content": rest})
        yield event({}, "stop", **self._extra(final))
        yield "data: [DONE]\n\n"


async def _api_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, APIError):
        return exc.response()
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return APIError(404, f"no route {request.url.path}; this server has /v1/chat/completions and /v1/models",
                        code="not_found").response()
    if status == 405:
        return APIError(405, f"{request.method} is not allowed on {request.url.path}",
                        code="method_not_allowed").response()
    log.error("chat API error on %s", request.url.path, exc_info=exc)
    return APIError(500, f"internal error ({type(exc).__name__})", "server_error").response()


def chat_app(assistant: Any, settings: Settings) -> Starlette:
    """The `/v1` sub-application."""
    api = ChatAPI(assistant, settings)
    routes = [Route("/chat/completions", api.chat, methods=["POST"]),
              Route("/models", api.models, methods=["GET"]),
              Route("/models/{model:path}", api.model, methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={APIError: _api_error, 404: _api_error, 405: _api_error,
                                                        Exception: _api_error})


def app_kwargs(assistant: Any, settings: Settings, login: tuple[str, str] | None = None) -> dict:
    """FastAPI arguments for `Blocks.launch(app_kwargs=...)`: the `/v1` routes (unless RAG_OPENAI_API is
    off) and, when a login is configured, the token guard on `/v1` and the MCP endpoint."""
    kwargs: dict[str, Any] = {}
    if settings.openai_api:
        kwargs["routes"] = [Mount("/v1", app=chat_app(assistant, settings))]
    check = token_check(settings.api_token, login)
    if check is not None:
        prefixes = tuple(p for p, on in (("/v1", settings.openai_api), (MCP_PATH, settings.mcp)) if on)
        if prefixes:
            kwargs["middleware"] = [Middleware(TokenGuard, check=check, prefixes=prefixes)]
    return kwargs
