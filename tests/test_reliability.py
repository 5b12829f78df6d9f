"""Reliability: bad posts in a real folder, SIGKILLed ingests, two ingests at once (real processes)."""

import codecs
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.index import IndexReader, current_generation
from rag.ingest import ingest
from tests.conftest import EXAMPLES, write_post

GOOD = "## 見出し\n全文検索エンジンの運用について書きます。形態素解析の辞書を毎週更新しています。"


def test_bad_posts_are_reported_and_good_ones_indexed(tmp_path, embedder):
    root = tmp_path / "posts"
    write_post(root, "good.md", "良い記事", GOOD, tags=["検索"])
    (root / "broken-yaml.md").write_text('---\ntitle: "閉じていない\ntags: [a\n---\n本文。', encoding="utf-8")
    (root / "wrong-types.md").write_text('---\ntitle: 型違い\ntags: 42\ndate: "来週のどこか"\n---\n型の違う記事の本文です。',
                                         encoding="utf-8")
    (root / "binary.md").write_bytes(bytes(range(256)) * 8)
    (root / "empty.md").write_bytes(b"")
    (root / "fm-only.md").write_text("---\ntitle: 本文なし\n---\n", encoding="utf-8")
    (root / "huge.md").write_text("---\ntitle: 巨大\n---\n" + "とても長い記事の本文。" * 180_000, encoding="utf-8")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "self.md").symlink_to(root / "self.md")
    body = "---\ntitle: エンコーディング{n}\n---\n文字コード{n}の記事です。漢字とかなを含みます。"
    (root / "bom.md").write_bytes(codecs.BOM_UTF8 + body.format(n="BOM").encode("utf-8"))
    (root / "utf16.md").write_bytes(body.format(n="UTF16").encode("utf-16"))
    (root / "sjis.md").write_bytes(body.format(n="SJIS").encode("cp932"))
    rng = random.Random(7)
    (root / "garbage.md").write_bytes(bytes(rng.randrange(1, 256) for _ in range(4000)))

    rep = ingest(root, tmp_path / "idx", Settings(), embedder)
    skipped = {s["path"]: s["error"] for s in rep.skipped}
    assert "invalid YAML front matter" in skipped["broken-yaml.md"]
    assert "binary" in skipped["binary.md"]
    assert "empty file" in skipped["empty.md"]
    assert "no body text" in skipped["fm-only.md"]
    assert "too large" in skipped["huge.md"] and "RAG_MAX_POST_MB" in skipped["huge.md"]
    assert "link" in skipped["self.md"]
    assert "cannot decode" in skipped["garbage.md"]
    assert {w["path"] for w in rep.warnings} == {"wrong-types.md"}

    reader = IndexReader(tmp_path / "idx")
    ids = {r[0] for r in reader.conn.execute("SELECT post_id FROM posts")}
    assert ids == {"good", "wrong-types", "bom", "utf16", "sjis"}
    for n in ("BOM", "UTF16", "SJIS"):
        post = reader.post({"BOM": "bom", "UTF16": "utf16", "SJIS": "sjis"}[n])
        assert post["title"] == f"エンコーディング{n}"
        assert f"文字コード{n}の記事です。漢字とかなを含みます。" in post["chunks"][0]["text"]


def _rag(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _snapshot(index: Path) -> dict:
    """Posts, chunk texts and vectors of the live generation, for comparing two indexes."""
    reader = IndexReader(index)
    posts = {r["post_id"]: (r["title"], r["date"], r["content_hash"])
             for r in reader.conn.execute("SELECT * FROM posts")}
    chunks = {r["chunk_id"]: (r["text"], np.frombuffer(r["vector"], dtype=np.float32))
              for r in reader.conn.execute("SELECT chunk_id, text, vector FROM chunks")}
    assert reader.vectors.ntotal == len(chunks) == reader.n_chunks
    return {"posts": posts, "chunks": chunks}


@pytest.mark.slow
def test_sigkill_at_random_moments_keeps_previous_index(tmp_path):
    posts = tmp_path / "posts"
    posts.mkdir()
    all_posts = sorted(p for p in EXAMPLES.rglob("*.md") if "otel" not in p.name)
    first = all_posts[:8]
    for p in first:
        dest = posts / p.relative_to(EXAMPLES)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    idx = tmp_path / "idx"
    assert _rag("ingest", str(posts), "--index", str(idx), "--json").wait(timeout=300) == 0
    before = _snapshot(idx)
    gen_before = current_generation(idx)

    for p in all_posts[8:]:
        dest = posts / p.relative_to(EXAMPLES)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    rng = random.Random(1234)
    for delay in sorted(rng.uniform(0.3, 7.0) for _ in range(5)):
        proc = _rag("ingest", str(posts), "--index", str(idx), "--json")
        time.sleep(delay)
        if proc.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        s = _rag("search", "PostgreSQL インデックス", "--index", str(idx), "--json")
        out, err = s.communicate(timeout=120)
        assert s.returncode == 0, err
        assert isinstance(json.loads(out), list)
        if current_generation(idx) != gen_before:
            # killed after it published: the new generation is complete (checked by _snapshot)
            assert len(_snapshot(idx)["posts"]) > len(before["posts"])
            break
        # killed before publishing: the previous complete index answers, unchanged
        assert _snapshot(idx)["posts"] == before["posts"]

    done = _rag("ingest", str(posts), "--index", str(idx), "--json")
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    clean = tmp_path / "clean"
    c = _rag("ingest", str(posts), "--index", str(clean), "--json")
    assert c.wait(timeout=600) == 0
    a, b = _snapshot(idx), _snapshot(clean)
    assert a["posts"] == b["posts"]
    assert a["chunks"].keys() == b["chunks"].keys()
    for cid, (text, vec) in a["chunks"].items():
        assert text == b["chunks"][cid][0]
        # bf16 batches: a vector depends (by <1e-3) on which texts shared its batch, so "equal" is cosine
        assert float(vec @ b["chunks"][cid][1]) > 0.9999
    # leftovers of killed runs are cleaned up: only the live and previous generation remain
    assert len([p for p in idx.iterdir() if p.name.startswith("gen-")]) <= 2


@pytest.mark.slow
def test_two_ingests_at_once_one_fails_clearly(tmp_path):
    posts = tmp_path / "posts"
    shutil.copytree(EXAMPLES, posts)
    idx = tmp_path / "idx"
    a = _rag("ingest", str(posts), "--index", str(idx), "--json")
    time.sleep(1.0)  # the first holds the lock while it embeds
    b = _rag("ingest", str(posts), "--index", str(idx), "--json")
    out_b, err_b = b.communicate(timeout=300)
    out_a, err_a = a.communicate(timeout=600)
    assert a.returncode == 0, err_a
    assert b.returncode == 2 and "another ingest" in err_b
    rep = json.loads(out_a)
    reader = IndexReader(idx)
    assert reader.n_chunks == rep["chunks_total"] == reader.vectors.ntotal
    ok = sqlite3.connect(current_generation(idx) / "meta.sqlite").execute("PRAGMA integrity_check").fetchone()[0]
    assert ok == "ok"
