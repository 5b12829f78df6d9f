"""The OpenAI-compatible chat API: request parsing and the token check (pure), then the official `openai`
client against `rag serve` on loopback."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import urllib.error
import urllib.request

import pytest

from rag.config import Settings
from rag.generation import Assistant
from rag.llm import LLMError
from rag.openai_api import MAX_BODY_BYTES, APIError, parse_chat, read_json, strip_source_list, token_check

PG_POST = "2021-06-30-postgres-index"
PG_TITLE = "PostgreSQLのインデックスを見直してp95レイテンシを4分の1にした"
QUESTION = "注文履歴APIのp95レイテンシはいくつに下がった？"
S = Settings()


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


# ------------------------------------------------------------------ parsing

def test_last_user_message_is_the_question_earlier_pairs_the_history():
    body = {"model": "rag-archive", "stream": True, "messages": msgs(
        ("system", "You are helpful."), ("user", "Q1"), ("assistant", "A1[1]。\n\nSources:\n[1] t (2021-06-30) u"),
        ("user", "Q2"), ("assistant", "A2"), ("user", [{"type": "text", "text": " Q3 "}]))}
    assert parse_chat(body, S) == ("Q3", [("Q1", "A1[1]。"), ("Q2", "A2")], True)
    many = msgs(*[p for i in range(30) for p in (("user", f"q{i}"), ("assistant", f"a{i}"))], ("user", "last"))
    question, history, stream = parse_chat({"messages": many}, S.replace(max_history_turns=4))
    assert question == "last" and history == [(f"q{i}", f"a{i}") for i in range(26, 30)] and stream is False
    assert strip_source_list("答え[1]。\n\nNearest passages:\n[1] x") == "答え[1]。"


@pytest.mark.parametrize("body, status, code", [
    ({"messages": msgs(("user", "x" * 2001))}, 400, "question_too_long"),
    ({"messages": msgs(("user", "   "))}, 400, "empty_question"),
    ({"messages": msgs(("user", "q"), ("assistant", "a"))}, 400, None),
    ({"messages": []}, 400, None),
    ({"messages": "q"}, 400, None),
    ({"model": "gpt-4o", "messages": msgs(("user", "q"))}, 404, "model_not_found"),
    ([1, 2], 400, None),
])
def test_bad_requests_are_refused_with_a_reason(body, status, code):
    with pytest.raises(APIError) as info:
        parse_chat(body, S)
    err = info.value
    assert err.status == status and err.code == code and err.message
    assert set(err.body()["error"]) >= {"message", "type", "param", "code"}


def test_token_check():
    assert token_check("", None) is None
    ok = token_check("tok", ("editor", "pa:ss"))
    basic = "Basic " + base64.b64encode(b"editor:pa:ss").decode()
    assert ok("Bearer tok") and ok("bearer  tok ") and ok("Bearer editor:pa:ss") and ok(basic)
    assert not ok(None) and not ok("") and not ok("Bearer") and not ok("Bearer tok2") and not ok("tok")
    assert not ok("Basic " + base64.b64encode(b"editor:wrong").decode()) and not ok("Basic ???")
    only_token = token_check("tok", None)
    assert only_token("Bearer tok") and not only_token(basic)


# ------------------------------------------------------------------ over HTTP, with the openai client

class ScriptedClient:
    """A chat endpoint streaming a fixed answer in pieces, with space around it that the reply drops."""

    pieces = ["  注文履歴 API の p95 ", "レイテンシは 320ms から 85ms に", "下がりました[1]。 \n"]

    def stream(self, messages, max_tokens=None):
        yield from self.pieces

    def complete(self, messages, max_tokens=None):
        return ""


class FailingClient:
    def stream(self, messages, max_tokens=None):
        yield "途中まで"
        raise LLMError("chat endpoint http://llm.local/v1/chat/completions failed: connection refused")

    def complete(self, messages, max_tokens=None):
        raise LLMError("down")


class SpyAssistant(Assistant):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []

    def stream(self, question, history=(), *a, **kw):
        self.calls.append((question, list(history)))
        yield from super().stream(question, history, *a, **kw)


def client(url: str, key: str = "unused"):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def test_models_and_a_cited_answer(serve_archive, retriever, settings):
    url = serve_archive(Assistant(settings, retriever))
    c = client(url)
    assert [m.id for m in c.models.list().data] == ["rag-archive"]
    resp = c.chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)))
    assert resp.object == "chat.completion" and resp.model == "rag-archive"
    choice = resp.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    body, listed = choice.message.content.split("\n\nSources:\n")
    assert "320ms から 85ms" in body and "[1]" in body
    assert listed.startswith(f"[1] {PG_TITLE} (2021-06-30) /2021/06/postgres-index-tuning/\n")
    sources = resp.model_extra["sources"]
    assert sources[0]["n"] == 1 and sources[0]["post_id"] == PG_POST and sources[0]["cited"] is True
    assert sources[0]["url"] == "/2021/06/postgres-index-tuning/" and not sources[-1]["cited"]
    assert resp.model_extra["answer_mode"] == "extractive"

    # the same answer as the page's /ask API
    from gradio_client import Client

    assert Client(url + "/", verbose=False).predict(QUESTION, api_name="/ask") == choice.message.content


def test_streaming_matches_the_plain_reply(serve_archive, retriever, settings):
    url = serve_archive(Assistant(settings, retriever, client=ScriptedClient()))
    c = client(url)
    plain = c.chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)))
    chunks = list(c.chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)), stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text == plain.choices[0].message.content
    assert text.startswith("注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました[1]。\n\nSources:\n[1] ")
    assert len(chunks) >= 5 and chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks][-1] == "stop"
    assert chunks[-1].model_extra["sources"] == plain.model_extra["sources"]
    assert chunks[-1].model_extra["sources"][0]["post_id"] == PG_POST


def test_follow_up_uses_the_history(serve_archive, retriever, settings):
    spy = SpyAssistant(settings, retriever)
    c = client(serve_archive(spy))
    first = c.chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)))
    answer = first.choices[0].message.content
    follow = "下がる前はいくつだった？"
    alone = c.chat.completions.create(model="rag-archive", messages=msgs(("user", follow)))
    assert alone.model_extra["answer_mode"] == "refused"  # on its own the follow-up names nothing
    resp = c.chat.completions.create(model="rag-archive", stream=False, messages=msgs(
        ("system", "Be brief."), ("user", QUESTION), ("assistant", answer), ("user", follow)))
    assert spy.calls[-1] == (follow, [(QUESTION, answer.split("\n\nSources:\n")[0])])
    assert resp.model_extra["answer_mode"] == "extractive" and "320ms" in resp.choices[0].message.content
    assert resp.model_extra["sources"][0]["post_id"] == PG_POST


def test_errors_come_back_in_openai_shape(serve_archive, retriever, settings):
    import openai

    url = serve_archive(Assistant(settings, retriever), max_question_chars=100)
    c = client(url)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="rag-archive", messages=msgs(("user", "長" * 101)))
    assert info.value.code == "question_too_long" and "the limit is 100" in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        c.chat.completions.create(model="gpt-4o", messages=msgs(("user", QUESTION)))
    assert info.value.code == "model_not_found"
    for path, data, status in (("/v1/chat/completions", b"{not json", 400), ("/v1/embeddings", b"{}", 404)):
        req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == status and json.loads(err.value.read())["error"]["message"]
    # a declared oversized body is refused before it is read
    conn = http.client.HTTPConnection(url.split("//")[1], timeout=30)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_a_body_without_length_is_read_only_up_to_the_limit():
    from starlette.requests import Request

    sent = []

    async def receive():
        sent.append(1)
        return {"type": "http.request", "body": b"x" * 400_000, "more_body": len(sent) < 10}

    request = Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}, receive)
    with pytest.raises(APIError) as info:
        asyncio.run(read_json(request))
    assert info.value.status == 413 and len(sent) == 3  # stopped after 1.2 MB of 4 MB


def test_chat_model_failure_is_an_upstream_error(serve_archive, retriever, settings):
    import openai

    c = client(serve_archive(Assistant(settings, retriever, client=FailingClient())))
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)))
    assert info.value.status_code == 502 and info.value.code == "chat_model_failed"
    assert "The chat model failed" in info.value.message and "llm.local" not in info.value.message
    assert info.value.body["sources"][0]["post_id"] == PG_POST
    with pytest.raises(openai.APIError) as info:
        list(c.chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)), stream=True))
    assert "The chat model failed" in info.value.message


def test_token_required_when_login_is_on(serve_archive, retriever, settings):
    import openai

    url = serve_archive(Assistant(settings, retriever), auth=("editor", "s3cret"))
    for key in ("unused", "editor:wrong"):
        with pytest.raises(openai.AuthenticationError) as info:
            client(url, key).chat.completions.create(model="rag-archive", messages=msgs(("user", QUESTION)))
        assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(url).models.list()
    resp = client(url, "editor:s3cret").chat.completions.create(model="rag-archive",
                                                                messages=msgs(("user", QUESTION)))
    assert resp.model_extra["sources"][0]["post_id"] == PG_POST


def test_chat_api_can_be_turned_off(serve_archive, retriever, settings):
    url = serve_archive(Assistant(settings, retriever), openai_api=False)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/v1/models", timeout=10)
    assert err.value.code == 404
