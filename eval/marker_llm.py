"""A scripted OpenAI-compatible chat endpoint that follows the no-answer marker rule, for `rag eval`.

Usage: python eval/marker_llm.py QUESTIONS.jsonl [--port 8931]
then:  RAG_LLM_BASE_URL=http://127.0.0.1:8931/v1 RAG_LLM_MODEL=marker rag eval QUESTIONS.jsonl ...

It stands in for an ideal model, so that the chat-endpoint mode can be measured without one
(no model usable for Japanese can be installed here): it finds the question in the set, and
answers with the first gold answer citing the first source whose text holds it, or replies
with the marker when no source does (always for unanswerable questions). What it measures is
the product around the model: the pre-model gate, the context given to the model, the marker
turning into a refusal, citations. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.evaluation import contains_answer, load_questions  # noqa: E402
from rag.refusal import MARKER  # noqa: E402

_SOURCE = re.compile(r'<source n="(\d+)"[^>]*>\n(.*?)\n</source>', re.S)
_QUESTION = re.compile(r"<question>\n(.*?)\n</question>", re.S)


def unescape(s: str) -> str:
    return s.replace("＜", "<").replace("＞", ">")


def reply_for(user: str, answers_of: dict[str, list[str]]) -> str:
    m = _QUESTION.search(user)
    question = unescape(m.group(1)).strip() if m else ""
    answers = answers_of.get(question, [])
    for n, text in _SOURCE.findall(user):
        if answers and contains_answer(unescape(text), answers):
            return f"{answers[0]}です[{n}]。"
    return MARKER


def make_handler(answers_of: dict[str, list[str]]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            user = next((m["content"] for m in reversed(body.get("messages", [])) if m["role"] == "user"), "")
            text = reply_for(user, answers_of)
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for piece in (text[:8], text[8:]):
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions")
    ap.add_argument("--port", type=int, default=8931)
    args = ap.parse_args()
    answers_of = {q["question"].strip(): q["answers"] for q in load_questions(args.questions)}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(answers_of))
    print(f"marker endpoint on http://127.0.0.1:{args.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
