"""Ingest and index: incremental updates, atomic generations, the writer lock, embedder checks."""


import pytest

from rag.config import Settings
from rag.index import IndexBusy, IndexReader, UnusableIndex, WriterLock, current_generation
from rag.ingest import ingest
from tests.conftest import write_post

BODY_A = "## 概要\nRustの非同期ランタイムTokioについて書きます。タスクは軽量です。\n\n## 詳細\nワークスティーリングで負荷を分散します。"
BODY_B = "SQLiteはWALモードにすると読み込みと書き込みが並行できます。busy_timeoutも設定しましょう。"


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "posts"
    write_post(root, "a.md", "Tokio入門", BODY_A, date="2024-01-02", tags=["rust"], categories=["lang"])
    write_post(root, "sub/b.md", "SQLiteのWAL", BODY_B, date="2023-05-06", tags=["db"])
    return root


def test_incremental_add_update_remove(tiny, tmp_path, embedder):
    s = Settings()
    idx = tmp_path / "idx"
    r1 = ingest(tiny, idx, s, embedder)
    assert (r1.posts_seen, r1.posts_added, r1.posts_removed) == (2, 2, 0)
    assert r1.chunks_embedded == r1.chunks_total > 0

    r2 = ingest(tiny, idx, s, embedder)
    assert r2.chunks_embedded == 0 and r2.posts_unchanged == 2 and r2.posts_added == 0

    write_post(tiny, "sub/b.md", "SQLiteのWAL", BODY_B + "\n\n追記：checkpointの間隔も見直しました。", date="2023-05-06")
    r3 = ingest(tiny, idx, s, embedder)
    assert (r3.posts_updated, r3.posts_unchanged) == (1, 1)
    reader = IndexReader(idx)
    n_b = len(reader.post("sub/b")["chunks"])
    assert 0 < r3.chunks_embedded <= n_b
    assert "checkpoint" in " ".join(c["text"] for c in reader.post("sub/b")["chunks"])

    (tiny / "a.md").unlink()
    r4 = ingest(tiny, idx, s, embedder)
    assert r4.posts_removed == 1 and r4.chunks_embedded == 0
    reader = IndexReader(idx)
    assert reader.post("a") is None and reader.post("sub/b") is not None
    assert reader.vectors.ntotal == reader.n_chunks == r4.chunks_total


def test_metadata_is_stored_as_iso_and_ids_use_slashes(tiny, tmp_path, embedder):
    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    p = IndexReader(idx).post("sub/b")
    assert p["date"] == "2023-05-06" and p["tags"] == ["db"] and p["chunks"][0]["chunk_id"] == "sub/b#0"


def test_broken_post_is_skipped_and_old_version_kept(tiny, tmp_path, embedder):
    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    (tiny / "a.md").write_text('---\ntitle: "unclosed\n---\n本文', encoding="utf-8")
    (tiny / "c.md").write_bytes(b"\x00\x01\x02binary")
    rep = ingest(tiny, idx, Settings(), embedder)
    errors = {s["path"]: s["error"] for s in rep.skipped}
    assert "invalid YAML" in errors["a.md"] and "binary" in errors["c.md"]
    assert rep.posts_removed == 0
    assert IndexReader(idx).post("a") is not None  # nothing already indexed is lost


def test_failed_publish_leaves_previous_generation(tiny, tmp_path, embedder, monkeypatch):
    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    before = current_generation(idx)
    write_post(tiny, "new.md", "新しい記事", "新しい本文です。ここに内容があります。")
    import rag.index

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(rag.index.BM25Index, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ingest(tiny, idx, Settings(), embedder)
    assert current_generation(idx) == before
    assert [p.name for p in idx.iterdir() if p.name.startswith("gen-")] == [before.name]
    assert IndexReader(idx).post("new") is None
    monkeypatch.undo()
    rep = ingest(tiny, idx, Settings(), embedder)
    assert rep.posts_added == 1


def test_writer_lock_refuses_second_writer(tmp_path):
    with WriterLock(tmp_path):
        with pytest.raises(IndexBusy, match="another ingest"):
            with WriterLock(tmp_path, timeout=0.3):
                pass
    with WriterLock(tmp_path):
        pass


def test_changed_embedder_or_chunking_needs_rebuild(tiny, tmp_path, embedder):
    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    with pytest.raises(UnusableIndex, match="--rebuild"):
        ingest(tiny, idx, Settings(chunk_tokens=120), embedder)
    rep = ingest(tiny, idx, Settings(chunk_tokens=120), embedder, rebuild=True)
    assert rep.posts_added == 2
    # chunks whose text did not change keep their vectors (same embedder): nothing to re-embed here
    assert rep.chunks_embedded == 0
    assert IndexReader(idx).info["chunk_tokens"] == "120"


def test_sample_archive_report(sample_index):
    reader = IndexReader(sample_index)
    assert reader.n_chunks > 50
    assert reader.post("2024/otel-tracing") is None  # broken YAML in the sample, skipped
    draft = reader.post("2026-02-20-edge-cache-draft")
    assert draft["tags"] == [] and draft["date"] is None and len(draft["warnings"]) == 2
    retro = reader.post("2021-10-11-incident-retro")
    assert all("---END---" not in c["text"] for c in retro["chunks"])


def test_incremental_bm25_matches_a_rebuild(posts_copy, tmp_path, embedder):
    """An ingest that updates the previous BM25 (rows dropped, new ones appended) ranks and
    scores exactly like a full rebuild of the same archive."""
    from rag.retrieval import Retriever

    s = Settings()
    idx = tmp_path / "idx"
    assert ingest(posts_copy, idx, s, embedder).bm25 == "rebuilt"
    post = next(p for p in sorted(posts_copy.rglob("*.md")) if "postgres" in p.name)
    post.write_text(post.read_text(encoding="utf-8") + "\n\n追記：pg_stat_statementsで遅いクエリを毎週確認しています。\n",
                    encoding="utf-8")
    next(p for p in sorted(posts_copy.rglob("*.md")) if "remote" in p.name).unlink()
    write_post(posts_copy, "2026/new-post.md", "Zigで書くCLI", "Zigのcomptimeで設定ファイルの検証を書きました。", date="2026-03-01")
    rep = ingest(posts_copy, idx, s, embedder)
    assert rep.bm25 == "updated" and rep.posts_added == 1 and rep.posts_updated == 1 and rep.posts_removed == 1
    full = tmp_path / "full"
    ingest(posts_copy, full, s, embedder)
    inc_r, full_r = Retriever(IndexReader(idx), embedder, s), Retriever(IndexReader(full), embedder, s)
    assert inc_r.reader.n_chunks == full_r.reader.n_chunks
    for q in ("pg_stat_statements 遅いクエリ", "Zig comptime", "リモートワーク 会議", "インデックス レイテンシ"):
        a = [(h.chunk_id, round(h.score, 4)) for h in inc_r.search(q, k=5, mode="keyword")]
        b = [(h.chunk_id, round(h.score, 4)) for h in full_r.search(q, k=5, mode="keyword")]
        assert a == b, q
    assert ingest(posts_copy, idx, s, embedder, rebuild=True).bm25 == "rebuilt"


# ----------------------------------------------------------------------------- hardening (issue 13)

import os  # noqa: E402


def test_one_post_that_raises_anything_is_skipped(tiny, tmp_path, embedder, monkeypatch):
    """ValueError (a 5,000-digit title), RecursionError (3,000 nested brackets), or any exception from
    chunking one post: a skipped entry naming the file, never an aborted ingest."""
    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    (tiny / "huge.md").write_text("---\ntitle: " + "9" * 5000 + "\n---\n本文です。", encoding="utf-8")
    (tiny / "deep.md").write_text("---\ntags: " + "[" * 3000 + "\n---\n本文です。", encoding="utf-8")
    write_post(tiny, "a.md", "Tokio入門", BODY_A + "\n\n追記です。", date="2024-01-02")
    write_post(tiny, "new.md", "新しい記事", "新しい記事の本文です。内容があります。")
    import rag.ingest

    real = rag.ingest.chunk_post

    def chunk_or_fail(post, *a, **kw):
        if post.post_id == "a":
            raise IndexError("list index out of range (simulated chunker bug)")
        return real(post, *a, **kw)

    monkeypatch.setattr(rag.ingest, "chunk_post", chunk_or_fail)
    rep = ingest(tiny, idx, Settings(), embedder)
    errors = {s["path"]: s["error"] for s in rep.skipped}
    assert "Exceeds the limit" in errors["huge.md"] and "nested deeper" in errors["deep.md"]
    assert "IndexError" in errors["a.md"] and "simulated chunker bug" in errors["a.md"]
    assert (rep.posts_added, rep.posts_updated, rep.posts_removed) == (1, 0, 0)
    reader = IndexReader(idx)
    assert reader.post("new") is not None
    assert "追記" not in " ".join(c["text"] for c in reader.post("a")["chunks"])  # the old version stays


def test_empty_or_wrong_folder_does_not_wipe_the_index(tiny, tmp_path, embedder):
    """An unmounted mount point looks like an empty folder: removing most of the index needs
    --allow-mass-delete, and nothing changes without it."""
    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    before = current_generation(idx)
    empty = tmp_path / "mnt"
    empty.mkdir()
    with pytest.raises(UnusableIndex, match="--allow-mass-delete") as ei:
        ingest(empty, idx, Settings(), embedder)
    assert "2 of the 2 indexed posts" in str(ei.value) and str(empty) in str(ei.value)
    with pytest.raises(UnusableIndex, match="--allow-mass-delete"):
        ingest(empty, idx, Settings(), embedder, rebuild=True)
    assert current_generation(idx) == before and IndexReader(idx).post("a") is not None
    rep = ingest(empty, idx, Settings(), embedder, allow_mass_delete=True)
    assert rep.posts_removed == 2 and IndexReader(idx).n_chunks == 0


def test_posts_under_a_folder_that_cannot_be_listed_are_kept(tiny, tmp_path, embedder, monkeypatch):
    idx = tmp_path / "idx"
    write_post(tiny, "sub/c.md", "三つ目", "三つ目の記事の本文です。")
    ingest(tiny, idx, Settings(), embedder)
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(os.fspath(path)) == "sub":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rep = ingest(tiny, idx, Settings(), embedder)
    assert {s["path"]: s["error"] for s in rep.skipped} == {"sub": "cannot list directory: Permission denied"}
    assert rep.posts_removed == 0
    reader = IndexReader(idx)
    assert reader.post("sub/b") is not None and reader.post("sub/c") is not None


def test_duplicate_post_ids_are_reported_deterministically(tmp_path, embedder):
    """`a.markdown` and `a.md` share the id `a`: the second in name order is always the duplicate,
    even when the first cannot be parsed."""
    root = tmp_path / "posts"
    root.mkdir()
    (root / "a.markdown").write_text('---\ntitle: "broken\n---\n本文', encoding="utf-8")
    write_post(root, "a.md", "A", "本文です。内容があります。")
    write_post(root, "b.md", "B", "別の本文です。")
    idx = tmp_path / "idx"
    for _ in range(2):
        rep = ingest(root, idx, Settings(), embedder)
        errors = {s["path"]: s["error"] for s in rep.skipped}
        assert "invalid YAML" in errors["a.markdown"]
        assert errors["a.md"] == "duplicate post id 'a' (also a.markdown)"
    assert IndexReader(idx).post("a") is None and IndexReader(idx).post("b") is not None


def test_file_and_folder_links_out_of_the_archive_are_not_indexed(tmp_path, embedder):
    root = tmp_path / "posts"
    write_post(root, "ok.md", "普通の記事", "普通の記事の本文です。")
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.env").write_text("---\ntitle: secret\n---\nAPI_TOKEN=do-not-index-me\n")
    (home / "notes.md").write_text("---\ntitle: notes\n---\nprivate notes do-not-index-me\n")
    (root / "x.md").symlink_to(home / "secret.env")
    (root / "home").symlink_to(home, target_is_directory=True)
    idx = tmp_path / "idx"
    rep = ingest(root, idx, Settings(), embedder)
    errors = {s["path"]: s["error"] for s in rep.skipped}
    assert "outside the archive" in errors["x.md"] and "outside the archive" in errors["home"]
    reader = IndexReader(idx)
    texts = [r[0] for r in reader.conn.execute("SELECT text FROM chunks")]
    assert texts and not any("do-not-index-me" in t for t in texts)


def test_failed_writer_setup_leaves_no_generation_behind(tiny, tmp_path, embedder, monkeypatch):
    """The disk fills up while the new generation is being set up (before the ingest's own try):
    the half-made generation is removed and the live one is untouched."""
    import rag.index

    idx = tmp_path / "idx"
    ingest(tiny, idx, Settings(), embedder)
    before = current_generation(idx)
    write_post(tiny, "new.md", "新しい記事", "新しい記事の本文です。")

    def full(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rag.index, "connect", full)
    with pytest.raises(OSError, match="No space left"):
        ingest(tiny, idx, Settings(), embedder)
    monkeypatch.undo()
    assert [p.name for p in idx.iterdir() if p.name.startswith("gen-")] == [before.name]
    assert current_generation(idx) == before


@pytest.mark.parametrize("name", ["idx#1", "idx?mode=rw", "idx%20x"])
def test_index_path_with_uri_characters(tiny, tmp_path, embedder, name):
    """The read-only SQLite URI is percent-encoded: `#`, `?` and `%` in the index path open the right file."""
    idx = tmp_path / name
    ingest(tiny, idx, Settings(), embedder)
    write_post(tiny, "new.md", "新しい記事", "新しい記事の本文です。")
    assert ingest(tiny, idx, Settings(), embedder).posts_added == 1
    reader = IndexReader(idx)
    assert reader.post("new") is not None and reader.post("sub/b") is not None
    with pytest.raises(Exception, match="readonly"):
        reader.conn.execute("DELETE FROM posts")
