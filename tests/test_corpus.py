import codecs
from pathlib import Path

import pytest

from rag.corpus import (PostError, clean_body, decode_bytes, iter_post_files, parse_date, parse_post, read_post,
                        split_blocks, split_sentences)


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
    assert split_sentences("「はい。」と言った。") == ["「はい。」と言った。"]   # a quotation stays in its sentence


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


def test_a_code_block_showing_another_fence_stays_one_block():
    # a ``` inside a ~~~ block is code (CommonMark), so its blank line does not end the block
    body = "~~~md\n```\n\nx\n~~~\n\n本文です。\n```\n\n```"
    assert split_blocks(body) == ["~~~md\n```\n\nx\n~~~", "本文です。\n```\n\n```"]


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


@pytest.mark.parametrize("front, author, warned", [
    ('author: 楳茂都陸平', "楳茂都陸平", False),
    ('author:\n  name: Spiegel\n  url: https://example.org', "Spiegel", False),   # Hugo: [author] name = "…"
    ('author: [Alice, Bob]', "Alice, Bob", False),
    ('author:\n  url: https://example.org', None, True),                             # a table without a name
    ('author:\n  name: [1, 2]', None, True),
])
def test_author_as_text_a_table_or_a_list(front, author, warned):
    post = parse_post(f"---\ntitle: T\n{front}\n---\n本文です。", "x", "x.md")
    assert post.author == author
    assert any(w.startswith("author") for w in post.warnings) == warned


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


# ----------------------------------------------------------------------------- hardening (issue 13)

import os  # noqa: E402
import threading  # noqa: E402

HUGE_INT = "---\ntitle: " + "9" * 5000 + "\n---\n本文です。"
DEEP = "---\ntags: " + "[" * 3000 + "\n---\n本文です。"
ALIAS_BOMB = ("---\na: &a [\"xxxxxxxxxx\", \"xxxxxxxxxx\", \"xxxxxxxxxx\", \"xxxxxxxxxx\", \"xxxxxxxxxx\"]\n"
              "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
              "tags: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n---\n本文です。")


@pytest.mark.parametrize("text,match", [
    (HUGE_INT, "invalid YAML front matter: Exceeds the limit"),
    (DEEP, "nested deeper than 20 levels"),
    (ALIAS_BOMB, "anchors and aliases"),
])
def test_hostile_front_matter_is_a_post_error(text, match):
    """Python's int-string limit, deep nesting and YAML aliases are a PostError naming the problem,
    not a ValueError/RecursionError that stops an ingest, nor 100 KB of expanded warnings."""
    with pytest.raises(PostError, match=match):
        parse_post(text, "x", "x.md")


def test_warnings_quote_values_briefly():
    big = "v" * 50_000
    text = f'---\ntitle: T\ntags: {{"k": "{big}"}}\ncategories: [["{big}"], 1]\ndate: "{big}"\n---\n本文です。'
    post = parse_post(text, "x", "x.md")
    assert len(post.warnings) == 3
    assert all(len(w) < 300 for w in post.warnings), [len(w) for w in post.warnings]


def _outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "home" / "secret.env"
    secret.parent.mkdir()
    secret.write_text("---\ntitle: secret\n---\nAPI_TOKEN=do-not-index-me\n")
    return secret


def test_links_out_of_the_archive_and_special_files_are_refused(tmp_path: Path):
    root = tmp_path / "posts"
    (root / "inner").mkdir(parents=True)
    (root / "inner" / "ok.md").write_text("---\ntitle: ok\n---\n本文です。")
    secret = _outside_secret(tmp_path)
    (root / "x.md").symlink_to(secret)
    (root / "z.md").symlink_to("/dev/zero")
    (root / "outdir").symlink_to(secret.parent, target_is_directory=True)
    (root / "alias.md").symlink_to(root / "inner" / "ok.md")  # inside the archive: fine
    os.mkfifo(root / "fifo.md")
    found = {str(p.relative_to(root)): prob for p, prob in iter_post_files(root)}
    assert found["inner/ok.md"] is None and found["alias.md"] is None
    assert "outside the archive" in found["x.md"] and "outside the archive" in found["outdir"]
    assert found["z.md"] and found["fifo.md"] and "regular file" in found["fifo.md"]
    assert not any(k.startswith("outdir/") for k in found)


def test_read_post_never_blocks_on_a_fifo_nor_reads_past_the_limit(tmp_path: Path):
    root = tmp_path / "posts"
    root.mkdir()
    fifo = root / "fifo.md"
    os.mkfifo(fifo)
    out: list = []

    def read():
        try:
            read_post(fifo, root)
        except PostError as exc:
            out.append(str(exc))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():  # unblock the old behaviour's open() so the thread can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    assert not t.is_alive() and out and "regular file" in out[0]

    big = root / "big.md"
    big.write_bytes(b"---\ntitle: t\n---\n" + b"a" * 3000)
    with pytest.raises(PostError, match="too large"):
        read_post(big, root, max_bytes=1000)


def test_dedupe_checks_truncation_in_linear_comparisons(monkeypatch):
    """Thousands of distinct sentences sharing their first 12 characters: each sentence is compared
    with its sorted neighbour, not with the whole group (quadratic on a log-like post)."""
    import rag.corpus as corpus

    calls = [0]

    class Key(str):
        def startswith(self, *a):
            calls[0] += 1
            return str.startswith(self, *a)

        def endswith(self, *a):
            calls[0] += 1
            return str.endswith(self, *a)

    real = corpus.dedup_key
    monkeypatch.setattr(corpus, "dedup_key", lambda s: Key(real(s)))
    n = 3000
    body = "".join(f"ログの例としてエラーコード{i}番が発生しました。" for i in range(n))  # lengths differ
    out = clean_body(body)
    assert out.count("発生しました。") == n  # nothing was a duplicate
    assert calls[0] <= 4 * n, calls[0]
