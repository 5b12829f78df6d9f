"""Readers' thumbs up/down on answers, kept in SQLite beside the index (`INDEX_DIR/feedback.sqlite`).

A connection is opened per call, so one `FeedbackStore` can be shared by the web server's threads.
`export_questions()` turns the feedback into the evaluation question format (`rag eval`), to be
reviewed by an editor before it joins a question set.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Iterator, Sequence

FILENAME = "feedback.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT '',
    sources TEXT NOT NULL DEFAULT '[]',
    cited_posts TEXT NOT NULL DEFAULT '[]'
);
"""


def _rating(value: str | bool) -> str:
    if value is True or value == "up":
        return "up"
    if value is False or value == "down":
        return "down"
    raise ValueError(f"rating must be 'up' or 'down', got {value!r}")


def cited_posts(answer: dict) -> list[str]:
    """Post ids of the sources the answer cites, in citation order, without repeats."""
    cited = {c["n"] for c in answer.get("citations") or []}
    out: list[str] = []
    for s in answer.get("sources") or []:
        if s.get("n") in cited and s.get("post_id") and s["post_id"] not in out:
            out.append(s["post_id"])
    return out


class FeedbackStore:
    def __init__(self, path: str | Path, timeout: float = 10.0):
        path = Path(path)
        self.path = path / FILENAME if path.is_dir() else path
        self.timeout = timeout

    @classmethod
    def for_index(cls, index_dir: str | Path) -> "FeedbackStore":
        return cls(Path(index_dir) / FILENAME)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")  # readers (`rag feedback export`) never block the web server's writes
        conn.executescript(_SCHEMA)
        return conn

    def add(self, rating: str | bool, question: str, answer: str, sources: Sequence[dict] = (),
            mode: str = "", cited: Sequence[str] = ()) -> int:
        """Store one judgement; returns its id."""
        row = (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), _rating(rating), question, answer,
               mode, json.dumps(list(sources), ensure_ascii=False), json.dumps(list(cited), ensure_ascii=False))
        with closing(self._connect()) as conn, conn:
            cur = conn.execute("INSERT INTO feedback (created_at, rating, question, answer, mode, sources, cited_posts)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)

    def add_answer(self, rating: str | bool, answer: dict) -> int:
        """Store a judgement on an `Answer.as_json()` dict."""
        return self.add(rating, answer.get("question", ""), answer.get("answer", ""), answer.get("sources") or [],
                        answer.get("mode", ""), cited_posts(answer))

    def set_rating(self, feedback_id: int, rating: str | bool) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute("UPDATE feedback SET rating=? WHERE id=?", (_rating(rating), int(feedback_id)))

    def delete(self, feedback_id: int) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM feedback WHERE id=?", (int(feedback_id),))

    def list(self) -> list[dict]:
        if not self.path.exists():
            return []
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT * FROM feedback ORDER BY id").fetchall()
        return [{"id": r["id"], "created_at": r["created_at"], "rating": r["rating"], "question": r["question"],
                 "answer": r["answer"], "mode": r["mode"], "sources": json.loads(r["sources"]),
                 "cited_posts": json.loads(r["cited_posts"])} for r in rows]

    def export_questions(self) -> Iterator[dict]:
        """One evaluation question per judgement.

        `answerable` is a guess for the reviewer: a thumbs-up agrees with what the assistant did (answered,
        or refused), a thumbs-down disagrees with it. `gold_posts` are the cited posts of a thumbs-up answer.
        """
        for r in self.list():
            up = r["rating"] == "up"
            refused = r["mode"] == "refused"
            answer = " ".join(r["answer"].split())
            if len(answer) > 300:
                answer = answer[:300] + "…"
            yield {"id": f"feedback-{r['id']}", "question": r["question"], "answers": [],
                   "gold_posts": r["cited_posts"] if up and not refused else [],
                   "answerable": (not refused) if up else refused,
                   "notes": f"feedback: {r['rating']}; answer: {answer}"}

    def export_jsonl(self) -> str:
        return "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in self.export_questions())
