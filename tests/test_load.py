"""Load: 20 concurrent users against a real `rag serve` process (127.0.0.1), extractive and with an
endpoint that takes 1 s per answer. Bounded in count (20 x 2 questions) and time."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval.load_test import run
from tests.app_server import free_port, stop, wait_http
from tests.llm_server import ScriptedLLMServer, sse_reply

ROOT = Path(__file__).resolve().parents[1]


def _serve(index: Path, tmp_path: Path, env_extra: dict):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", **env_extra)
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(index), "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_http(url, proc, log)
    return proc, url


@pytest.fixture
def index_copy(sample_index, tmp_path):
    d = tmp_path / "index"
    shutil.copytree(sample_index, d)
    return d


@pytest.mark.slow
def test_twenty_users_extractive(index_copy, tmp_path):
    proc, url = _serve(index_copy, tmp_path, {})
    try:
        res = run(url, users=20, per_user=2, timeout=240)
    finally:
        stop(proc)
    print("extractive:", res)
    assert res["errors"] == 0, res["error_samples"]
    assert res["answered"] == 40


@pytest.mark.slow
def test_twenty_users_with_slow_endpoint(index_copy, tmp_path):
    with ScriptedLLMServer() as llm:
        llm.script(sse_reply(["p95は85msに", "下がりました[1]。"], delay=1.0))
        proc, url = _serve(index_copy, tmp_path, {"RAG_LLM_BASE_URL": llm.base_url, "RAG_LLM_MODEL": "m"})
        try:
            res = run(url, users=20, per_user=2, timeout=240)
        finally:
            stop(proc)
    print("endpoint 1 s:", res)
    assert res["errors"] == 0, res["error_samples"]
    assert res["answered"] == 40
    # 40 answers of >= 1 s each: they must overlap, not queue one by one
    assert res["wall_s"] < 40


def test_error_answers_are_not_counted_as_answered():
    """`/ask` answers failures with text ("Error: ..."), so any non-empty string is not an answer:
    an app whose every answer is an error, or has no source list, must show up as errors."""
    import gradio as gr

    replies = iter(["Error: the chat model failed; the answer could not be completed.\n\nSources:\n[1] 記事 (2021-06-30)",
                    "答えだけで出典がない", ""] * 10)

    def ask(question: str) -> str:
        return next(replies)

    with gr.Blocks() as demo:
        gr.api(ask, api_name="ask")
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        res = run(f"http://127.0.0.1:{port}/", users=3, per_user=2, timeout=60)
    finally:
        demo.close()
    assert res["answered"] == 0 and res["errors"] == 6, res
    from eval.load_test import answer_ok

    assert answer_ok("p95は85msに下がりました[1]。\n\nSources:\n[1] 記事 (2021-06-30) https://blog.example/p")
    assert answer_ok("見つかりませんでした。\n\nNearest passages:\n[1] 記事 (2021-06-30) (not cited)")
    assert not answer_ok("\n\nSources:\n[1] 記事 (2021-06-30)")
