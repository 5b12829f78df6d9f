"""Groundedness of model answers (issue 18): the verdict from the claim checks, what the reader is told
(notice, extractive answer from the same sources, the model's answer set apart), the `replace` policy,
the log line, `--json`, `rag eval`, `/ask` over HTTP against a real `rag serve`, and the web chat.

The model is the scripted OpenAI-compatible server on 127.0.0.1 (tests/llm_server.py), scripted as the
failures seen in practice: echoing the prompt, answering off-topic, citing only numbers that point at no
source, and a partly supported answer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answer_text import api_answer_text, format_answer_markdown
from rag.citations import Claim, check_claims, groundedness
from rag.config import load_settings
from rag.evaluation import evaluate_question, summarize
from rag.generation import Answer, Prompts, reader_blocks
from rag.render import format_sources_html
from tests.llm_server import ScriptedLLMServer, assistant_factory, echo_reply, llm_server, sse_reply  # noqa: F401

QUESTION = "注文履歴APIのp95レイテンシはいくつに下がった？"
EN_QUESTION = "What did the p95 latency of the order history API drop to?"
PROMPTS = Prompts()
NOTICE_JA, NOTICE_EN = PROMPTS.lang("ungrounded", False), PROMPTS.lang("ungrounded", True)
PARTLY_JA = PROMPTS.lang("partly", False)
FALLBACK_JA = PROMPTS.lang("fallback", False)
HEADING_JA = PROMPTS.lang("model_answer", False)

# The top passage for QUESTION (prompt source 1) is the post's 結果 section: "注文履歴 API の p95 レイテンシは
# 320ms から 85ms に下がりました。…ディスク使用量も約14GB減っています。"
SCRIPTS = {
    "echo": lambda: echo_reply(),
    "off-topic": lambda: sse_reply(["東京タワーの高さは333メートルです[3]。", "富士山は日本で一番高い山です[2]。"]),
    "invalid-numbers": lambda: sse_reply(["注文履歴APIのp95レイテンシは85msに下がりました[7]。",
                                          "ディスク使用量も約14GB減りました[9]。"]),
    "partly": lambda: sse_reply(["注文履歴APIのp95レイテンシは320msから85msに下がりました[1]。",
                                 "Redisのキャッシュを導入して応答を10倍速くしました[1]。"]),
    "supported": lambda: sse_reply(["注文履歴APIのp95レイテンシは320msから85msに下がりました[1]。"]),
}
VERDICTS = {"echo": "no", "off-topic": "no", "invalid-numbers": "no", "partly": "partly", "supported": "yes"}


@pytest.fixture
def make_assistant(llm_server, retriever):  # noqa: F811
    with assistant_factory(llm_server, retriever, read_timeout=5, max_retries=1) as make:
        yield make


def fallback_lines(text: str) -> list[tuple[str, int]]:
    """(quoted sentence without its marker, cited number) for each line of a labelled extractive answer."""
    out = []
    for line in text.split("\n\n", 1)[1].splitlines():
        nums = re.findall(r"\[(\d+)\]", line)
        assert len(nums) == 1, line
        out.append((re.sub(r"\[\d+\]", "", line).rstrip("。."), int(nums[0])))
    return out


# ------------------------------------------------------------------ the verdict (pure)

def test_a_quote_of_an_escaped_markdown_line_is_supported():
    # the post writes `1\\.8.4` (a Markdown escape); the extractive answer quotes what readers see
    source = "## 脆弱性の存在するバージョン\n: 1\\.8.4以前の全てのバージョン、1.8.5-p113以前のバージョン\n"
    claim = check_claims("1.8.4以前の全てのバージョン、1.8.5-p113以前のバージョン[1]", {1: source})[0]
    assert claim.supported and claim.score == 1.0
    assert not check_claims("1.8.3以前の全てのバージョン[1]", {1: source})[0].supported


def test_groundedness_from_claims_and_citations():
    cites = [{"n": 1, "supported": True}, {"n": 2, "supported": False}]
    ok, bad, uncited = Claim("a", [1], True, 0.9), Claim("b", [2], False, 0.1), Claim("c", [], False, 0.0)
    assert groundedness([ok], cites) == "yes"
    assert groundedness([ok, bad], cites) == "partly"
    assert groundedness([ok, uncited], cites) == "partly"
    assert groundedness([bad, uncited], cites) == "no"
    assert groundedness([], []) == "no"  # nothing claimed, nothing cited: not grounded
    assert groundedness([Claim("a", [3], True, 1.0)], cites) == "no"  # cites a source that is not listed
    assert groundedness([ok.__dict__, bad.__dict__], cites) == "partly"  # claims as in `Answer.claims`


# ------------------------------------------------------------------ the assistant with a scripted model

@pytest.mark.parametrize("case", list(SCRIPTS))
def test_verdict_notice_and_fallback_for_each_scripted_model(llm_server, make_assistant, case):  # noqa: F811
    llm_server.script(SCRIPTS[case]())
    assistant = make_assistant()
    events = list(assistant.stream(QUESTION))
    ans = events[-1][1]
    streamed = "".join(p for k, p in events if k == "delta")
    assert ans.mode == "llm" and ans.grounded == VERDICTS[case]
    assert ans.answer == streamed  # the model's answer itself is kept as it came
    out = ans.as_json()
    assert {"question", "answer", "mode", "citations", "sources", "latency_ms", "standalone_question", "claims",
            "invalid_citations"} <= set(out)
    assert out["grounded"] == VERDICTS[case]
    if case == "echo":
        assert "<source" in ans.answer and ans.citations == []
    if case == "invalid-numbers":
        assert ans.invalid_citations == [7, 9] and ans.citations == []
    if VERDICTS[case] == "yes":
        assert ans.notice is None and ans.fallback_answer is None
        assert reader_blocks(ans) == [("answer", ans.answer)]
    elif VERDICTS[case] == "partly":
        assert [c["supported"] for c in ans.claims] == [True, False]
        assert ans.notice == PARTLY_JA and ans.fallback_answer is None
        assert reader_blocks(ans) == [("notice", PARTLY_JA), ("answer", ans.answer)]
    else:
        assert not any(c["supported"] and c["citations"] for c in ans.claims)
        assert ans.notice == NOTICE_JA and ans.model_answer is None
        assert ans.fallback_answer.startswith(FALLBACK_JA + "\n\n")
        lines = fallback_lines(ans.fallback_answer)
        assert any("85ms" in s for s, _ in lines)
        for sentence, n in lines:  # numbered like the answer's source list, pointing at the quoted passage
            assert sentence in ans.sources[n - 1]["text"], (sentence, n)
        assert [k for k, _ in reader_blocks(ans)] == ["notice", "fallback", "heading", "answer"]
        assert out["notice"] == NOTICE_JA and out["fallback_answer"] == ans.fallback_answer


def test_fallback_numbers_follow_the_models_source_order(llm_server, make_assistant):  # noqa: F811
    llm_server.script(SCRIPTS["off-topic"]())  # cites prompt source 3 first, then 2: shown as [1], [2]
    ans = make_assistant(context_chars=0).ask(QUESTION)  # one source per hit, unassembled: five to number
    assert ans.answer == "東京タワーの高さは333メートルです[1]。富士山は日本で一番高い山です[2]。"
    assert ans.grounded == "no"
    quoted = fallback_lines(ans.fallback_answer)
    assert quoted[0][1] == 3  # prompt source 1 is third in the model's numbering
    assert "85ms" in ans.sources[2]["text"].replace(" ", "")


def test_replace_policy_answers_with_the_extractive_answer(llm_server, make_assistant):  # noqa: F811
    llm_server.script(echo_reply())
    ans = make_assistant(ungrounded_policy="replace").ask(QUESTION)
    assert ans.mode == "llm" and ans.grounded == "no" and ans.notice == NOTICE_JA
    assert ans.answer == ans.fallback_answer and ans.answer.startswith(FALLBACK_JA)
    assert "<source" in ans.model_answer and "<source" not in ans.answer
    # the source list is now numbered by the extractive answer, and its claims are checked
    assert [c["n"] for c in ans.citations] == [1] and ans.citations[0]["supported"]
    assert "85ms" in ans.sources[0]["text"] and all(c["supported"] for c in ans.claims)
    assert [k for k, _ in reader_blocks(ans)] == ["notice", "answer"]
    assert ans.as_json()["model_answer"] == ans.model_answer


def test_english_question_gets_english_notice(llm_server, make_assistant):  # noqa: F811
    llm_server.script(sse_reply(["Tokyo Tower is 333 meters tall [1]."]))
    ans = make_assistant(refusal_min_dense=0.0, refusal_min_coverage=0.0, gate_min_dense=0.0,
                         gate_min_coverage=0.0).ask(EN_QUESTION)  # past the pre-model gate: the notice is the point
    assert ans.grounded == "no" and ans.notice == NOTICE_EN
    assert ans.fallback_answer.startswith(PROMPTS.lang("fallback", True))
    assert ans.model_heading == PROMPTS.lang("model_answer", True)


def test_ungrounded_answer_is_logged_with_the_model_name(llm_server, make_assistant, caplog):  # noqa: F811
    llm_server.script(SCRIPTS["supported"]())
    assistant = make_assistant()
    with caplog.at_level(logging.WARNING, logger="rag.generation"):
        assistant.ask(QUESTION)
        assert not caplog.records
        llm_server.script(echo_reply())
        assistant.ask(QUESTION)
    (rec,) = caplog.records
    assert "ungrounded answer from model 'm'" in rec.getMessage() and llm_server.base_url in rec.getMessage()


def test_policy_setting_is_validated():
    assert load_settings(env={"RAG_UNGROUNDED_POLICY": "replace"}).ungrounded_policy == "replace"
    assert load_settings(env={}).ungrounded_policy == "show-with-notice"
    with pytest.raises(ValueError, match="ungrounded_policy.*show-with-notice, replace"):
        load_settings(env={"RAG_UNGROUNDED_POLICY": "hide"})


# ------------------------------------------------------------------ what the reader sees (pure formatting)

def test_chat_and_api_text_put_the_notice_first(llm_server, make_assistant):  # noqa: F811
    assistant = make_assistant()
    llm_server.script(echo_reply())
    ans = assistant.ask(QUESTION)
    md, text = after_badge(format_answer_markdown(ans)), api_answer_text(ans)
    assert text.startswith(NOTICE_JA + "\n\n" + FALLBACK_JA)
    assert text.index(FALLBACK_JA) < text.index(HEADING_JA) < text.index("<source") < text.index("Sources:")
    assert re.search(r"^\[1\] .*\(quoted in the extractive answer\)$", text, re.M)  # echo cites nothing
    assert "Not supported by the cited sources" not in text  # every sentence: the notice says it once
    assert md.startswith(f"**{NOTICE_JA}**")
    assert md.index(FALLBACK_JA) < md.index(HEADING_JA)
    model_part = md.split(HEADING_JA, 1)[1]
    assert "\n> &lt;source" in model_part and "<source" not in md  # set apart as a quote, escaped
    panel = format_sources_html(ans)  # the passage the extractive answer quotes is flagged and marked
    first = panel.split('data-n="2"')[0]
    assert "quoted in the extractive answer" in first and "<mark>注文履歴 API の p95 レイテンシは 320ms" in first
    assert "not cited" not in first

    # a wrong figure citing the right passage: the sentences marked are the ones the extractive answer
    # quotes, never the one the unconfirmed claim resembles
    llm_server.script(sse_reply(["削除したインデックスの分、ディスク使用量は約99GB減りました[1]。"]))
    ans = assistant.ask(QUESTION)
    assert ans.grounded == "no" and ans.citations[0]["supported"] is False
    panel = format_sources_html(ans)
    assert "claim not confirmed by this passage" in panel
    quoted = [re.sub(r"\[\d+\]", "", line) for line in ans.fallback_answer.splitlines() if "[1]" in line]
    assert quoted and all(f"<mark>{q[:15]}" in panel for q in quoted)
    if not any("14GB" in q for q in quoted):
        assert "<mark>削除したインデックスの分" not in panel

    llm_server.script(SCRIPTS["partly"]())
    ans = assistant.ask(QUESTION)
    md, text = after_badge(format_answer_markdown(ans)), api_answer_text(ans)
    assert md.splitlines()[0] == f"**{PARTLY_JA}**" and text.splitlines()[0] == PARTLY_JA
    assert "Not supported by the cited sources" in md and "Redis" in md.split("Not supported", 1)[1]
    assert "Not supported by the cited sources:\n- Redisのキャッシュ" in text

    llm_server.script(SCRIPTS["supported"]())
    ans = assistant.ask(QUESTION)
    assert api_answer_text(ans).startswith(ans.answer) and "⚠" not in format_answer_markdown(ans)


def after_badge(md: str) -> str:
    """The chat message without the mode badge (issue 17) that precedes the answer's first line."""
    assert md.startswith('<details class="rag-mode'), md[:80]
    return md.split("</details>", 1)[1].lstrip("\n")


def test_dict_answers_format_the_same(llm_server, make_assistant):  # noqa: F811
    llm_server.script(echo_reply())
    ans = make_assistant().ask(QUESTION)
    as_dict = dict(ans.__dict__)
    assert reader_blocks(as_dict) == reader_blocks(ans)
    assert format_answer_markdown(as_dict) == format_answer_markdown(ans)


# ------------------------------------------------------------------ evaluation

def test_eval_records_and_shares(llm_server, make_assistant, retriever):  # noqa: F811
    assistant = make_assistant()
    q = {"id": "q1", "question": QUESTION, "answers": ["85ms"], "gold_posts": ["2021-06-30-postgres-index"],
         "answerable": True}
    records = []
    for case in ("echo", "partly", "supported", "supported"):
        llm_server.script(SCRIPTS[case]())
        records.append(evaluate_question(q, retriever, assistant, 10, "hybrid", False))
    assert [r["grounded"] for r in records] == ["no", "partly", "yes", "yes"]
    rep = summarize(records, 10, False)["answers"]
    assert (rep["grounded_yes"], rep["grounded_partly"], rep["grounded_no"]) == (0.5, 0.25, 0.25)
    assert "grounded_yes" not in summarize([{**r, "grounded": None} for r in records], 10, False)["answers"]

    replaced = make_assistant(ungrounded_policy="replace")
    llm_server.script(echo_reply())
    rec = evaluate_question(q, retriever, replaced, 10, "hybrid", False)
    assert rec["grounded"] == "no" and rec["answer"].startswith(FALLBACK_JA)  # scored on what the reader got
    assert rec["contains_gold"] is True


# ------------------------------------------------------------------ the CLI

def rag(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=e,
                          timeout=300)


@pytest.mark.slow
def test_cli_ask_json_and_text(sample_index, llm_server):  # noqa: F811
    env = {"RAG_LLM_BASE_URL": llm_server.base_url, "RAG_LLM_MODEL": "m"}
    llm_server.script(echo_reply())
    p = rag("ask", QUESTION, "--index", str(sample_index), "--json", env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["mode"] == "llm" and out["grounded"] == "no" and out["notice"] == NOTICE_JA
    assert out["fallback_answer"].startswith(FALLBACK_JA) and "<source" in out["answer"]
    assert "ungrounded answer from model 'm'" in p.stderr

    t = rag("ask", QUESTION, "--index", str(sample_index), env=env)  # piped: printed as /ask shows it
    assert t.returncode == 0, t.stderr
    assert t.stdout.startswith(NOTICE_JA + "\n\n" + FALLBACK_JA)
    assert t.stdout.index(HEADING_JA) < t.stdout.index("<source") < t.stdout.index("\nSources:")
    assert re.search(r"^\[1\] .*  \(quoted in the extractive answer\)$", t.stdout, re.M)
    assert "statement(s) not supported" not in t.stdout

    r = rag("ask", QUESTION, "--index", str(sample_index), env={**env, "RAG_UNGROUNDED_POLICY": "replace"})
    assert r.returncode == 0 and r.stdout.startswith(NOTICE_JA) and "<source" not in r.stdout
    assert HEADING_JA not in r.stdout and "85ms" in r.stdout

    llm_server.script(SCRIPTS["partly"]())
    t = rag("ask", QUESTION, "--index", str(sample_index), env=env)
    assert t.stdout.splitlines()[0] == PARTLY_JA
    assert "! 1 statement(s) not supported by the cited sources:\n  - Redisのキャッシュ" in t.stdout

    bad = rag("ask", QUESTION, "--index", str(sample_index), env={**env, "RAG_UNGROUNDED_POLICY": "hide"})
    assert bad.returncode == 2 and "ungrounded_policy" in bad.stderr


@pytest.mark.slow
def test_cli_eval_reports_the_share_of_each_verdict(sample_index, llm_server, tmp_path):  # noqa: F811
    from tests.conftest import ROOT

    llm_server.script(echo_reply())
    env = {"RAG_LLM_BASE_URL": llm_server.base_url, "RAG_LLM_MODEL": "m"}
    p = rag("eval", str(ROOT / "eval" / "questions.jsonl"), "--index", str(sample_index), "--limit", "6",
            "--json", "--out", str(tmp_path / "r"), env=env)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    records = [json.loads(x) for x in (tmp_path / "r" / "questions.jsonl").read_text("utf-8").splitlines()]
    model = [r for r in records if r["mode"] == "llm"]
    assert model and all(r["grounded"] == "no" for r in model)
    assert all(r["grounded"] is None for r in records if r["mode"] != "llm")
    assert (rep["answers"]["grounded_no"], rep["answers"]["grounded_yes"], rep["answers"]["grounded_partly"]) \
        == (1.0, 0.0, 0.0)
    assert "| answers.grounded_no | 1.0 |" in (tmp_path / "r" / "report.md").read_text("utf-8")


# ------------------------------------------------------------------ `/ask` and the web chat of a real `rag serve`

@pytest.fixture(scope="module")
def scripted():
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def rag_serve(sample_index, scripted, tmp_path_factory):
    """`rag serve` as a subprocess whose chat endpoint is the scripted model; yields (url, log path)."""
    import shutil

    from tests.app_server import free_port, stop, wait_http

    d = tmp_path_factory.mktemp("grounding-serve")
    index = d / "index"
    shutil.copytree(sample_index, index)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), GRADIO_ANALYTICS_ENABLED="False",
               RAG_LLM_BASE_URL=scripted.base_url, RAG_LLM_MODEL="scripted-model")
    log = d / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(index), "--port",
                                 str(port)], cwd=d, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc, log, timeout=90.0)
        yield url, log
    finally:
        stop(proc)


@pytest.mark.slow
def test_ask_api_over_http(rag_serve, scripted):
    from gradio_client import Client

    url, log = rag_serve
    client = Client(url, verbose=False)
    seen = {}
    for case in SCRIPTS:
        scripted.script(SCRIPTS[case]())
        seen[case] = client.predict(QUESTION, api_name="/ask")
    for case in ("echo", "off-topic", "invalid-numbers"):
        assert seen[case].startswith(NOTICE_JA + "\n\n" + FALLBACK_JA), seen[case][:300]
        assert seen[case].index(HEADING_JA) < seen[case].index("\nSources:")
    assert seen["partly"].startswith(PARTLY_JA + "\n\n注文履歴APIのp95")
    assert seen["supported"].startswith("注文履歴APIのp95レイテンシは320msから85msに下がりました[1]。")
    logged = log.read_text(errors="replace")
    assert logged.count("ungrounded answer from model 'scripted-model'") == 3


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (run scripts/install-browser.sh)")
def test_web_chat_shows_the_notice_first(rag_serve, scripted, capsys):
    from playwright.sync_api import expect, sync_playwright

    from tests.test_app_browser import ARTIFACTS, CHROMIUM_ARGS

    url, _ = rag_serve
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    seen: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            chat, bots = page.locator("#rag-chat"), page.locator("#rag-chat [data-testid='bot']")
            question = page.locator("#rag-question textarea")
            for i, case in enumerate(SCRIPTS, 1):
                scripted.script(SCRIPTS[case]())
                question.fill(QUESTION)
                page.locator("#rag-ask").click()
                expect(bots).to_have_count(i, timeout=30_000)  # the question and "…", sources "Searching"
                # the sources panel is filled with the final answer, in the same update as the chat message
                expect(page.locator("#rag-sources .rag-src").first).to_be_visible(timeout=30_000)
                expect(chat).not_to_contain_text("▌")
                bot = bots.last
                lines = [x.strip() for x in bot.inner_text().splitlines() if x.strip()]
                assert lines[0] == bot.locator(".rag-mode summary").inner_text().strip()  # the mode badge
                lines = seen[case] = lines[1:]
                if VERDICTS[case] == "no":
                    assert lines[0] == NOTICE_JA and lines[1] == FALLBACK_JA, lines[:4]
                    assert "85ms" in lines[2] and "[" in lines[2]
                    assert HEADING_JA in lines and bot.locator("blockquote").count() == 1
                    assert bot.locator("strong").first.inner_text().strip() == NOTICE_JA
                    expect(page.locator("#rag-sources")).to_contain_text("quoted in the extractive answer")
                    if case == "echo":
                        text = bot.inner_text()
                        bot.locator("strong").first.scroll_into_view_if_needed()
                        bot.locator("strong").first.evaluate("e => e.scrollIntoView({block: 'start'})")
                        assert text.index(HEADING_JA) < text.index("<source")  # as text, after the heading
                        page.screenshot(path=str(ARTIFACTS / "ungrounded.png"), full_page=True)
                elif case == "partly":
                    assert lines[0] == PARTLY_JA and lines[1].startswith("注文履歴APIのp95"), lines[:3]
                    expect(bot).to_contain_text("Not supported by the cited sources")
                else:
                    assert lines[0].startswith("注文履歴APIのp95レイテンシは320msから85msに下がりました")
                    expect(bot).not_to_contain_text("⚠")
        finally:
            browser.close()
    assert not errors, errors
    with capsys.disabled():  # for the record: what the reader sees first, per scripted model
        for case, lines in seen.items():
            print(f"\n[{case}: grounded={VERDICTS[case]}]\n  " + "\n  ".join(x[:110] for x in lines[:4]))
