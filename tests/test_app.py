"""The web UI: pure formatting functions, the handlers (called directly) and the `/ask` API over HTTP."""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag.answer_text import api_answer_text, format_answer_markdown, md_escape
from rag.app import (bigrams, build_app, exposure_warning, format_sources_html, highlight_passage, is_loopback,
                     parse_auth, prune_exports, serve, split_segments, timeline_csv, timeline_groups,
                     timeline_markdown, write_exports)
from rag.config import Settings
from rag.feedback import FeedbackStore
from rag.generation import Answer, Assistant
from rag.llm import LLMError
from rag.mcp_tools import make_filters
from rag.retrieval import Filters, Hit

XSS = "<script>alert(1)</script>"
PG_TITLE = "PostgreSQLのインデックスを見直してp95レイテンシを4分の1にした"
QUESTION = "注文履歴APIのp95レイテンシはいくつに下がった？"


def src(n: int, title: str = "記事", text: str = "本文です。", url: str | None = "https://blog.example/p",
        date: str | None = "2021-06-30", tags=("PostgreSQL",), post_id: str | None = None) -> dict:
    return {"n": n, "post_id": post_id or f"post-{n}", "title": title, "date": date, "url": url,
            "chunk_id": f"{post_id or f'post-{n}'}#0", "text": text, "score": 1.0 / n, "tags": list(tags)}


def answer(text: str, sources: list[dict], n_cited: int, mode: str = "llm", claims=(), error=None,
           invalid=()) -> Answer:
    return Answer(question="q", standalone_question="q", answer=text, mode=mode, sources=sources,
                  citations=[{"n": s["n"], "post_id": s["post_id"], "chunk_id": s["chunk_id"], "supported": True}
                             for s in sources[:n_cited]],
                  claims=list(claims), error=error, invalid_citations=list(invalid))


def hit(post_id: str, ord_: int, date: str | None, title: str | None = None, text: str = "本文。",
        score: float = 0.5, tags=("t",)) -> Hit:
    return Hit(id=hash((post_id, ord_)) % 10_000, chunk_id=f"{post_id}#{ord_}", post_id=post_id,
               title=title or f"title of {post_id}", date=date, url=f"https://blog.example/{post_id}", text=text,
               score=score, tags=list(tags))


# ------------------------------------------------------------------ escaping

def test_md_escape_neutralizes_html_and_markup():
    out = md_escape(XSS + " [link](javascript:alert(1)) **bold** `code` $$x$$\n# heading\n- item\n    indented")
    assert "<script" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "\\[link\\]" in out and "\\*\\*bold\\*\\*" in out and "\\`code\\`" in out and "\\$\\$x\\$\\$" in out
    assert "\n\\# heading" in out and "\n\\- item" in out
    assert "\n&nbsp;&nbsp;&nbsp;&nbsp;indented" in out  # not an (unescaped) code block


def test_sources_panel_renders_post_markup_as_text():
    s = src(1, title=XSS, text=f"前置き。{XSS}を含む本文です。<img src=x onerror=alert(2)>",
            url="javascript:alert(3)", tags=(XSS,))
    html_ = format_sources_html(answer(f"答えです[1]。", [s], 1))
    assert "<script" not in html_ and "<img" not in html_
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_
    assert "&lt;img src=x onerror=alert(2)&gt;" in html_
    assert 'href="javascript' not in html_ and "<a " not in html_


def test_answer_markdown_escapes_question_and_answer_text():
    md = format_answer_markdown(answer(f"答えは {XSS} です[1]。", [src(1)], 1))
    assert "<script" not in md and "&lt;script&gt;" in md
    assert "\\[1\\]" in md  # renders as [1]


def test_links_only_for_absolute_http_urls():
    html_ = format_sources_html(answer("a[1][2]", [src(1, url="https://blog.example/a?x=1&y=2"),
                                                  src(2, url="/2021/06/relative/")], 2))
    assert '<a href="https://blog.example/a?x=1&amp;y=2" target="_blank" rel="noopener noreferrer">' in html_
    assert "<code class=\"rag-path\">/2021/06/relative/</code>" in html_


# ------------------------------------------------------------------ highlighting

def test_bigrams_ignore_citations_space_and_punctuation():
    assert bigrams("p95 は[1]、85ms。") == bigrams("p95は85ms")
    assert split_segments("一文目。二文目！\n三行目") == ["一文目。", "二文目！", "\n", "三行目"]
    assert "".join(split_segments("A first. A second.\nline")) == "A first. A second.\nline"


def test_highlight_marks_the_supporting_sentence_only():
    passage = "## 結果\n注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました。ディスク使用量も約14GB減っています。"
    out = highlight_passage(passage, ["注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました[1]。"])
    assert "<mark>注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました。</mark>" in out
    assert out.count("<mark>") == 1 and "ディスク使用量も約14GB減っています。" in out
    assert highlight_passage(passage, ["まったく別の話題についての文章"]) == passage
    assert "<mark>" not in highlight_passage(passage, [])


def test_highlight_escapes_inside_and_outside_marks():
    out = highlight_passage(f"{XSS}の対策を入れた。CSPを有効にした。", ["CSPを有効にした"])
    assert "<script" not in out and "&lt;script&gt;" in out and "<mark>CSPを有効にした。</mark>" in out


def test_sources_panel_highlights_claims_citing_each_source():
    s1 = src(1, text="無関係な前置き。p95 は 85ms に下がった。")
    s2 = src(2, text="部分インデックスのサイズは 310MB だった。別の文。")
    claims = [{"text": "p95 は 85ms に下がった。", "citations": [1], "supported": True, "score": 1.0},
              {"text": "インデックスは 310MB だった。", "citations": [2], "supported": True, "score": 0.9}]
    html_ = format_sources_html(answer("p95 は 85ms に下がった[1]。インデックスは 310MB だった[2]。", [s1, s2], 2,
                                       claims=claims))
    assert "<mark>p95 は 85ms に下がった。</mark>" in html_
    assert "<mark>部分インデックスのサイズは 310MB だった。</mark>" in html_
    assert "<mark>無関係な前置き。</mark>" not in html_


# ------------------------------------------------------------------ numbering, warnings, refusals, errors

def test_numbers_of_the_panel_match_the_answer_markers():
    sources = [src(1, "A"), src(2, "B"), src(3, "C")]
    a = answer("一つ目[1]。二つ目[2]。", sources, 2)
    html_ = format_sources_html(a)
    assert re.findall(r'data-n="(\d+)"', html_) == ["1", "2", "3"]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", a.answer)}
    for n in cited:
        block = html_.split(f'data-n="{n}"')[1].split("rag-passage")[0]
        assert "not cited" not in block
    assert "not cited" in html_.split('data-n="3"')[1]
    assert html_.index("[1]") < html_.index("[2]") < html_.index("[3]")


def test_unsupported_claims_are_listed_under_the_answer():
    claims = [{"text": "p95 は 85ms に下がった。", "citations": [1], "supported": True, "score": 1.0},
              {"text": "サーバーは火星にある。", "citations": [1], "supported": False, "score": 0.1},
              {"text": "予算は 3 倍になった。", "citations": [], "supported": False, "score": 0.0}]
    md = format_answer_markdown(answer("...", [src(1)], 1, claims=claims, invalid=[9]))
    assert "⚠ **Not supported by the cited sources**" in md
    assert "サーバーは火星にある。 — *not found in \\[1\\]*" in md
    assert "予算は 3 倍になった。 — *no citation*" in md
    assert "p95 は 85ms" not in md.split("Not supported")[1]
    assert "\\[9\\]" in md
    assert "Not supported by the cited sources:\n- サーバーは火星にある。" in api_answer_text(
        answer("...", [src(1)], 1, claims=claims))


def test_refusal_says_so_and_shows_nearest_passages():
    a = answer("アーカイブの記事には、この質問に答えられる内容が見つかりませんでした。", [src(1, "近い記事"), src(2)], 0,
               mode="refused")
    md = format_answer_markdown(a)
    assert "No answer found in the archive" in md and "見つかりませんでした" in md
    html_ = format_sources_html(a)
    assert "Nearest passages" in html_ and html_.count("not cited") == 2 and "近い記事" in html_
    text = api_answer_text(a)
    assert "Nearest passages:\n[1] 近い記事 (2021-06-30) https://blog.example/p (not cited)" in text


def test_error_shows_a_short_generic_message_and_the_sources():
    """Readers never see the internal endpoint host or the upstream error text (issue 13, item 7):
    that detail is in the server log."""
    long_error = ("chat endpoint http://llm.internal:8000/v1/chat/completions failed: HTTP 502: "
                  "upstream db password=hunter2 " + "x" * 500)
    a = answer("途中まで[1]", [src(1, "取得した記事")], 1, mode="error", error=long_error)
    md = format_answer_markdown(a)
    api = api_answer_text(a)
    assert "could not be completed" in md and "Traceback" not in md
    assert len(md) < 600 and "Partial answer" in md
    html_ = format_sources_html(a)
    assert "Retrieved passages" in html_ and "取得した記事" in html_
    assert api.startswith("Error: the chat model failed")
    for out in (md, html_, api):
        assert "llm.internal" not in out and "HTTP 502" not in out and "hunter2" not in out


def test_api_text_lists_numbered_sources():
    a = answer("答え[1]。", [src(1, "記事A", date="2024-07-30T14:00:00+09:00"), src(2, "記事B", url=None, date=None)], 1)
    assert api_answer_text(a) == ("答え[1]。\n\nSources:\n[1] 記事A (2024-07-30) https://blog.example/p\n"
                                  "[2] 記事B (no date) (not cited)")


def test_empty_sources_panel():
    assert "No passages were found" in format_sources_html(answer("", [], 0, mode="refused"))


# ------------------------------------------------------------------ editors' timeline

def _timeline_hits() -> list[Hit]:
    return [hit("b", 3, "2022-01-20", score=0.9), hit("a", 2, "2019-05-14"), hit("undated", 0, None),
            hit("b", 1, "2022-01-20", text=f"{XSS}を書いた。"), hit("c", 0, "2020-03-18T10:00:00+09:00"),
            hit("a", 0, "2019-05-14")]


def test_timeline_groups_by_post_oldest_first():
    groups = timeline_groups(_timeline_hits())
    assert [g["post_id"] for g in groups] == ["a", "c", "b", "undated"]
    assert [h.chunk_id for h in groups[0]["hits"]] == ["a#0", "a#2"]
    assert [h.chunk_id for h in groups[2]["hits"]] == ["b#1", "b#3"]


def test_timeline_markdown_is_grouped_and_escaped():
    md = timeline_markdown("型ヒント <b>", _timeline_hits())
    heads = re.findall(r"^## (.+)$", md, re.M)
    assert heads == ["2019-05-14 — title of a", "2020-03-18 — title of c", "2022-01-20 — title of b",
                     "no date — title of undated"]
    assert "<script" not in md and "&lt;script&gt;" in md and "&lt;b&gt;" in md
    assert "6 passages from 4 posts" in md
    assert "No passages found." in timeline_markdown("x", [])


def test_timeline_csv_columns_and_order(tmp_path: Path):
    hits = _timeline_hits() + [hit("d", 0, "2023-01-01", text="=HYPERLINK(\"http://evil\")")]
    rows = list(csv.reader(io.StringIO(timeline_csv(hits))))
    assert rows[0] == ["date", "post_id", "title", "url", "tags", "chunk_id", "score", "text"]
    assert [r[5] for r in rows[1:]] == ["a#0", "a#2", "c#0", "b#1", "b#3", "d#0", "undated#0"]
    assert rows[3][0] == "2020-03-18" and rows[-1][0] == ""
    assert rows[4][7] == f"{XSS}を書いた。"  # CSV is data, not HTML
    assert rows[6][7].startswith("'=")   # no formula injection in spreadsheets
    md_path, csv_path = write_exports("topic", hits, tmp_path / "out" / "a")
    assert Path(md_path).read_text(encoding="utf-8").startswith("# What the archive says about: topic")
    assert Path(csv_path).read_text(encoding="utf-8-sig").startswith("date,post_id,title")
    old = tmp_path / "out" / "old"
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    prune_exports(tmp_path / "out")
    assert not old.exists() and Path(md_path).exists()


# ------------------------------------------------------------------ small helpers

def test_filters_auth_and_hosts():
    assert make_filters(["PostgreSQL", ""], [], " 2020-01-01 ", "") == Filters(("PostgreSQL",), (), "2020-01-01", None)
    with pytest.raises(ValueError, match="since"):
        make_filters(since="2020/01/01")
    assert parse_auth("") is None and parse_auth("editor:pa:ss") == ("editor", "pa:ss")
    with pytest.raises(ValueError):
        parse_auth("nopassword")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("0.0.0.0", ("u", "p")) is None
    assert "WARNING" in exposure_warning("0.0.0.0", None) and "RAG_AUTH" in exposure_warning("0.0.0.0", None)


def test_cmd_serve_reads_auth_from_settings(monkeypatch, tmp_path, capsys):
    import rag.app
    import rag.cli

    calls = []
    live = SimpleNamespace(retriever=SimpleNamespace(embedder=None))
    monkeypatch.setattr(rag.cli, "open_live", lambda s: live)
    monkeypatch.setattr(rag.cli, "describe_embedder", lambda e: "engine: test")
    monkeypatch.setattr(rag.app, "serve", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setenv("RAG_AUTH", "editor:s3cret")
    assert rag.cli.main(["serve", "--index", str(tmp_path), "--port", "7999"]) == 0
    (assistant, s), kw = calls[0]
    assert assistant is live and s.index_dir == str(tmp_path) and "s3cret" not in repr(s)
    assert kw == {"host": "127.0.0.1", "port": 7999, "auth": ("editor", "s3cret")}
    monkeypatch.setenv("RAG_AUTH", "no-colon")
    assert rag.cli.main(["serve", "--index", str(tmp_path)]) == 2
    assert "RAG_AUTH must look like user:password" in capsys.readouterr().err


# ------------------------------------------------------------------ handlers, called directly

def _fn(demo, name: str):
    return next(f.fn for f in demo.fns.values() if f.name == name)


def _last(gen):
    out = None
    for out in gen:
        pass
    return out


class SpyAssistant(Assistant):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.histories = []

    def stream(self, question, history=(), *a, **kw):
        self.histories.append(list(history))
        yield from super().stream(question, history, *a, **kw)


@pytest.fixture
def app_parts(retriever, settings, tmp_path):
    assistant = SpyAssistant(settings, retriever)
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    demo = build_app(assistant, settings.replace(index_dir=str(tmp_path)), feedback=store)
    return assistant, store, demo


def test_chat_handler_streams_answer_sources_and_feedback(app_parts):
    assistant, store, demo = app_parts
    respond, on_like = _fn(demo, "respond"), _fn(demo, "on_like")
    steps = list(respond(QUESTION, [], [], [], [], "", ""))
    assert len(steps) >= 2 and steps[0][0][-1]["content"] == "…"
    messages, sources_html, turns, _ = steps[-1]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "\\[1\\]" in messages[-1]["content"] and PG_TITLE in sources_html and "<mark>" in sources_html
    assert turns[0]["mode"] == "extractive" and turns[0]["result"]["sources"]

    # follow-up: the history goes to the assistant as (question, answer) pairs
    messages, _, turns, _ = _last(respond("それはいつの記事？", messages, turns, [], [], "", ""))
    assert assistant.histories[-1] == [(QUESTION, turns[0]["answer"])] and len(messages) == 4

    ids, note = on_like(turns, {}, SimpleNamespace(index=1, liked=True, value=None))
    assert "recorded" in note and len(store.list()) == 1
    row = store.list()[0]
    assert row["rating"] == "up" and row["question"] == QUESTION
    assert row["cited_posts"] == ["2021-06-30-postgres-index"]
    ids, _ = on_like(turns, ids, SimpleNamespace(index=1, liked=False, value=None))
    assert [r["rating"] for r in store.list()] == ["down"]
    ids, _ = on_like(turns, ids, SimpleNamespace(index=1, liked="", value=None))
    assert store.list() == [] and ids == {}


def test_chat_handler_survives_failures(app_parts, monkeypatch):
    assistant, _, demo = app_parts
    respond = _fn(demo, "respond")
    messages, _, turns, _ = _last(respond("質問", [], [], [], [], "2020-13-01", ""))
    assert "since must be a date" in messages[-1]["content"]

    def boom(*a, **kw):
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(assistant, "stream", boom)
    messages, html_, turns, _ = _last(respond(QUESTION, messages, turns, [], [], "", ""))
    assert "Sorry, something went wrong" in messages[-1]["content"] and "RuntimeError" in messages[-1]["content"]
    assert "secret" not in messages[-1]["content"] and "Traceback" not in messages[-1]["content"]
    assert len(turns) == 2 and turns[1]["result"] is None
    assert _last(respond("  ", messages, turns, [], [], "", ""))[0] == messages  # empty input: nothing asked


def test_editor_timeline_handler(app_parts):
    _, _, demo = app_parts
    md, md_path, csv_path = _fn(demo, "timeline")("PostgreSQL インデックス", 20, "hybrid", [], [], "", "")
    assert f"— {PG_TITLE}" in md and Path(md_path).name == "timeline.md" and Path(csv_path).exists()
    md, md_path, _ = _fn(demo, "timeline")("PostgreSQL", 20, "hybrid", ["pgvector"], [], "", "")
    assert "pgvector" in md and PG_TITLE not in md


# ------------------------------------------------------------------ over HTTP, with gradio_client

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(retriever, settings, tmp_path):
    demos = []

    def start(assistant, auth=None):
        port = _free_port()
        demo = serve(assistant, settings.replace(index_dir=str(tmp_path)), host="127.0.0.1", port=port, auth=auth,
                     prevent_thread_lock=True, quiet=True, feedback=FeedbackStore(tmp_path / "fb.sqlite"))
        demos.append(demo)
        return f"http://127.0.0.1:{port}/"

    yield start
    for d in demos:
        d.close()


def test_ask_api_with_gradio_client(served, retriever, settings):
    from gradio_client import Client

    url = served(Assistant(settings, retriever))
    client = Client(url, verbose=False)
    out = client.predict(QUESTION, api_name="/ask")
    body, sources = out.split("\n\nSources:\n")
    assert "[1]" in body and "85ms" in body
    assert sources.startswith(f"[1] {PG_TITLE} (2021-06-30)")
    assert "(not cited)" in sources


class FailingClient:
    def stream(self, messages, max_tokens=None):
        yield "途中まで"
        raise LLMError("chat endpoint http://llm.local/v1/chat/completions failed: connection refused")

    def complete(self, messages, max_tokens=None):
        raise LLMError("down")


def test_ask_api_reports_endpoint_errors_and_keeps_serving(served, retriever, settings):
    from gradio_client import Client

    url = served(Assistant(settings, retriever, client=FailingClient()))
    client = Client(url, verbose=False)
    for _ in range(2):
        out = client.predict(QUESTION, api_name="/ask")
        assert out.startswith("Error: the chat model failed") and "llm.local" not in out
        assert "Traceback" not in out and f"[1] {PG_TITLE}" in out


class SlowClient:
    """A chat endpoint that takes a second per answer: shows whether requests are served in parallel."""

    def stream(self, messages, max_tokens=None):
        time.sleep(1.0)
        yield "注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました[1]。"

    def complete(self, messages, max_tokens=None):
        return ""


def test_twenty_concurrent_users(served, retriever, settings):
    from gradio_client import Client

    url = served(Assistant(settings, retriever, client=SlowClient()))
    client = Client(url, verbose=False)
    t0 = time.monotonic()
    jobs = [client.submit(QUESTION, api_name="/ask") for _ in range(20)]
    results = [j.result(timeout=60) for j in jobs]
    elapsed = time.monotonic() - t0
    assert all(r.startswith("注文履歴 API の p95") and f"[1] {PG_TITLE}" in r for r in results)
    assert elapsed < 12, f"20 one-second answers took {elapsed:.1f} s: not served concurrently"


def test_login_required_when_auth_is_set(served, retriever, settings):
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    url = served(Assistant(settings, retriever), auth=("editor", "s3cret"))
    assert httpx.get(url, timeout=30).status_code == 200  # the login page: the server is up
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("editor", "wrong"), verbose=False)
    for path, body in (("gradio_api/call/ask", {"data": [QUESTION]}),
                       ("gradio_api/queue/join", {"data": [QUESTION], "fn_index": 0, "session_hash": "x"})):
        r = httpx.post(url + path, json=body, timeout=30)
        assert r.status_code == 401 and r.json()["detail"]["error"] == "Not authenticated", (path, r.text[:200])
    client = Client(url, auth=("editor", "s3cret"), verbose=False)
    assert f"[1] {PG_TITLE}" in client.predict(QUESTION, api_name="/ask")


# ------------------------------------------------------------------ hardening (issue 13)

class ManyDeltas(Assistant):
    """Streams a long answer in thousands of tiny deltas."""

    def stream(self, question, history=(), *a, **kw):
        for kind, payload in super().stream(question, history, *a, **kw):
            if kind == "delta":
                for ch in payload * 40:
                    yield "delta", ch
            else:
                yield kind, payload


def test_streaming_is_rendered_at_a_bounded_rate(retriever, settings, tmp_path):
    """Re-rendering the whole escaped answer per delta is quadratic in its length: the chat is
    updated at most every RENDER_INTERVAL_S, and the final answer is still shown whole."""
    demo = build_app(ManyDeltas(settings, retriever), settings.replace(index_dir=str(tmp_path)),
                     feedback=FeedbackStore(tmp_path / "fb.sqlite"))
    t0 = time.monotonic()
    steps = list(_fn(demo, "respond")(QUESTION, [], [], [], [], "", ""))
    elapsed = time.monotonic() - t0
    n_deltas = len(steps[-1][2][0]["result"]["answer"]) * 40
    assert n_deltas > 2000
    assert len(steps) <= 3 + elapsed / 0.1, (len(steps), elapsed)
    assert "\\[1\\]" in steps[-1][0][-1]["content"]


def test_long_questions_are_refused_everywhere(app_parts, monkeypatch, capsys):
    assistant, _, demo = app_parts
    limit = 2000  # the default of RAG_MAX_QUESTION_CHARS
    long_q = "長い質問です。" * (limit // 7 + 50)
    assert len(long_q) > limit
    with pytest.raises(ValueError, match=f"too long .* the limit is {limit:,}"):
        assistant.ask(long_q)
    n_asked = len(assistant.histories)
    messages, html_, turns, _ = _last(_fn(demo, "respond")(long_q, [], [], [], [], "", ""))
    assert "too long" in messages[-1]["content"] and len(messages[0]["content"]) < 400
    assert len(assistant.histories) == n_asked  # nothing was searched or sent anywhere
    md, _, _ = _fn(demo, "timeline")(long_q, 20, "hybrid", [], [], "", "")
    assert "too long" in md
    assert _fn(demo, "ask")(long_q).startswith("Error: the question is too long")
    import rag.cli

    assert rag.cli.main(["ask", long_q, "--index", "/nonexistent-index"]) == 2
    assert "the question is too long" in capsys.readouterr().err


def test_a_session_keeps_its_last_turns_only(retriever, settings, tmp_path):
    """RAG_MAX_HISTORY_TURNS (default 10): older turns leave the session's state and the history."""
    assistant = SpyAssistant(settings, retriever)
    store = FeedbackStore(tmp_path / "fb.sqlite")
    demo = build_app(assistant, settings.replace(index_dir=str(tmp_path)), feedback=store)
    respond, on_like = _fn(demo, "respond"), _fn(demo, "on_like")
    messages, turns = [], []
    for i in range(12):
        messages, _, turns, _ = _last(respond(f"{QUESTION} その{i}", messages, turns, [], [], "", ""))
    assert len(turns) == 10 and len(messages) == 20
    assert [t["question"] for t in turns] == [f"{QUESTION} その{i}" for i in range(2, 12)]
    assert max(len(h) for h in assistant.histories) <= 9
    # feedback still lands on the turn that was rated after older ones were dropped
    ids, _ = on_like(turns, {}, SimpleNamespace(index=19, liked=True, value=None))
    messages, _, turns, _ = _last(respond("次の質問", messages, turns, [], [], "", ""))
    ids, _ = on_like(turns, ids, SimpleNamespace(index=17, liked=False, value=None))
    assert [(r["question"], r["rating"]) for r in store.list()] == [(f"{QUESTION} その11", "down")]


def test_failures_are_logged_with_a_truncated_question(app_parts, monkeypatch, caplog):
    assistant, _, demo = app_parts

    def boom(*a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(assistant, "stream", boom)
    question = "ログに残す質問" * 280  # under the length limit, far over what a log line needs
    _last(_fn(demo, "respond")(question, [], [], [], [], "", ""))
    logged = [r.getMessage() for r in caplog.records if "answering" in r.getMessage()]
    assert logged and all(len(m) < 400 for m in logged)


def test_only_the_api_endpoints_are_callable(served, retriever, settings):
    """The UI's handlers are private: not in the API info, refused to gradio_client, and a raw named
    call to them gets 404; /ask works. (Issue 16: the documented endpoints are the three MCP tools;
    /ask is undocumented so that it is not a fourth tool, and still callable.)"""
    import httpx
    from gradio_client import Client

    url = served(Assistant(settings, retriever))
    info = httpx.get(url + "gradio_api/info", timeout=30).json()
    assert list(info["named_endpoints"]) == ["/search_archive", "/ask_archive", "/get_post"]
    assert not info.get("unnamed_endpoints")
    every = httpx.get(url + "gradio_api/info?all_endpoints=True", timeout=30).json()
    assert sorted(every["named_endpoints"]) == ["/ask", "/ask_archive", "/get_post", "/search_archive"]
    client = Client(url, verbose=False)
    for name, args in (("/respond", ("質問", [], [], [], [], "", "")), ("/timeline", ("PostgreSQL", 20, "hybrid", [], [], "", "")),
                       ("/on_like", ([], {}))):
        with pytest.raises(ValueError, match="Cannot find a function"):
            client.predict(*args, api_name=name)
    for name in ("respond", "timeline", "on_like"):
        r = httpx.post(f"{url}gradio_api/call/{name}", json={"data": ["PostgreSQL", 20, "hybrid", [], [], "", ""]},
                       timeout=30)
        assert r.status_code == 404, (name, r.status_code, r.text[:200])
    r = httpx.post(f"{url}gradio_api/call/ask", json={"data": [QUESTION]}, timeout=30)
    assert r.status_code == 200 and r.json()["event_id"]
    assert f"[1] {PG_TITLE}" in client.predict(QUESTION, api_name="/ask")
