"""MCP tools served by `rag serve`, through the official `mcp` client on loopback (streamable HTTP and SSE)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import httpx
import pytest

from rag.generation import Assistant

PG_POST = "2021-06-30-postgres-index"
PG_TITLE = "PostgreSQLのインデックスを見直してp95レイテンシを4分の1にした"
QUESTION = "注文履歴APIのp95レイテンシはいくつに下がった？"
TOOLS = {"search_archive", "ask_archive", "get_post"}


async def _session(url: str, work, headers: dict | None = None, sse: bool = False):
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=120)) as http:
        transport = (sse_client(url + "/gradio_api/mcp/sse", headers=headers) if sse
                     else streamable_http_client(url + "/gradio_api/mcp/", http_client=http))
        async with transport as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                init = await session.initialize()
                return init, await work(session)


def run_mcp(url: str, work, **kw):
    return asyncio.run(_session(url, work, **kw))


def _text(result) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


@pytest.fixture
def archive_url(serve_archive, retriever, settings):
    return serve_archive(Assistant(settings, retriever))


def test_exactly_the_three_tools_with_typed_parameters(archive_url):
    async def work(session):
        return (await session.list_tools()).tools

    init, tools = run_mcp(archive_url, work)
    assert init.serverInfo.name.startswith("Archive assistant")
    assert {t.name for t in tools} == TOOLS  # not the page's chat, feedback or timeline handlers
    by_name = {t.name: t for t in tools}
    props = by_name["search_archive"].inputSchema["properties"]
    assert props["query"]["type"] == "string" and props["k"]["type"] == "integer" and props["k"]["default"] == 10
    assert {"type": "array", "items": {"type": "string"}} in props["tags"]["oneOf"]
    assert {"type": "array", "items": {"type": "string"}} in props["categories"]["oneOf"]
    assert props["since"]["type"] == props["until"]["type"] == "string" and "YYYY-MM-DD" in props["since"]["description"]
    assert by_name["search_archive"].inputSchema["required"] == ["query"]
    assert "Returns:" in by_name["ask_archive"].description and "[n]" in by_name["ask_archive"].description
    assert by_name["ask_archive"].inputSchema["required"] == ["question"]
    assert by_name["get_post"].inputSchema["required"] == ["post_id"]
    for t in tools:
        assert len(t.description) > 80, t.name
        assert all(p.get("description") for p in t.inputSchema["properties"].values()), t.name


def test_search_ask_and_read_a_post(archive_url):
    async def work(session):
        found = await session.call_tool("search_archive", {"query": "PostgreSQL インデックス", "k": 3})
        filtered = await session.call_tool("search_archive", {"query": "PostgreSQL", "tags": ["pgvector"],
                                                              "since": "2024-01-01", "until": "2024-12-31"})
        answer = await session.call_tool("ask_archive", {"question": QUESTION})
        post = await session.call_tool("get_post", {"post_id": PG_POST})
        return found, filtered, answer, post

    _, (found, filtered, answer, post) = run_mcp(archive_url, work)
    passages = json.loads(_text(found))["passages"]
    assert len(passages) == 3 and passages[0]["post_id"] == PG_POST and passages[0]["rank"] == 1
    assert set(passages[0]) >= {"post_id", "title", "date", "url", "chunk_id", "score", "text", "tags"}
    assert passages[0]["title"] == PG_TITLE and passages[0]["date"] == "2021-06-30"
    assert passages[0]["url"] == "/2021/06/postgres-index-tuning/"
    only = json.loads(_text(filtered))["passages"]
    assert only and all("pgvector" in p["tags"] and p["date"].startswith("2024") for p in only)

    # the answer cites the post that holds it, with [n] markers and the numbered source list
    text = _text(answer)
    body, sources = text.split("\n\nSources:\n")
    assert "320ms から 85ms" in body and "[1]" in body
    assert sources.startswith(f"[1] {PG_TITLE} (2021-06-30) /2021/06/postgres-index-tuning/\n")

    doc = json.loads(_text(post))
    assert doc["post_id"] == PG_POST and doc["title"] == PG_TITLE and doc["tags"][0] == "PostgreSQL"
    assert "## 結果\n注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました。" in doc["text"]
    assert doc["text"].count("## 部分インデックスを作る") == 1 and doc["truncated"] is False


def test_tool_errors_are_reported_to_the_client(archive_url):
    async def work(session):
        return [await session.call_tool(name, args) for name, args in (
            ("search_archive", {"query": "PostgreSQL", "since": "2020/01/01"}),
            ("search_archive", {"query": "PostgreSQL", "k": 500}),
            ("get_post", {"post_id": "no-such-post"}),
            ("ask_archive", {"question": "長" * 2001}),
        )]

    _, results = run_mcp(archive_url, work)
    assert all(r.isError for r in results)
    texts = [_text(r) for r in results]
    assert "since must be a date like 2021-06-30" in texts[0]
    assert "k must be between 1 and 50" in texts[1]
    assert "no post 'no-such-post'" in texts[2]
    assert "too long (2,001 characters; the limit is 2,000" in texts[3]


def test_sse_transport_serves_the_same_tools(archive_url):
    async def work(session):
        tools = (await session.list_tools()).tools
        return {t.name for t in tools}, await session.call_tool("get_post", {"post_id": PG_POST})

    _, (names, post) = run_mcp(archive_url, work, sse=True)
    assert names == TOOLS and json.loads(_text(post))["title"] == PG_TITLE


def test_mcp_needs_the_token_when_login_is_on(serve_archive, retriever, settings):
    url = serve_archive(Assistant(settings, retriever), auth=("editor", "s3cret"), api_token="tok-123")

    async def work(session):
        return {t.name for t in (await session.list_tools()).tools}

    for headers in (None, {"Authorization": "Bearer wrong"}):
        with pytest.raises(BaseException) as info:
            run_mcp(url, work, headers=headers)
        assert "401" in repr(info.value) or "Unauthorized" in repr(info.value)
    req = urllib.request.Request(url + "/gradio_api/mcp/schema")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401
    assert run_mcp(url, work, headers={"Authorization": "Bearer tok-123"})[1] == TOOLS

    async def ask(session):  # tools run in-process: the page's login does not stand in their way
        return await session.call_tool("ask_archive", {"question": QUESTION})

    answer = run_mcp(url, ask, headers={"Authorization": "Bearer editor:s3cret"})[1]
    assert not answer.isError and f"[1] {PG_TITLE} (2021-06-30)" in _text(answer)


def test_mcp_can_be_turned_off(serve_archive, retriever, settings):
    from gradio_client import Client

    url = serve_archive(Assistant(settings, retriever), mcp=False)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/gradio_api/mcp/schema", timeout=10)
    assert err.value.code == 404
    client = Client(url + "/", verbose=False)
    assert f"[1] {PG_TITLE}" in client.predict(QUESTION, api_name="/ask")  # the page's API is still there
    assert client.predict("  ", api_name="/ask") == "Error: the question is empty."


def test_serve_flags_turn_mcp_and_the_chat_api_off(monkeypatch, tmp_path):
    import rag.app
    import rag.cli

    calls = []
    from types import SimpleNamespace

    monkeypatch.setattr(rag.cli, "open_live", lambda s: SimpleNamespace(retriever=SimpleNamespace(embedder=None)))
    monkeypatch.setattr(rag.cli, "describe_embedder", lambda e: "")
    monkeypatch.setattr(rag.app, "serve", lambda assistant, s, **kw: calls.append(s))
    assert rag.cli.main(["serve", "--index", str(tmp_path)]) == 0
    assert calls[-1].mcp is True and calls[-1].openai_api is True
    assert rag.cli.main(["serve", "--index", str(tmp_path), "--no-mcp"]) == 0
    assert calls[-1].mcp is False and calls[-1].openai_api is True
    monkeypatch.setenv("RAG_OPENAI_API", "false")
    assert rag.cli.main(["serve", "--index", str(tmp_path)]) == 0
    assert calls[-1].mcp is True and calls[-1].openai_api is False
