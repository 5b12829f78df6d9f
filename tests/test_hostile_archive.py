"""The hostile-archive run (issue 13): a folder with every bad post found in review beside good ones
ingests the good posts, lists each bad one with its reason, and leaves the previous index intact."""

import json

from rag.config import Settings
from rag.index import IndexReader, current_generation
from rag.ingest import ingest, report_json
from tests.conftest import write_post
from tests.hostile_archive import GOOD, MAX_POST_MB, build


def test_hostile_archive_ingests_good_posts_and_lists_each_bad_one(tmp_path, embedder):
    root, outside, idx = tmp_path / "posts", tmp_path / "outside", tmp_path / "idx"
    s = Settings(max_post_mb=MAX_POST_MB)
    # the previous index: posts that the hostile run must not lose
    write_post(root, "old/kept.md", "前からある記事", "前からある記事の本文です。消えてはいけません。")
    write_post(root, "bad/huge-int-title.md", "前の版", "この記事は前の版では正しく読めました。")
    first = ingest(root, idx, s, embedder)
    assert first.posts_added == 2 and not first.skipped

    expected = build(root, outside)
    rep = ingest(root, idx, s, embedder)
    print(report_json(rep))  # shown with -s; the closing note quotes it
    errors = {e["path"]: e["error"] for e in rep.skipped}
    assert set(errors) == set(expected), set(errors) ^ set(expected)
    for path, reason in expected.items():
        assert reason in errors[path], (path, errors[path])
        assert len(errors[path]) < 400, path
    assert sum(len(w["warning"]) for w in rep.warnings) < 2000
    assert rep.posts_added == len(GOOD) and rep.posts_removed == 0 and rep.posts_updated == 0

    reader = IndexReader(idx)
    for rel in GOOD:
        assert reader.post(rel.rsplit(".", 1)[0]) is not None, rel
    assert reader.post("old/kept") is not None
    kept = reader.post("bad/huge-int-title")  # unreadable now: the indexed version stays
    assert kept is not None and "前の版では正しく読めました" in kept["chunks"][0]["text"]
    texts = [r[0] for r in reader.conn.execute("SELECT text FROM chunks")]
    assert not any("do-not-index-me" in t for t in texts)
    json.loads(report_json(rep))  # the --json report stays valid JSON
    gen = current_generation(idx)

    # run again: same report, nothing to do, the same generation
    again = ingest(root, idx, s, embedder)
    assert {e["path"]: e["error"] for e in again.skipped} == errors
    assert again.posts_unchanged == len(GOOD) + 1 and current_generation(idx) == gen
