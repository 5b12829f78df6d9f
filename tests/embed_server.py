"""A scripted OpenAI-compatible /v1/embeddings endpoint for fault tests (stdlib, real sockets on 127.0.0.1).

Vectors are a deterministic function of the input text (so order and batching can be checked);
`script` queues faults that the next requests get, in order: an HTTP status (with headers and an
error message), a delay before answering (for client timeouts), or a wrong number of dimensions.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


@dataclass
class Fault:
    status: int = 200
    message: str = ""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    dim: int | None = None
    drop_one: bool = False      # answer one vector fewer than asked


def text_vector(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class EmbedServer:
    def __init__(self, dim: int = 8, work_s: float = 0.0):
        self.dim = dim
        self.work_s = work_s            # time each request "computes" (to see requests overlap)
        self.faults: list[Fault] = []
        self.requests: list[dict] = []  # {"body", "headers"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                body = json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append({"body": body, "headers": dict(self.headers)})
                    fault = server.faults.pop(0) if server.faults else Fault()
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(fault.delay + server.work_s)
                    if fault.status != 200:
                        return self._send(fault.status, {"error": {"message": fault.message or "scripted fault"}},
                                          fault.headers)
                    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    dim = fault.dim or server.dim
                    data = [{"object": "embedding", "index": i, "embedding": text_vector(t, dim).tolist()}
                            for i, t in enumerate(texts)]
                    if fault.drop_one:
                        data = data[:-1]
                    data.reverse()   # clients must order by "index", not by position
                    self._send(200, {"object": "list", "data": data, "model": body.get("model")})
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, code, obj, headers=None):
                out = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(out)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def inputs(self) -> list[str]:
        return [t for r in self.requests for t in r["body"]["input"]]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
