"""A scripted OpenAI-compatible chat endpoint for tests (stdlib only, real sockets on 127.0.0.1).

A test scripts the replies, calls the client against `server.base_url`, and reads back what the
server received:

    def test_x(llm_server):
        llm_server.script(sse_reply(["こん", "にちは"]))
        ...
        assert llm_server.requests[0].json["stream"] is True

Each request pops the next scripted reply; the last one repeats. Every reply is sent with
`Connection: close`, so no handler thread is left waiting on a keep-alive connection, and waits
inside a reply (slow first byte, stall) end early when the fixture tears the server down.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Sequence

import pytest

# ----------------------------------------------------------------------------- scripted replies


@dataclass
class Reply:
    """One scripted reply. Build it with the helpers below rather than by hand."""

    kind: str                                   # "json" | "sse" | "raw" | "drop" (read the request, close, no reply)
                                                # | "echo" (the request's last message streamed back)
    status: int = 200
    text: str = ""                              # kind="json": the assistant text
    pieces: Sequence[str] = ()                  # kind="sse": text deltas, one chunk each
    done: bool = True                           # kind="sse": end with `data: [DONE]`
    openai_extras: bool = False                 # kind="sse": role chunk, empty-choices chunk, usage chunk
    body: bytes = b""                           # kind="raw": the body as is
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0                          # wait before the status line (slow first byte)
    stall_after: int | None = None              # kind="sse": after this many pieces, wait `stall` s
    stall: float = 0.0
    cut_after: int | None = None                # kind="sse": after this many pieces, drop the connection
    bad_json_after: int | None = None           # kind="sse": after this many pieces, send `data: {bad`
    body_stall: float = 0.0                     # kind="raw"/"json": send headers, then wait before the body
    piece_delay: float = 0.0                    # kind="sse": wait this long before each piece (a slow drip)
    echo_auth: bool = False                     # kind="raw": "{key}" in the body becomes the received bearer key
    endless: bool = False                       # kind="raw": chunked body repeated until the client hangs up


def json_reply(text: str, status: int = 200, delay: float = 0.0, **kw) -> Reply:
    """A normal non-streaming chat completion."""
    return Reply("json", status=status, text=text, delay=delay, **kw)


def sse_reply(pieces: Sequence[str], done: bool = True, openai_extras: bool = False, **kw) -> Reply:
    """An SSE stream of `pieces` (one chunk per piece)."""
    return Reply("sse", pieces=list(pieces), done=done, openai_extras=openai_extras, **kw)


def echo_reply(piece_chars: int = 40) -> Reply:
    """An SSE stream that echoes the request's last message back (a model that repeats its prompt)."""
    return Reply("echo", pieces=[str(piece_chars)])


def status_reply(status: int, body: str | dict | bytes = "", headers: dict | None = None, **kw) -> Reply:
    """An error status with a body (a dict is sent as JSON, anything else as text/plain)."""
    if isinstance(body, dict):
        data, ctype = json.dumps(body).encode(), "application/json"
    elif isinstance(body, bytes):
        data, ctype = body, "application/octet-stream"
    else:
        data, ctype = body.encode(), "text/plain; charset=utf-8"
    return Reply("raw", status=status, body=data, content_type=ctype, headers=dict(headers or {}), **kw)


def echo_key_reply(status: int, message: str, **kw) -> Reply:
    """An error whose JSON message contains the client's own API key where `{key}` is (servers do echo it)."""
    return Reply("raw", status=status, body=json.dumps({"error": {"message": message}}).encode(),
                 content_type="application/json", echo_auth=True, **kw)


def drop_reply() -> Reply:
    """Read the request, then close the connection without any reply (the request was sent)."""
    return Reply("drop")


def raw_reply(body: str | bytes, content_type: str = "application/json", status: int = 200, **kw) -> Reply:
    """A 200 with an arbitrary body (e.g. malformed JSON)."""
    data = body.encode() if isinstance(body, str) else body
    return Reply("raw", status=status, body=data, content_type=content_type, **kw)


def completion_body(text: str, model: str = "m") -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def chunk_body(delta: dict, finish: str | None = None, model: str = "m") -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# ----------------------------------------------------------------------------- the server


@dataclass
class Received:
    method: str
    path: str
    headers: dict            # lower-case names
    raw: bytes

    @property
    def json(self):
        return json.loads(self.raw.decode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # needed for chunked transfer encoding
    timeout = 5                            # a socket read never blocks a handler for long
    server: "_Server"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._reply_404()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        owner = self.server.owner
        owner._record(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw))
        self.close_connection = True
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            self._reply_404()
            return
        reply = owner._next()
        if reply.delay and owner._stop.wait(reply.delay):
            return
        try:
            if reply.kind == "drop":
                self._abort()
            elif reply.kind == "echo":
                text = json.loads(raw)["messages"][-1]["content"]
                size = int(reply.pieces[0])
                self._sse(Reply("sse", pieces=[text[i:i + size] for i in range(0, len(text), size)]))
            elif reply.kind == "sse":
                self._sse(reply)
            elif reply.kind == "json":
                self._body(reply, json.dumps(completion_body(reply.text), ensure_ascii=False).encode(),
                           "application/json")
            elif reply.endless:
                self._endless(reply)
            else:
                body = reply.body
                if reply.echo_auth:
                    key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    body = body.replace(b"{key}", key.encode())
                self._body(reply, body, reply.content_type)
        except (BrokenPipeError, ConnectionResetError):
            pass                           # the client gave up first (timeouts): fine

    # -- helpers
    def _reply_404(self):
        data = json.dumps({"error": {"message": f"no route {self.path}"}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _body(self, reply: Reply, data: bytes, ctype: str):
        self.send_response(reply.status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in reply.headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.flush()
        if reply.body_stall and self.server.owner._stop.wait(reply.body_stall):
            return
        self.wfile.write(data)
        self.wfile.flush()

    def _endless(self, reply: Reply):
        """The body, repeated in chunks until the client hangs up or the server stops (never ends)."""
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        while not self.server.owner._stop.wait(0.01):
            self._chunk(reply.body)

    def _chunk(self, data: bytes):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, obj) -> bytes:
        payload = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        return f"data: {payload}\n\n".encode("utf-8")

    def _sse(self, reply: Reply):
        stop = self.server.owner._stop
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        for k, v in reply.headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.flush()
        self._chunk(b": keep-alive comment\n\n")
        if reply.openai_extras:
            self._chunk(self._event(chunk_body({"role": "assistant", "content": ""})))
        for i, piece in enumerate(reply.pieces):
            if reply.piece_delay and stop.wait(reply.piece_delay):
                self._abort()
                return
            if reply.stall_after is not None and i == reply.stall_after:
                stop.wait(reply.stall)
                self._abort()
                return
            if reply.cut_after is not None and i == reply.cut_after:
                self._abort()
                return
            if reply.bad_json_after is not None and i == reply.bad_json_after:
                self._chunk(b'data: {"choices": [{"delta": {"content": "x"\n\n')
            self._chunk(self._event(chunk_body({"content": piece})))
        if reply.stall_after is not None and reply.stall_after >= len(reply.pieces):
            stop.wait(reply.stall)
            self._abort()
            return
        if reply.cut_after is not None and reply.cut_after >= len(reply.pieces):
            self._abort()
            return
        if reply.openai_extras:
            self._chunk(self._event(chunk_body({}, finish="stop")))
            usage = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
            self._chunk(self._event(usage))
        if reply.done:
            self._chunk(self._event("[DONE]"))
        self.wfile.write(b"0\r\n\r\n")    # the terminating chunk
        self.wfile.flush()

    def _abort(self):
        """Drop the connection without the terminating chunk (the client sees a truncated body)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False         # handler threads are joined in server_close()
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, owner: "ScriptedLLMServer"):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class ScriptedLLMServer:
    def __init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._replies: list[Reply] = []
        self.requests: list[Received] = []
        self._httpd = _Server(self)
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"llm-server-{self.port}", daemon=True)
        self._thread.start()

    # -- scripting
    def script(self, *replies: Reply) -> "ScriptedLLMServer":
        """Replace the queue: each request pops the next reply, the last one repeats."""
        with self._lock:
            self._replies = list(replies)
        return self

    def _next(self) -> Reply:
        with self._lock:
            if not self._replies:
                return json_reply("(no scripted reply)")
            if len(self._replies) > 1:
                return self._replies.pop(0)
            return self._replies[0]

    def _record(self, r: Received) -> None:
        with self._lock:
            self.requests.append(r)

    # -- read back
    @property
    def bodies(self) -> list[dict]:
        return [r.json for r in self.requests]

    @property
    def last(self) -> Received:
        return self.requests[-1]

    # -- lifecycle
    def close(self) -> None:
        self._stop.set()                 # wakes every waiting reply
        self._httpd.shutdown()
        self._httpd.server_close()       # joins handler threads
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_port() -> int:
    """A port that nothing listens on (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    server = ScriptedLLMServer()
    try:
        yield server
    finally:
        server.close()
        leftover = [t for t in threading.enumerate() if t.name.startswith(f"llm-server-{server.port}")]
        assert not any(t.is_alive() for t in leftover), "the scripted LLM server thread did not stop"


@contextlib.contextmanager
def assistant_factory(server: ScriptedLLMServer, retriever, **client) -> Iterator:
    """`make(retriever_=None, **settings)` building Assistants whose chat client talks to `server`
    (`client`: LLMConfig fields such as read_timeout, max_retries, api_key); the clients are closed after."""
    from rag.config import Settings
    from rag.generation import Assistant
    from rag.llm import ChatClient, LLMConfig

    clients = []

    def make(retriever_=None, **settings):
        c = ChatClient(LLMConfig(base_url=server.base_url, model="m", **{"connect_timeout": 1, "backoff": 0.01,
                                                                        **client}))
        clients.append(c)
        return Assistant(Settings(llm_base_url=server.base_url, llm_model="m", **settings),
                         retriever_ or retriever, client=c)

    try:
        yield make
    finally:
        for c in clients:
            c.close()
