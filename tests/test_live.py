"""Live serving (rag/live.py): following CURRENT, reader leases, the --watch re-ingest, and a real server."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag.config import Settings
from rag.generation import Assistant
from rag.index import LEASE_DIR, IndexReader, ReaderLease, leased_generations
from rag.ingest import IngestReport, ingest
from rag.live import LiveAssistant, SiteWatcher
from rag.retrieval import Filters, Retriever
from tests.app_server import free_port, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
JEKYLL = Path(__file__).parent / "sites" / "jekyll"

NEW_POST = """---
title: Zigzag キャッシュの導入
tags: [cache]
---

検索 API に Zigzag キャッシュを導入しました。p99 レイテンシは 900ms から 120ms に下がりました。
キャッシュの無効化は書き込みのたびに行います。
"""
NEW_REL = "_posts/2024-06-01-zigzag-cache.md"
NEW_URL = "https://blog.example.jp/tech/2024/06/01/zigzag-cache/"  # pretty style under url + baseurl
QUESTION = "Zigzag キャッシュで検索 API の p99 レイテンシはどう変わった？"


@pytest.fixture
def site(tmp_path) -> Path:
    d = tmp_path / "site"
    shutil.copytree(JEKYLL, d)
    return d


def _gens(idx: Path) -> set[str]:
    return {p.name for p in idx.iterdir() if p.name.startswith("gen-")}


def test_live_assistant_switches_and_pinned_generation_survives_cleanup(site, tmp_path, embedder):
    s = Settings(index_dir=str(tmp_path / "idx"))
    idx = Path(s.index_dir)
    ingest(site, idx, s, embedder)
    first = Assistant(s, Retriever(IndexReader(idx), embedder, s))
    live = LiveAssistant(first, lambda reader: Assistant(s, Retriever(reader, embedder, s)))
    first = live.generation
    assert not live.check()  # nothing new
    with live.pinned() as old:  # a question in flight on the first generation
        (site / NEW_REL).write_text(NEW_POST, encoding="utf-8")
        ingest(site, idx, s, embedder)
        assert live.check() and live.generation != first
        # two more publishes: plain clean-up keeps only the newest two, the lease keeps the pinned one
        for i in range(2):
            (site / f"_posts/2024-06-0{i + 2}-more.md").write_text(NEW_POST.replace("Zigzag", f"Z{i}"), "utf-8")
            ingest(site, idx, s, embedder)
        assert first in _gens(idx)
        hits = old.retriever.search(QUESTION, 3, "hybrid", Filters())
        assert hits and all(h.url != NEW_URL for h in hits)  # the old generation answers as it was
    # the question finished: its generation is closed and its lease released
    assert first not in leased_generations(idx)
    assert live.check()  # the newest publish
    hits = live.retriever.search(QUESTION, 3, "hybrid", Filters())
    assert hits[0].url == NEW_URL and hits[0].date == "2024-06-01"
    (site / "_posts/2024-06-05-last.md").write_text(NEW_POST.replace("Zigzag", "Last"), "utf-8")
    ingest(site, idx, s, embedder)
    assert first not in _gens(idx)  # unleased now: cleaned up
    ans = live.ask(QUESTION)
    assert ans.sources[0]["url"] == NEW_URL


def test_leases_of_dead_processes_and_stale_remote_leases_do_not_count(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    mine = ReaderLease(idx, "gen-a")
    d = idx / LEASE_DIR
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / f"gen-b@{socket.gethostname()}@{dead.pid}@x").touch()
    (d / "gen-c@another-host@1@x").touch()  # fresh: a reader on another machine sharing the folder
    old = d / "gen-d@another-host@1@y"
    old.touch()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert leased_generations(idx) == {"gen-a", "gen-c"}
    assert sorted(p.name.split("@")[0] for p in d.iterdir()) == ["gen-a", "gen-c"]  # stale ones removed
    mine.release()
    assert "gen-a" not in leased_generations(idx)


def test_watcher_debounces_a_burst_of_changes_into_one_ingest(tmp_path):
    root = tmp_path / "posts"
    root.mkdir()
    calls = []

    def fake_ingest():
        calls.append(time.monotonic())
        return IngestReport()

    w = SiteWatcher(root, Settings(), fake_ingest, poll_s=0.05, debounce_s=2.0).start(initial=False)
    try:
        for i in range(5):  # an editor saving several files in a row
            (root / f"p{i}.md").write_text(f"# 記事 {i}\n本文です。", encoding="utf-8")
            last_write = time.monotonic()
            time.sleep(0.1)
        deadline = time.monotonic() + 20
        while not calls and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)
        assert len(calls) == 1 and calls[0] - last_write >= 1.9  # once, after 2 s without changes
        (root / "p0.md").write_text("# 記事 0\n書き直しました。", encoding="utf-8")
        deadline = time.monotonic() + 20
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls) == 2
    finally:
        w.stop()


# ------------------------------------------------------------------ a real `rag serve` process

def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", RAG_RELOAD_POLL_S="0.5", **extra)
    return env


def _cited(answer: str, url: str) -> bool:
    return any(url in line and "(not cited)" not in line for line in answer.splitlines() if line.startswith("["))


class QuestionLoop:
    """Readers asking all along (bounded): every answer must come back without an error."""

    def __init__(self, url: str, max_questions: int = 400):
        from gradio_client import Client

        self.client = Client(url, verbose=False)
        self.max = max_questions
        self.answers = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        qs = ["技術的負債はどう返済しますか？", "バージョン 2.0 の主な変更点は？", QUESTION]
        while not self._stop.is_set() and self.answers + len(self.errors) < self.max:
            try:
                out = self.client.predict(qs[self.answers % len(qs)], api_name="/ask")
                if out.startswith("Error"):
                    self.errors.append(out[:300])
                else:
                    self.answers += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.errors.append(repr(exc)[:300])

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=60)


def _wait_cited(url: str, question: str, cited_url: str, timeout: float) -> float:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _cited(client.predict(question, api_name="/ask"), cited_url):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{cited_url} not cited within {timeout} s")


@pytest.mark.slow
def test_serve_answers_from_a_new_post_without_restart(site, tmp_path):
    idx = tmp_path / "idx"
    rag = [sys.executable, "-m", "rag.cli"]
    subprocess.run([*rag, "ingest", str(site), "--index", str(idx), "--json"], env=_env(), check=True,
                   capture_output=True, timeout=600)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*rag, "serve", "--index", str(idx), "--port", str(port)], cwd=tmp_path, env=_env(),
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc, log, timeout=300)  # a busy shared machine can take minutes to import torch + gradio
        from gradio_client import Client

        assert not _cited(Client(url, verbose=False).predict(QUESTION, api_name="/ask"), NEW_URL)
        loop = QuestionLoop(url)
        (site / NEW_REL).write_text(NEW_POST, encoding="utf-8")
        r = subprocess.run([*rag, "ingest", str(site), "--index", str(idx), "--json"], env=_env(),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        seconds = _wait_cited(url, QUESTION, NEW_URL, timeout=30)
        print(f"\nnew post cited {seconds:.2f} s after `rag ingest` finished")
        time.sleep(1.0)
        loop.stop()
        assert loop.errors == [] and loop.answers >= 5
        assert proc.poll() is None  # never restarted
        assert "serving index generation" in log.read_text()
    finally:
        stop(proc)


@pytest.mark.slow
def test_serve_watch_reingests_a_changed_site(site, tmp_path):
    idx = tmp_path / "idx"
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:  # no index yet: --watch ingests before serving
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(idx), "--port", str(port),
                                 "--watch", str(site)], cwd=tmp_path, env=_env(RAG_WATCH_DEBOUNCE_S="1.0"),
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc, log, timeout=300)
        loop = QuestionLoop(url)
        (site / NEW_REL).write_text(NEW_POST, encoding="utf-8")
        _wait_cited(url, QUESTION, NEW_URL, timeout=120)
        loop.stop()
        assert loop.errors == [] and loop.answers >= 1
        text = log.read_text()
        assert "watch: 1 change(s)" in text and "watch: ingested" in text and "1 added" in text
    finally:
        stop(proc)
