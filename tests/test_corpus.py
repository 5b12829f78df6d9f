import codecs
from pathlib import Path

import pytest

from rag.corpus import (PostError, clean_body, decode_bytes, iter_post_files, parse_date, parse_post, read_post,
                        split_sentences)


def test_parse_date_forms():
    import datetime as dt

    assert parse_date("2025-10-11 01:59:47 +0000") == "2025-10-11T01:59:47+00:00"
    assert parse_date(dt.date(2023, 4, 5)) == "2023-04-05"
    assert parse_date("2022-07-01T09:30:00+09:00") == "2022-07-01T09:30:00+09:00"
    assert parse_date("2021/03/04") == "2021-03-04"
    assert parse_date("来週のどこか") is None
    assert parse_date(42) is None


def test_split_sentences_japanese_and_english():
    assert split_sentences("今日は晴れ。明日は雨！本当？ Yes! ok") == ["今日は晴れ。", "明日は雨！", "本当？", " Yes!", " ok"]
    assert split_sentences("「はい。」と言った。") == ["「はい。」", "と言った。"]


def test_clean_body_drops_end_markers_repeats_and_truncated_copies():
    a = "この段落は何度も繰り返される長い段落です。二文目もあります。"
    full = "途中で切れた段落の完全な版はここにあります。最後まで読めます。"
    body = "\n\n".join([a, "---END---", full[:15], a, "別の内容の段落で、これは残るべき文章です。", full, a])
    out = clean_body(body)
    assert "END" not in out
    assert out.count("この段落は何度も繰り返される長い段落です。") == 1
    assert out.count("途中で切れた段落の完全な版") == 1
    assert "最後まで読めます。" in out
    assert "別の内容の段落で" in out


def test_code_blocks_and_short_repeats_are_kept():
    body = "```\nx = 1\n\ny = 2\n```\n\nはい。\n\nはい。"
    out = clean_body(body)
    assert "x = 1\n\ny = 2" in out
    assert out.count("はい。") == 2  # too short to call a duplicate


def test_reference_post_loses_its_repetition(shared_dir):
    path = shared_dir / "corpus" / "2025-10-11-beyond-ai.md"
    post = read_post(path, path.parent)
    raw_body = path.read_text(encoding="utf-8").split("---", 2)[2]
    removed = 1 - len(post.body) / len(raw_body)
    assert 0.35 < removed < 0.6, removed
    assert "---END---" not in post.body
    assert post.date == "2025-10-11T01:59:47+00:00"
    assert post.tags[:2] == ["xAI", "LLM"]
    # each long sentence is indexed once
    sents = [s for s in split_sentences(post.body) if len(s) > 20]
    assert len(sents) == len(set(sents))


def test_wrong_types_are_dropped_with_warnings():
    text = '---\ntitle: T\ntags: 42\ndate: "来週のどこか"\ncategories: [a, b]\n---\n本文です。'
    post = parse_post(text, "x", "x.md")
    assert post.tags == [] and post.date is None and post.categories == ["a", "b"]
    assert any(w.startswith("tags:") for w in post.warnings)
    assert any(w.startswith("date:") for w in post.warnings)


@pytest.mark.parametrize("text,match", [
    ('---\ntitle: "unclosed\ntags: [a\n---\n本文', "invalid YAML front matter"),
    ("---\ntitle: x\n---\n\n", "no body text"),
    ("---\ntitle: x\n本文だけで閉じていない", "no closing"),
    ("---\n- a\n- b\n---\n本文", "mapping"),
])
def test_bad_front_matter_errors(text, match):
    with pytest.raises(PostError, match=match):
        parse_post(text, "x", "x.md")


def test_decodings():
    s = "---\ntitle: 日本語\n---\n全文検索の話。"
    assert decode_bytes(codecs.BOM_UTF8 + s.encode()) == s
    assert decode_bytes(s.encode("utf-16")) == s
    assert decode_bytes(s.encode("cp932")) == s
    with pytest.raises(PostError, match="binary"):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR")
    with pytest.raises(PostError, match="empty"):
        decode_bytes(b"  \n")


def test_iter_post_files_handles_links(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "p.md").write_text("x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "missing.md")
    (tmp_path / "q.markdown").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    found = {str(p.relative_to(tmp_path)): prob for p, prob in iter_post_files(tmp_path)}
    assert set(found) == {"a/p.md", "dangling.md", "q.markdown"}
    assert found["a/p.md"] is None and found["dangling.md"]
