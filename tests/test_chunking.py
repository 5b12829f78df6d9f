from rag.chunking import chunk_post, join_chunks
from rag.corpus import Post, split_sentences


def count(s: str) -> int:
    """One token per character: easy to reason about in hand-made cases."""
    return len(s)


def make(body: str, title: str = "題名") -> Post:
    return Post(post_id="p", path="p.md", title=title, body=body)


def test_sentences_are_never_split_when_they_fit():
    sents = [f"これは{i}番目の文です。" for i in range(30)]
    post = make("".join(sents))
    chunks = chunk_post(post, count, max_tokens=40, overlap_tokens=0)
    assert len(chunks) > 3
    for c in chunks:
        assert len(c.text) <= 40
        assert c.text.endswith("。")
        assert all(s in "".join(sents) for s in split_sentences(c.text))
    assert "".join(c.text for c in chunks) == "".join(sents)


def test_overlap_repeats_whole_trailing_sentences():
    post = make("".join(f"文{i:02d}はここ。" for i in range(20)))  # 8 chars each
    chunks = chunk_post(post, count, max_tokens=40, overlap_tokens=10)
    for a, b in zip(chunks, chunks[1:]):
        last = split_sentences(a.text)[-1]
        assert b.text.startswith(last)


def test_long_sentence_is_cut_to_budget():
    post = make("あ" * 100 + "。")
    chunks = chunk_post(post, count, max_tokens=30, overlap_tokens=0)
    assert all(c.tokens <= 30 for c in chunks)
    assert "".join(c.text for c in chunks) == "あ" * 100 + "。"


def test_headings_stay_with_their_text_and_title_is_embedded():
    body = "前書きの文。\n\n## 導入\n導入の本文です。\n\n## 結果\n結果の本文です。"
    chunks = chunk_post(make(body, title="記事の題"), count, max_tokens=200)
    texts = [c.text for c in chunks]
    assert texts[0] == "前書きの文。"
    assert texts[1].startswith("## 導入\n") and "導入の本文" in texts[1]
    assert texts[2].startswith("## 結果\n") and "結果の本文" in texts[2]
    assert all(c.embed_text.startswith("記事の題\n") for c in chunks)
    assert [c.chunk_id for c in chunks] == ["p#0", "p#1", "p#2"]


def test_real_token_counter_budget(embedder):
    body = "。".join(["全文検索では形態素解析と文字バイグラムを組み合わせることが多い"] * 40) + "。"
    chunks = chunk_post(make(body), embedder.count_tokens, max_tokens=120, overlap_tokens=20)
    assert len(chunks) > 3
    assert all(c.tokens <= 125 for c in chunks)


def test_hard_split_of_a_2mb_line_measures_linear_text():
    """A 2 MB line without sentence breaks (a base64 image): the text handed to the token counter
    grows linearly with the line, not quadratically."""
    from rag.chunking import _hard_split

    measured = [0]

    def count(text: str) -> int:
        measured[0] += len(text)
        return len(text) // 4 + 1

    line = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk" * 40_000)[:2_000_000]
    pieces = _hard_split(line, 200, count)
    assert "".join(pieces) == line and all(count(p) <= 200 for p in pieces)
    assert measured[0] < 30 * len(line), measured[0]


def test_join_chunks_gives_the_text_back_once():
    intro = "".join(f"導入{i:02d}の文。" for i in range(12))  # 8 chars each
    section = "".join(f"本文{i:02d}の文。" for i in range(12))
    post = make(f"{intro}\n\n## 見出し\n\n{section}\n\n## 次\n\n短い。")
    chunks = chunk_post(post, count, max_tokens=40, overlap_tokens=16)
    assert len(chunks) > 6 and any(c.text.startswith("## 見出し\n本文") for c in chunks[2:])
    text = join_chunks([c.text for c in chunks])
    assert text == f"{intro}\n\n## 見出し\n{section}\n\n## 次\n短い。"
    no_overlap = chunk_post(post, count, max_tokens=40, overlap_tokens=0)
    assert join_chunks([c.text for c in no_overlap]).replace("\n", "") == text.replace("\n", "")
    assert join_chunks([]) == ""


def test_chunk_units_are_cut_as_before_quotation_aware_sentences():
    # the answerer reads 「…。」と書いた。 as one sentence; chunk boundaries stay where indexes have them
    from rag.chunking import _units

    assert _units("「引用です。」と書いた。次の文。") == ["「引用です。」", "と書いた。", "次の文。\n"]
