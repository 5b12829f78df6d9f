"""rag.http, the one retry/error discipline of the chat and embeddings clients: its pure parts with
hand-computed examples, then both clients against real loopback servers waiting the same way."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from rag.http import (MESSAGE_CHARS, CallBudget, RetryPolicy, auth_headers, endpoint_url, error_detail, redact_url,
                      retry_after, shown, url_secrets)
from rag.llm import ChatClient, LLMConfig, LLMError
from rag.remote_embedding import EmbeddingServerError, OpenAIEmbedder
from tests.embed_server import EmbedServer, Fault
from tests.llm_server import json_reply, llm_server, status_reply  # noqa: F401  (llm_server is a fixture)

NOW = 1_700_000_000.0   # 2023-11-14 22:13:20 UTC
KEY = "sk-http-test-0123456789"


# ----------------------------------------------------------------------------- Retry-After

def test_retry_after_in_seconds():
    assert retry_after("3") == 3.0
    assert retry_after("0") == 0.0
    assert retry_after("-4") == 0.0        # never a negative wait


def test_retry_after_as_an_http_date():
    assert email.utils.formatdate(NOW + 5, usegmt=True) == "Tue, 14 Nov 2023 22:13:25 GMT"
    assert retry_after("Tue, 14 Nov 2023 22:13:25 GMT", now=NOW) == 5.0
    assert retry_after("Tue, 14 Nov 2023 22:13:25 -0000", now=NOW) == 5.0   # zone unknown: UTC
    assert retry_after("Tue, 14 Nov 2023 22:13:15 GMT", now=NOW) == 0.0     # already past


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "nan", "inf", "Tue, 99 Foo 2023"])
def test_retry_after_garbage_is_none(value):
    assert retry_after(value, now=NOW) is None


# ----------------------------------------------------------------------------- error bodies

@pytest.mark.parametrize("body, detail", [
    (b'{"error": {"message": "quota   exceeded", "type": "insufficient_quota"}}', "quota exceeded"),
    (b'{"error": "model \\"x\\" not found"}', 'model "x" not found'),          # Ollama, TEI
    (b'{"object": "error", "message": "context too long"}', "context too long"),  # vLLM
    (b'{"detail": "Not Found"}', "Not Found"),                                 # FastAPI
    (b'{"error": {"code": 7}}', '{"code": 7}'),                               # no message: the object
    (b"Bad   gateway\n<hr>nginx", "Bad gateway <hr>nginx"),                   # not JSON: the text
    (b"\xff\xfeoops", "\ufffd\ufffdoops"),                                      # not UTF-8 either
    (b"", ""),
])
def test_error_detail(body, detail):
    assert error_detail(body) == detail


def test_an_over_long_detail_is_cut_after_redaction():
    body = json.dumps({"error": {"message": "x" * 195 + f" {KEY} rejected"}}).encode()
    out = shown(error_detail(body), url_secrets("http://h/v1", KEY))
    assert out == "x" * 195 + " *** …" and len(out) == MESSAGE_CHARS + 1
    assert "sk-h" not in out                # the key straddled the cut: not even its prefix is shown
    assert shown("short", []) == "short"


# ----------------------------------------------------------------------------- URLs and secrets

def test_urls_and_secrets():
    base = "https://bot:pa%2455@api.example.com/v1/?api-version=2024&key=abcd1234"
    assert endpoint_url(base, "/chat/completions") == \
        "https://api.example.com/v1/chat/completions?api-version=2024&key=abcd1234"
    assert redact_url(endpoint_url(base, "/embeddings")) == "https://api.example.com/v1/embeddings"
    assert set(url_secrets(base, KEY)) == {KEY, "pa%2455", "pa$55", "2024", "abcd1234"}   # "bot": too short
    assert auth_headers(base, KEY) == {"Authorization": f"Bearer {KEY}"}
    assert auth_headers(base, "") == {"Authorization": "Basic Ym90OnBhJDU1"}   # base64("bot:pa$55")
    assert auth_headers("http://h/v1", "") == {}


# ----------------------------------------------------------------------------- the policy

def test_which_statuses_are_retried():
    assert [s for s in (400, 401, 403, 404, 408, 409, 422, 425, 429, 500, 501, 502, 503, 504, 505)
            if RetryPolicy.retries_status(s)] == [408, 409, 425, 429, 500, 502, 503, 504]


def test_backoff_doubles_with_at_most_a_quarter_jitter_and_is_capped():
    p = RetryPolicy(max_retries=5, backoff=0.5, max_wait=3.0)
    assert [p.delay(a, None, 0.0) for a in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert p.delay(1, None, 1.0) == 1.25
    assert p.delay(0, 2.0, 0.9) == 2.0        # Retry-After wins over backoff...
    assert p.delay(0, 100.0, 0.0) == 3.0      # ...up to max_wait


def test_call_budget_caps_the_sum_of_waits_and_the_deadline():
    clock = [0.0]
    b = CallBudget(RetryPolicy(budget=10.0), deadline=30.0, clock=lambda: clock[0])
    assert b.reserve(8.0) and not b.reserve(8.0) and b.reserve(2.0) and b.sleep_left == 0.0
    late = CallBudget(RetryPolicy(budget=10.0), deadline=1.0, clock=lambda: clock[0])
    assert not late.reserve(1.0) and late.reserve(0.5)   # a wait may not reach the deadline


# ----------------------------------------------------------------------------- both clients, real servers

class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def embed_server():
    s = EmbedServer(dim=4)
    yield s
    s.close()


def _embed_waits(server: EmbedServer, retry_after_value: str, **kw) -> list[float]:
    sleeps = Sleeps()
    e = OpenAIEmbedder("text-embedding-3-small", server.base_url, KEY, sleep=sleeps, **kw)
    try:
        server.script(Fault(429, headers={"Retry-After": retry_after_value}))
        assert e.embed_query("q").shape == (4,)
    finally:
        e.close()
    return sleeps


def _chat_waits(server, retry_after_value: str, **kw) -> list[float]:
    sleeps = Sleeps()
    server.script(status_reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": retry_after_value}),
                  json_reply("ok"))
    c = ChatClient(LLMConfig(base_url=server.base_url, model="m", api_key=KEY, **kw), sleep=sleeps)
    try:
        assert c.complete([{"role": "user", "content": "q"}]) == "ok"
    finally:
        c.close()
    return sleeps


def test_embedder_and_chat_client_honour_retry_after_alike(embed_server, llm_server):
    assert _embed_waits(embed_server, "2") == _chat_waits(llm_server, "2") == [2.0]
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    embed = _embed_waits(embed_server, when, max_backoff=60)
    chat = _chat_waits(llm_server, when, max_retry_wait=60, retry_budget=60)
    assert len(embed) == len(chat) == 1 and 27 <= embed[0] <= 30.5 and 27 <= chat[0] <= 30.5
    # the single-wait cap is shared too: Retry-After 100 waits 20 s (both defaults)
    assert _embed_waits(embed_server, "100") == _chat_waits(llm_server, "100", retry_budget=60) == [20.0]


def test_both_clients_stop_when_the_retry_budget_is_spent(embed_server, llm_server):
    """Retry-After 8 on every attempt with a 10 s budget: one wait, then the call fails."""
    sleeps = Sleeps()
    e = OpenAIEmbedder("m", embed_server.base_url, KEY, sleep=sleeps, retry_budget=10, max_retries=5)
    embed_server.script(*[Fault(429, message="busy", headers={"Retry-After": "8"})] * 6)
    with pytest.raises(EmbeddingServerError, match=r"failed after 2 attempts: HTTP 429: busy"):
        e.embed_query("q")
    e.close()
    assert sleeps == [8.0]

    chat_sleeps = Sleeps()
    llm_server.script(status_reply(429, {"error": {"message": "busy"}}, headers={"Retry-After": "8"}))
    c = ChatClient(LLMConfig(base_url=llm_server.base_url, model="m", max_retries=5, retry_budget=10),
                   sleep=chat_sleeps)
    with pytest.raises(LLMError, match=r"HTTP 429: busy"):
        c.complete([{"role": "user", "content": "q"}])
    c.close()
    assert chat_sleeps == [8.0]
