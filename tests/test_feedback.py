"""Feedback store: add/list/update, thread safety, export in the evaluation question format, `rag feedback`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from rag.cli import main
from rag.evaluation import load_questions
from rag.feedback import FILENAME, FeedbackStore, cited_posts


def _answer(mode: str = "extractive", question: str = "p95は？") -> dict:
    sources = [{"n": 1, "post_id": "2021-06-30-postgres-index", "title": "PG", "chunk_id": "pg#4", "text": "..."},
               {"n": 2, "post_id": "2021-06-30-postgres-index", "title": "PG", "chunk_id": "pg#0", "text": "..."},
               {"n": 3, "post_id": "2024/vector-search", "title": "vec", "chunk_id": "v#3", "text": "..."},
               {"n": 4, "post_id": "2020-03-18-sqlite-tips", "title": "sqlite", "chunk_id": "s#1", "text": "..."}]
    citations = [] if mode == "refused" else [{"n": 1, "post_id": "2021-06-30-postgres-index", "chunk_id": "pg#4"},
                                              {"n": 2, "post_id": "2021-06-30-postgres-index", "chunk_id": "pg#0"},
                                              {"n": 3, "post_id": "2024/vector-search", "chunk_id": "v#3"}]
    return {"question": question, "answer": "85ms に下がりました[1][2]。HNSW も[3]。", "mode": mode,
            "sources": sources, "citations": citations}


def test_created_on_first_use(tmp_path: Path):
    store = FeedbackStore.for_index(tmp_path / "idx")
    assert store.list() == [] and not store.path.exists()
    store.add("up", "q", "a")
    assert store.path == tmp_path / "idx" / FILENAME and store.path.exists()
    assert FeedbackStore(tmp_path / "idx").path == store.path  # a directory means the file inside it


def test_add_list_update_delete(tmp_path: Path):
    store = FeedbackStore(tmp_path / "fb.sqlite")
    a = store.add_answer(True, _answer())
    b = store.add_answer("down", _answer(question="二つ目"))
    rows = store.list()
    assert [r["id"] for r in rows] == [a, b]
    assert rows[0]["rating"] == "up" and rows[1]["rating"] == "down"
    assert rows[0]["question"] == "p95は？" and rows[0]["mode"] == "extractive"
    assert rows[0]["cited_posts"] == ["2021-06-30-postgres-index", "2024/vector-search"]
    assert [s["n"] for s in rows[0]["sources"]] == [1, 2, 3, 4]
    assert rows[0]["created_at"].endswith("+00:00")
    store.set_rating(a, False)
    store.delete(b)
    assert [(r["id"], r["rating"]) for r in store.list()] == [(a, "down")]
    with pytest.raises(ValueError):
        store.add("meh", "q", "a")


def test_cited_posts_skips_uncited_sources():
    assert cited_posts(_answer()) == ["2021-06-30-postgres-index", "2024/vector-search"]
    assert cited_posts(_answer("refused")) == []


def test_concurrent_writers(tmp_path: Path):
    store = FeedbackStore(tmp_path / "fb.sqlite")
    errors = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                store.add("up" if j % 2 else "down", f"q{i}-{j}", "a")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(store.list()) == 80


def test_export_format(tmp_path: Path):
    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.add_answer("up", _answer())
    store.add_answer("down", _answer())
    store.add_answer("up", _answer("refused", "火星の首都は？"))
    store.add_answer("down", _answer("refused", "hibikiの作者は？"))
    out = list(store.export_questions())
    assert [set(q) for q in out] == [{"id", "question", "answers", "gold_posts", "answerable", "notes"}] * 4
    assert [q["id"] for q in out] == ["feedback-1", "feedback-2", "feedback-3", "feedback-4"]
    up, down, up_refused, down_refused = out
    assert up["gold_posts"] == ["2021-06-30-postgres-index", "2024/vector-search"] and up["answerable"] is True
    assert up["answers"] == [] and up["notes"] == "feedback: up; answer: 85ms に下がりました[1][2]。HNSW も[3]。"
    assert down["gold_posts"] == [] and down["answerable"] is False and down["notes"].startswith("feedback: down; ")
    assert up_refused["gold_posts"] == [] and up_refused["answerable"] is False  # the refusal was right
    assert down_refused["answerable"] is True                                      # the reader wanted an answer
    path = tmp_path / "fb.jsonl"
    path.write_text(store.export_jsonl(), encoding="utf-8")
    assert [q["question"] for q in load_questions(path)] == ["p95は？", "p95は？", "火星の首都は？", "hibikiの作者は？"]


def test_cli_export(tmp_path: Path, capsys):
    idx = tmp_path / "idx"
    assert main(["feedback", "export", "--index", str(idx), "--json"]) == 0
    assert capsys.readouterr().out == ""
    FeedbackStore.for_index(idx).add_answer("up", _answer())
    assert main(["feedback", "export", "--index", str(idx), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["gold_posts"] == ["2021-06-30-postgres-index",
                                                                       "2024/vector-search"]
    assert main(["feedback", "export", "--index", str(idx)]) == 0
    assert "1 ratings (1 up, 0 down)" in capsys.readouterr().out


def test_an_open_reader_never_blocks_a_writer(tmp_path: Path):
    """`rag feedback export` reading while the web server stores a rating: with a rollback journal the
    write waits for the reader (then fails "database is locked"); with WAL it goes through."""
    import sqlite3
    import time

    store = FeedbackStore(tmp_path / FILENAME)
    store.add_answer("up", _answer())
    reader = sqlite3.connect(store.path, timeout=0)
    reader.execute("BEGIN")
    assert len(reader.execute("SELECT * FROM feedback").fetchall()) == 1  # a read transaction is open
    try:
        t0 = time.monotonic()
        store.add_answer("down", _answer())
        assert time.monotonic() - t0 < 2
    finally:
        reader.rollback()
        reader.close()
    assert [r["rating"] for r in store.list()] == ["up", "down"]
