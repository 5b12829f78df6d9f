"""End to end through the `rag` command: ingest the sample archive, search, show, edit, delete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def rag(*args, env=None, check=True) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=e, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"rag {args} failed ({p.returncode}): {p.stderr}")
    return p


def test_ingest_search_edit_delete(posts_copy: Path, tmp_path: Path):
    idx = str(tmp_path / "idx")
    first = json.loads(rag("ingest", str(posts_copy), "--index", idx, "--json").stdout)
    assert set(first) >= {"posts_seen", "posts_added", "posts_updated", "posts_removed", "posts_unchanged",
                          "chunks_embedded", "chunks_total", "skipped", "warnings", "seconds"}
    assert first["posts_seen"] == 28 and first["posts_added"] == 27
    assert [s["path"] for s in first["skipped"]] == ["2024/otel-tracing.md"]
    assert {w["path"] for w in first["warnings"]} == {"2026-02-20-edge-cache-draft.md"}

    again = json.loads(rag("ingest", str(posts_copy), "--index", idx, "--json").stdout)
    assert again["chunks_embedded"] == 0 and again["posts_unchanged"] == 27

    hits = json.loads(rag("search", "通知サーバーhibikiをTokioで書き直した話", "--index", idx, "--json", "-k", "3").stdout)
    assert hits and set(hits[0]) == {"rank", "post_id", "title", "date", "url", "chunk_id", "text", "score"}
    assert hits[0]["post_id"] == "2024/rust-async-intro" and hits[0]["rank"] == 1

    shown = json.loads(rag("show", "2024/rust-async-intro", "--index", idx, "--json").stdout)
    assert set(shown) == {"post_id", "title", "date", "tags", "categories", "url", "chunks"}
    assert shown["chunks"][0]["chunk_id"] == "2024/rust-async-intro#0"

    # edit one post: only that post is re-embedded
    p = posts_copy / "2024" / "rust-async-intro.md"
    p.write_text(p.read_text(encoding="utf-8") + "\n\n## 追記\nランタイムの設定名はkumo-runtimeに変更しました。\n",
                 encoding="utf-8")
    edited = json.loads(rag("ingest", str(posts_copy), "--index", idx, "--json").stdout)
    assert edited["posts_updated"] == 1 and edited["posts_unchanged"] == 26
    n_chunks = len(json.loads(rag("show", "2024/rust-async-intro", "--index", idx, "--json").stdout)["chunks"])
    assert 0 < edited["chunks_embedded"] <= n_chunks
    found = json.loads(rag("search", "kumo-runtime", "--index", idx, "--json", "--mode", "keyword").stdout)
    assert found[0]["post_id"] == "2024/rust-async-intro"

    # delete one: gone from results
    p.unlink()
    removed = json.loads(rag("ingest", str(posts_copy), "--index", idx, "--json").stdout)
    assert removed["posts_removed"] == 1
    after = json.loads(rag("search", "通知サーバーhibikiをTokioで書き直した話", "--index", idx, "--json", "-k", "10").stdout)
    assert all(h["post_id"] != "2024/rust-async-intro" for h in after)
    missing = rag("show", "2024/rust-async-intro", "--index", idx, check=False)
    assert missing.returncode == 1 and "no post" in missing.stderr


def test_index_dir_from_env_and_clear_errors(tmp_path: Path):
    out = rag("search", "x", env={"RAG_INDEX_DIR": str(tmp_path / "none")}, check=False)
    assert out.returncode == 2 and "no index at" in out.stderr and "Traceback" not in out.stderr
    bad = rag("search", "x", "--since", "yesterday", "--index", str(tmp_path), check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr
    nofolder = rag("ingest", str(tmp_path / "nope"), "--index", str(tmp_path / "i"), check=False)
    assert nofolder.returncode == 2 and "posts folder not found" in nofolder.stderr
