"""ChatClient against a real (scripted) OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import json
import time

import httpx
import pytest

from rag.llm import ChatClient, LLMConfig, LLMError, redact_url
from tests.llm_server import (  # noqa: F401  (llm_server is a fixture)
    Reply,
    free_port,
    json_reply,
    llm_server,
    raw_reply,
    sse_reply,
    status_reply,
)

KEY = "sk-test-secret"
MSGS = [{"role": "system", "content": "sys"}, {"role": "user", "content": "質問です"}]


class Sleeps(list):
    """A `sleep` for ChatClient that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_client():
    clients = []

    def make(base_url: str, sleep=None, **kw) -> ChatClient:
        cfg = dict(model="m", api_key=KEY, connect_timeout=1, read_timeout=1, max_retries=2, backoff=0.01,
                   max_retry_wait=5)
        cfg.update(kw)
        c = ChatClient(LLMConfig(base_url=base_url, **cfg), **({"sleep": sleep} if sleep is not None else {}))
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def consume(gen) -> tuple[list[str], LLMError | None]:
    """Deltas yielded before the stream ended, and the LLMError it ended with (if any)."""
    got = []
    try:
        for d in gen:
            got.append(d)
    except LLMError as exc:
        return got, exc
    return got, None


# ----------------------------------------------------------------------------- happy paths


def test_complete_returns_text_and_sends_the_openai_request(llm_server, make_client):
    llm_server.script(json_reply("p95は120msです。"))
    c = make_client(llm_server.base_url, temperature=0.2, max_tokens=321)
    assert c.complete(MSGS) == "p95は120msです。"

    assert len(llm_server.requests) == 1
    req = llm_server.requests[0]
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"].startswith("application/json")
    body = req.json
    assert body == {"model": "m", "messages": MSGS, "temperature": 0.2, "max_tokens": 321, "stream": False}
    assert KEY not in req.raw.decode() and KEY not in req.path


def test_max_tokens_argument_overrides_the_config(llm_server, make_client):
    llm_server.script(json_reply("ok"))
    make_client(llm_server.base_url, max_tokens=700).complete(MSGS, max_tokens=120)
    assert llm_server.requests[0].json["max_tokens"] == 120


def test_no_authorization_header_without_a_key(llm_server, make_client):
    llm_server.script(json_reply("ok"))
    make_client(llm_server.base_url, api_key="").complete(MSGS)
    assert "authorization" not in llm_server.requests[0].headers


def test_stream_yields_the_pieces_and_sends_stream_true(llm_server, make_client):
    pieces = ["注文履歴", "APIの", "p95は", "120msに", "下がりました[1]。"]
    llm_server.script(sse_reply(pieces))
    c = make_client(llm_server.base_url)
    assert list(c.stream(MSGS)) == pieces
    body = llm_server.requests[0].json
    assert body["stream"] is True
    assert body["model"] == "m" and body["messages"] == MSGS
    assert body["temperature"] == 0.1 and body["max_tokens"] == 700
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_stream_without_done_still_returns_the_full_text(llm_server, make_client):
    llm_server.script(sse_reply(["前半", "と", "後半"], done=False))
    assert "".join(make_client(llm_server.base_url).stream(MSGS)) == "前半と後半"


@pytest.mark.parametrize("done", [True, False])
def test_stream_ignores_role_empty_choices_and_usage_chunks(llm_server, make_client, done):
    llm_server.script(sse_reply(["a", "b", "c"], done=done, openai_extras=True))
    # only real text comes out: no "" from the role chunk, nothing from the usage-only chunk
    assert list(make_client(llm_server.base_url).stream(MSGS)) == ["a", "b", "c"]


def test_stream_accepts_a_plain_json_reply(llm_server, make_client):
    """Servers that ignore stream=true answer with one JSON body: the text still comes out."""
    llm_server.script(json_reply("全文の回答[1]。"))
    assert list(make_client(llm_server.base_url).stream(MSGS)) == ["全文の回答[1]。"]
    assert llm_server.requests[0].json["stream"] is True


def test_each_request_pops_the_next_reply_and_the_last_repeats(llm_server, make_client):
    llm_server.script(json_reply("one"), json_reply("two"))
    c = make_client(llm_server.base_url)
    assert [c.complete(MSGS) for _ in range(3)] == ["one", "two", "two"]


# ----------------------------------------------------------------------------- retries


def test_429_with_retry_after_is_honoured_then_succeeds(llm_server, make_client):
    sleeps = Sleeps()
    llm_server.script(status_reply(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "2"}),
                      json_reply("ok"))
    c = make_client(llm_server.base_url, sleep=sleeps)
    assert c.complete(MSGS) == "ok"
    assert sleeps == [2.0]
    assert len(llm_server.requests) == 2
    assert llm_server.requests[0].json == llm_server.requests[1].json


def test_429_retry_after_is_capped_by_max_retry_wait(llm_server, make_client):
    sleeps = Sleeps()
    llm_server.script(status_reply(429, "slow down", headers={"Retry-After": "100"}), sse_reply(["ok"]))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retry_wait=3)
    assert list(c.stream(MSGS)) == ["ok"]
    assert sleeps == [3.0]


def test_429_retry_after_as_http_date(llm_server, make_client):
    sleeps = Sleeps()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    llm_server.script(status_reply(429, "slow down", headers={"Retry-After": when}), json_reply("ok"))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retry_wait=60, retry_budget=60)
    assert c.complete(MSGS) == "ok"
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 30.5


def test_429_on_every_attempt_fails_after_max_retries(llm_server, make_client):
    sleeps = Sleeps()
    llm_server.script(status_reply(429, {"error": {"message": "quota"}}, headers={"Retry-After": "1"}))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retries=2)
    with pytest.raises(LLMError) as ei:
        c.complete(MSGS)
    assert ei.value.status == 429 and "429" in str(ei.value) and "quota" in str(ei.value)
    assert len(llm_server.requests) == 3 and sleeps == [1.0, 1.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_up_to_max_retries_then_fails(llm_server, make_client, status):
    sleeps = Sleeps()
    llm_server.script(status_reply(status, "<html>upstream error</html>"))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retries=2)
    with pytest.raises(LLMError) as ei:
        list(c.stream(MSGS))
    assert len(llm_server.requests) == 3
    assert ei.value.status == status and str(status) in str(ei.value)
    assert ei.value.partial == ""
    # exponential backoff with jitter (at most +25%), no Retry-After header
    assert len(sleeps) == 2
    assert 0.01 <= sleeps[0] <= 0.0125 and 0.02 <= sleeps[1] <= 0.025


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_then_success(llm_server, make_client, status):
    sleeps = Sleeps()
    llm_server.script(status_reply(status, {"error": {"message": "overloaded"}}), sse_reply(["回復", "しました"]))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retries=2)
    assert "".join(c.stream(MSGS)) == "回復しました"
    assert len(llm_server.requests) == 2 and len(sleeps) == 1


def test_max_retries_zero_means_one_attempt(llm_server, make_client):
    sleeps = Sleeps()
    llm_server.script(status_reply(503, "busy"))
    with pytest.raises(LLMError, match="503"):
        make_client(llm_server.base_url, sleep=sleeps, max_retries=0).complete(MSGS)
    assert len(llm_server.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_is_not_retried(llm_server, make_client, status):
    sleeps = Sleeps()
    llm_server.script(status_reply(status, {"error": {"message": "Invalid authentication", "type": "invalid_request_error"}}),
                      json_reply("must not be reached"))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retries=3)
    with pytest.raises(LLMError) as ei:
        c.complete(MSGS)
    assert len(llm_server.requests) == 1 and sleeps == []
    assert ei.value.status == status
    assert str(status) in str(ei.value) and "Invalid authentication" in str(ei.value)
    assert KEY not in str(ei.value)


def test_error_body_that_is_not_json_is_shown_shortened(llm_server, make_client):
    llm_server.script(status_reply(502, "Bad   gateway\n" + "x" * 1000))
    with pytest.raises(LLMError) as ei:
        make_client(llm_server.base_url, max_retries=0).complete(MSGS)
    msg = str(ei.value)
    assert "HTTP 502: Bad gateway" in msg and len(msg) < 400


# ----------------------------------------------------------------------------- transport failures


def test_connection_refused_fails_after_bounded_retries(make_client):
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}/v1"
    c = make_client(url, sleep=sleeps, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="cannot connect") as ei:
        c.complete(MSGS)
    assert time.monotonic() - t0 < 3
    assert len(sleeps) == 2            # 3 attempts, 2 waits
    assert ei.value.status is None
    assert f"http://127.0.0.1:{url.split(':')[2]}" in str(ei.value)
    with pytest.raises(LLMError, match="cannot connect"):
        list(c.stream(MSGS))


def test_slow_first_byte_beyond_read_timeout_fails_in_bounded_time(llm_server, make_client):
    llm_server.script(json_reply("too late", delay=4))
    read_timeout, retries = 1, 2
    c = make_client(llm_server.base_url, read_timeout=read_timeout, max_retries=retries, sleep=Sleeps())
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="timed out") as ei:
        list(c.stream(MSGS))
    elapsed = time.monotonic() - t0
    assert elapsed < read_timeout * (retries + 1) + 2
    assert elapsed >= read_timeout * 0.9
    assert 1 <= len(llm_server.requests) <= retries + 1
    assert ei.value.partial == ""


def test_slow_first_byte_within_read_timeout_is_fine(llm_server, make_client):
    llm_server.script(sse_reply(["遅い", "けど届く"], delay=0.3))
    assert "".join(make_client(llm_server.base_url, read_timeout=1).stream(MSGS)) == "遅いけど届く"


def test_stall_mid_stream_fails_with_the_partial_text(llm_server, make_client):
    llm_server.script(sse_reply(["途中", "まで", "届いて", "止まる"], stall_after=2, stall=4))
    c = make_client(llm_server.base_url, read_timeout=1)
    t0 = time.monotonic()
    got, exc = consume(c.stream(MSGS))
    assert exc is not None and "stalled" in str(exc)
    assert time.monotonic() - t0 < 3
    assert got == ["途中", "まで"]
    assert exc.partial == "途中まで"
    assert len(llm_server.requests) == 1      # text was already delivered: not retried


def test_cut_stream_fails_with_the_partial_text(llm_server, make_client):
    llm_server.script(sse_reply(["切れる", "前の", "文", "ここは届かない"], cut_after=3))
    got, exc = consume(make_client(llm_server.base_url).stream(MSGS))
    assert exc is not None and "broke off" in str(exc)
    assert "".join(got) == exc.partial == "切れる前の文"
    assert len(llm_server.requests) == 1


def test_cut_before_any_text(llm_server, make_client):
    llm_server.script(sse_reply(["never"], cut_after=0))
    got, exc = consume(make_client(llm_server.base_url).stream(MSGS))
    assert got == [] and exc is not None and exc.partial == ""


# ----------------------------------------------------------------------------- malformed replies


def test_malformed_json_body_in_complete(llm_server, make_client):
    llm_server.script(raw_reply('{"choices": [{"message": '))
    with pytest.raises(LLMError, match="invalid JSON"):
        make_client(llm_server.base_url).complete(MSGS)


def test_malformed_json_body_when_streaming(llm_server, make_client):
    llm_server.script(raw_reply("<html>not json</html>", content_type="text/html"))
    with pytest.raises(LLMError, match="invalid JSON"):
        list(make_client(llm_server.base_url).stream(MSGS))


def test_malformed_json_inside_an_sse_line(llm_server, make_client):
    llm_server.script(sse_reply(["正常な", "部分", "以降"], bad_json_after=2))
    got, exc = consume(make_client(llm_server.base_url).stream(MSGS))
    assert exc is not None and "invalid JSON" in str(exc)
    assert got == ["正常な", "部分"] and exc.partial == "正常な部分"


def test_json_without_choices(llm_server, make_client):
    llm_server.script(raw_reply('{"object": "chat.completion", "choices": []}'))
    with pytest.raises(LLMError, match="no choices"):
        make_client(llm_server.base_url).complete(MSGS)


def test_error_object_inside_the_stream(llm_server, make_client):
    body = 'data: {"choices":[{"delta":{"content":"前"}}]}\n\ndata: {"error": {"message": "model  overloaded"}}\n\n'
    llm_server.script(raw_reply(body, content_type="text/event-stream"))
    got, exc = consume(make_client(llm_server.base_url).stream(MSGS))
    assert got == ["前"] and exc is not None
    assert "model overloaded" in str(exc) and exc.partial == "前"


# ----------------------------------------------------------------------------- the key stays secret


@pytest.mark.parametrize("url, expected", [
    ("http://user:pa55@127.0.0.1:8080/v1?key=sk-test-secret", "http://127.0.0.1:8080/v1"),
    ("https://sk-test-secret@api.example.com/v1/chat/completions?api_key=sk-test-secret#x",
     "https://api.example.com/v1/chat/completions"),
    ("https://api.example.com/v1", "https://api.example.com/v1"),
])
def test_redact_url_drops_credentials_and_query(url, expected):
    assert redact_url(url) == expected
    assert KEY not in redact_url(url) and "pa55" not in redact_url(url)


def test_key_not_in_error_for_http_failure(llm_server, make_client):
    llm_server.script(status_reply(500, {"error": {"message": "internal"}}))
    base = f"http://user:pa55@127.0.0.1:{llm_server.port}/v1"
    c = make_client(base, max_retries=1, sleep=Sleeps())
    with pytest.raises(LLMError) as ei:
        c.complete(MSGS)
    msg = str(ei.value)
    assert "500" in msg and f"http://127.0.0.1:{llm_server.port}/v1/chat/completions" in msg
    assert KEY not in msg and "pa55" not in msg and "user" not in msg
    assert KEY not in repr(ei.value)


def test_key_not_in_error_for_connection_failure_with_key_in_url(make_client):
    port = free_port()
    c = make_client(f"http://user:pa55@127.0.0.1:{port}/v1?key={KEY}", max_retries=1, sleep=Sleeps())
    for call in (lambda: c.complete(MSGS), lambda: list(c.stream(MSGS))):
        with pytest.raises(LLMError) as ei:
            call()
        assert "cannot connect" in str(ei.value)
        assert KEY not in str(ei.value) and "pa55" not in str(ei.value)
        assert f"http://127.0.0.1:{port}/" in str(ei.value)


def test_key_not_in_stream_errors(llm_server, make_client):
    llm_server.script(sse_reply(["a", "b"], cut_after=1))
    _, exc = consume(make_client(llm_server.base_url).stream(MSGS))
    assert exc is not None and KEY not in str(exc) and KEY not in repr(exc)


# ----------------------------------------------------------------------------- known bugs (see report)


def test_error_response_whose_body_stalls_raises_llmerror(llm_server, make_client):
    llm_server.script(status_reply(503, "busy", body_stall=4))
    with pytest.raises(LLMError):
        make_client(llm_server.base_url, max_retries=0).complete(MSGS)


def test_base_url_with_query_posts_to_chat_completions(llm_server, make_client):
    llm_server.script(json_reply("ok"))
    c = make_client(f"{llm_server.base_url}?api-version=2024-06-01")
    assert c.complete(MSGS) == "ok"
    assert llm_server.requests[0].path == "/v1/chat/completions?api-version=2024-06-01"


def test_key_echoed_by_the_server_is_redacted(llm_server, make_client):
    llm_server.script(status_reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    with pytest.raises(LLMError) as ei:
        make_client(llm_server.base_url).complete(MSGS)
    assert "401" in str(ei.value)
    assert KEY not in str(ei.value)


def test_bearer_key_sent_even_with_userinfo_in_base_url(llm_server, make_client):
    llm_server.script(json_reply("ok"))
    make_client(f"http://user:pa55@127.0.0.1:{llm_server.port}/v1").complete(MSGS)
    assert llm_server.requests[0].headers.get("authorization") == f"Bearer {KEY}"


def test_sse_chunk_with_null_choice_is_skipped(llm_server, make_client):
    llm_server.script(raw_reply('data: {"choices": [null]}\n\ndata: {"choices": [{"delta": "x"}]}\n\n'
                                'data: {"choices": [{"delta": {"content": "ok"}}]}\n\n',
                                content_type="text/event-stream"))
    assert list(make_client(llm_server.base_url).stream(MSGS)) == ["ok"]


# ----------------------------------------------------------------------------- hardening (issue 13)

from tests.llm_server import drop_reply, echo_key_reply  # noqa: E402


def _leaked_prefix(text: str, secret: str) -> str | None:
    """The longest prefix (>= 4 chars) of secret found in text, if any."""
    for n in range(len(secret), 3, -1):
        if secret[:n] in text:
            return secret[:n]
    return None


def test_echoed_key_is_redacted_across_the_truncation_boundary(llm_server, make_client):
    """The server echoes the key it received, at every offset around the cut of upstream text to 200
    characters: not even a prefix of it may reach the message (redaction runs before the cut)."""
    c = make_client(llm_server.base_url, max_retries=0)
    for pad in range(150, 215):
        llm_server.script(echo_key_reply(401, "x" * pad + " {key} is not a valid API key"))
        with pytest.raises(LLMError) as ei:
            c.complete(MSGS)
        assert KEY in llm_server.last.headers["authorization"]  # the server really had it to echo
        msg = str(ei.value)
        assert "401" in msg and _leaked_prefix(msg, KEY) is None, (pad, msg)


def test_echoed_key_is_redacted_in_stream_error_objects(llm_server, make_client):
    c = make_client(llm_server.base_url)
    for pad in range(150, 215):
        body = "data: " + json.dumps({"error": {"message": "y" * pad + " {key} is not valid"}}) + "\n\n"
        llm_server.script(raw_reply(body, content_type="text/event-stream", echo_auth=True))
        _, exc = consume(c.stream(MSGS))
        assert exc is not None and _leaked_prefix(str(exc), KEY) is None, (pad, str(exc))


def test_userinfo_of_the_base_url_is_redacted(llm_server, make_client):
    llm_server.script(status_reply(403, {"error": {"message": "user deploy-bot with password pa55w0rd denied"}}))
    c = make_client(f"http://deploy-bot:pa55w0rd@127.0.0.1:{llm_server.port}/v1", max_retries=0)
    with pytest.raises(LLMError) as ei:
        c.complete(MSGS)
    assert "403" in str(ei.value) and "deploy-bot" not in str(ei.value) and "pa55w0rd" not in str(ei.value)


def test_config_repr_hides_the_key():
    cfg = LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key=KEY)
    assert KEY not in repr(cfg) and KEY not in str(cfg)


def test_request_that_was_sent_is_not_retried(llm_server, make_client):
    """The connection drops after the request was sent: the endpoint may be working on (and billing)
    it, so no second request goes out."""
    llm_server.script(drop_reply(), json_reply("second"))
    sleeps = Sleeps()
    c = make_client(llm_server.base_url, max_retries=2, sleep=sleeps)
    for call in (lambda: c.complete(MSGS), lambda: list(c.stream(MSGS))):
        llm_server.requests.clear()
        llm_server.script(drop_reply(), json_reply("second"))
        with pytest.raises(LLMError, match="not retried"):
            call()
        assert len(llm_server.requests) == 1 and sleeps == []


def test_total_retry_sleep_is_capped(llm_server, make_client):
    """Retry-After: 8 on every attempt: the call gives up instead of holding a worker for 3 x 8 s."""
    sleeps = Sleeps()
    llm_server.script(status_reply(429, "slow down", headers={"Retry-After": "8"}))
    c = make_client(llm_server.base_url, sleep=sleeps, max_retries=3, max_retry_wait=20)
    with pytest.raises(LLMError, match="429"):
        c.complete(MSGS)
    assert sum(sleeps) <= 10.0 and len(llm_server.requests) <= 2  # retry_budget's default


def test_slow_drip_stream_ends_at_the_deadline(llm_server, make_client):
    """One piece every 0.3 s never trips the 1 s read timeout; the wall-clock deadline ends it."""
    llm_server.script(sse_reply([f"p{i} " for i in range(40)], piece_delay=0.3))
    t0 = time.monotonic()
    got, exc = consume(make_client(llm_server.base_url, read_timeout=1, deadline=1.5).stream(MSGS))
    elapsed = time.monotonic() - t0
    assert exc is not None and "deadline" in str(exc) and elapsed < 4, (elapsed, exc)
    assert got and exc.partial == "".join(got) and len(got) < 40


def test_answer_larger_than_the_byte_cap_fails(llm_server, make_client):
    llm_server.script(sse_reply(["あ" * 500] * 100))
    got, exc = consume(make_client(llm_server.base_url, max_answer_bytes=20_000).stream(MSGS))
    assert exc is not None and "exceeded 20000 bytes" in str(exc)
    assert len("".join(got).encode()) <= 20_000


def test_unterminated_line_is_not_buffered_without_limit(llm_server, make_client):
    llm_server.script(raw_reply("data: " + "x" * 300_000, content_type="text/event-stream"))
    got, exc = consume(make_client(llm_server.base_url, max_answer_bytes=50_000).stream(MSGS))
    assert got == [] and exc is not None and "exceeded 50000 bytes" in str(exc)


def test_endless_error_body_is_read_only_in_part(llm_server, make_client):
    """A 500 whose body never ends: only the first bytes are read, the call fails at once."""
    import threading

    llm_server.script(Reply("raw", status=500, body=b'{"error": "busy"} ' * 64, content_type="text/plain",
                            endless=True))
    out: list = []

    def call():
        try:
            make_client(llm_server.base_url, max_retries=0, read_timeout=5, deadline=60).complete(MSGS)
        except LLMError as exc:
            out.append(exc)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the error body was read until it ended (never)"
    assert out and "500" in str(out[0]) and len(str(out[0])) < 400


@pytest.mark.parametrize("done", [False, True])
def test_stream_that_ends_without_any_text_is_an_error(llm_server, make_client, done):
    """llama.cpp's server answers 200 and ends the stream without data when the prompt exceeds its context:
    an LLMError, never an empty answer (what tests/test_llm_integration.py's helper now insists on)."""
    llm_server.script(sse_reply([], done=done))
    got, exc = consume(make_client(llm_server.base_url).stream(MSGS))
    assert got == [] and exc is not None and "ended without an answer" in str(exc)


def test_llm_config_defaults_come_from_settings():
    """The endpoint defaults have one home: every `LLMConfig.x` default is `Settings.llm_x`'s."""
    import dataclasses

    from rag.config import Settings
    from rag.llm import LLMConfig

    shared = [f for f in dataclasses.fields(LLMConfig) if hasattr(Settings, "llm_" + f.name)
              and f.default is not dataclasses.MISSING]
    assert len(shared) >= 8
    changed = Settings(llm_base_url="u", llm_model="m", llm_max_tokens=123, llm_deadline=7.0)
    assert LLMConfig.from_settings(changed).max_tokens == 123 and LLMConfig.from_settings(changed).deadline == 7.0
    for f in shared:
        assert f.default == getattr(Settings(), "llm_" + f.name), f.name
