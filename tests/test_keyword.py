import math

import numpy as np
import pytest

from rag.keyword import (BM25Index, asked_count, asked_focus, bigram_tokens, fugashi_tokens, get_tokenizer, katakana_names,
                         question_names, sudachi_tokens)


def test_bigram_tokens():
    assert bigram_tokens("東京都のAPI") == ["東京", "京都", "都の", "api"]
    assert bigram_tokens("ＡＢＣ１２３") == ["abc123"]  # NFKC folds full width
    assert bigram_tokens("猫") == ["猫"]


def test_morphological_tokenizers_drop_particles():
    toks = fugashi_tokens("形態素解析を使って検索する")
    assert "を" not in toks and "解析" in toks
    st = sudachi_tokens("形態素解析を使って検索する")
    assert "を" not in st and "検索" in st


def test_unknown_tokenizer_named():
    with pytest.raises(ValueError, match="nope"):
        get_tokenizer("nope")


def test_bm25_hand_computed():
    docs = [["a", "b"], ["a", "a", "c", "d"], ["e"]]
    bm = BM25Index.build(docs, k1=1.2, b=0.75)
    avgdl = 7 / 3
    idf_a = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    w0 = 1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / avgdl))
    w1 = 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 4 / avgdl))
    s = bm.scores(["a"])
    assert s[0] == pytest.approx(idf_a * w0, rel=1e-5)
    assert s[1] == pytest.approx(idf_a * w1, rel=1e-5)
    assert s[2] == 0
    # zero-score documents are never returned
    assert [r for r, _ in bm.search(["a"], 10)] == [1, 0]
    assert bm.search(["zzz"], 10) == []
    # a row mask restricts before ranking
    assert [r for r, _ in bm.search(["a"], 10, allowed=np.array([True, False, True]))] == [0]


def test_question_names_are_proper_nouns_quoted_terms_and_latin_names():
    assert question_names("国崎町の女性は何の事業に従事することが多いですか?") == ["国崎"]
    assert question_names("「Raven-II」はGraphQLとiOSとEC2とQAとRubyのどれ？") == ["Raven-II", "GraphQL", "iOS", "EC2"]
    assert question_names("その記事のタグは？") == []
    assert question_names("Which Tokyo team adopted GraphQL?") == []   # English: its words may be 東京 in a post


def test_katakana_names_are_dotted_runs_that_hold_a_proper_noun_or_an_unknown_word():
    assert katakana_names("イートン・カレッジとケンブリッジ") == ["イートン・カレッジ"]   # イートン: 固有名詞
    assert katakana_names("A・フィミスター・プロクターが制作") == ["フィミスター・プロクター"]
    # dotted common nouns are compounds a post may spell otherwise (ユーザインタフェース); an unknown word
    # alone may be a tech term a post writes in English (transpiler); known compounds are coined freely
    assert katakana_names("ドメイン・モデルとユーザー・インターフェースとテスト・デプロイ・監視") == []
    assert katakana_names("キンティンスヒルとトランスパイラーとフルネームとサフランパン") == []
    assert question_names("「ｲｰﾄﾝ･ｶﾚｯｼﾞ」の卒業生は？") == ["イートン", "イートン・カレッジ"]   # once, folded
    assert question_names("ルイス・クラーク探検隊は？") == ["ルイス", "クラーク", "ルイス・クラーク"]


@pytest.mark.parametrize("q,counter", [
    ("関西Ruby会議09 の参加定員は何名ですか？", "名"), ("参加者は何人でしたか？", "人"),
    ("サポートは何年間提供される契約ですか？", "年間"), ("Ruby 4.0.0 では何ファイルが変更されましたか？", "ファイル"),
    ("キースイッチは何個使いましたか？", "個"), ("シェアは何%ですか？", "%"), ("何キロですか？", "キロ"),
    ("リリースは何年何月何日でしたか？", None),         # when, not how many: a post may write 2024-08-01
    ("天守は何時代に建てられましたか？", None),          # 時代: one noun, an era not a count
    ("谷田川の下流には何台地がありますか？", None),      # 台 + 地: a word, not a count
    ("日本で最後になったのは何テーブルの様式ですか？", None),   # 何X の Y: what kind of X
    ("アルマデンの語源は何語？", None), ("なぜ遅くなったのですか？", None), ("How many files changed?", None),
])
def test_asked_count_is_the_counter_of_a_how_many_question(q, counter):
    assert asked_count(q) == counter


@pytest.mark.parametrize("q,focus", [
    ("まつもとさんが FSF 2011 Free Software Award を受け取った授賞式はどこで開かれましたか？", "授賞式"),
    ("RubyKaigi 2014 の一般価格（EarlyBird ではない通常のチケット）はいくらでしたか？", "一般価格"),  # aside left out
    ("フリードリヒ2世の母親は、誰か?", "母親"), ("関西Ruby会議09 の参加定員は何名ですか？", "参加定員"),
    ("第3回の会場はどこ？", "会場"), ("第6回大賞は誰が受賞しましたか？", "大賞"),   # a number and its counter end it
    ("RubyKaigiなどの会場はどこ？", "会場"), ("CVSS スコアはいくつですか？", "CVSS スコア"),
    ("会場はいつも満員でしたか？", None),                     # いつも: always, no question word
    ("GC はどう動きますか？", None),                          # a Latin name alone: question_names' to check
    ("第6回大賞で大賞を受賞したのはどの作品ですか？", None),   # 受賞したの: no noun before は
    ("GraphQLとは何ですか？", None), ("p95はどれくらい下がった？", None),   # とは; a number ends the run
    ("いつ公開されましたか？", None), ("When was it held?", None),
])
def test_asked_focus_is_the_noun_the_question_word_is_asked_of(q, focus):
    assert asked_focus(q) == focus


def test_rows_with_all_and_latin_pieces():
    bm = BM25Index.build([["a", "b"], ["a", "c"], ["b", "c", "muses-cn"], ["日本"]])
    assert bm.rows_with_all(["a", "c"]).tolist() == [1]
    assert sorted(bm.rows_with_all(["c"]).tolist()) == [1, 2]
    assert bm.rows_with_all(["a", "zzz"]).size == 0 and bm.rows_with_all([]).size == 0
    assert bm.latin_pieces == {"a", "b", "c", "muses", "cn"}


def test_bm25_save_load(tmp_path):
    bm = BM25Index.build([["x", "y"], ["y"]])
    bm.save(tmp_path)
    bm2 = BM25Index.load(tmp_path)
    assert np.allclose(bm.scores(["y", "x"]), bm2.scores(["y", "x"]))


def test_bm25_batches_do_not_change_scores():
    docs = [["a", "b", "a"], ["c"], [], ["b", "c", "d", "d"], ["a"]]
    one = BM25Index.build(docs, batch=100)
    many = BM25Index.build(iter(docs), batch=2)  # any iterable, streamed in batches
    assert one.vocab == many.vocab and one.nnz == many.nnz == 7  # distinct (doc, term) pairs: 2+1+0+3+1
    for q in (["a"], ["b", "d"], ["c", "a", "zzz"]):
        assert np.array_equal(one.scores(q), many.scores(q))
    # rows inside each posting list stay ascending (CSC with sorted indices)
    for j in range(len(one.vocab)):
        rows = one.indices[one.indptr[j]:one.indptr[j + 1]]
        assert list(rows) == sorted(rows)


def test_bm25_empty():
    assert BM25Index.build([]).search(["a"], 5) == []
    bm = BM25Index.build([[], []])
    assert bm.n_docs == 2 and bm.search(["a"], 5) == []


def test_bm25_load_is_memory_mapped(tmp_path):
    bm = BM25Index.build([["x", "y"], ["y", "z"], ["z"]])
    bm.save(tmp_path)
    mapped = BM25Index.load(tmp_path)
    assert isinstance(mapped.indices, np.memmap) and isinstance(mapped.data, np.memmap)
    assert mapped.search(["z", "y"], 3) == bm.search(["z", "y"], 3)
    assert not isinstance(BM25Index.load(tmp_path, mmap=False).data, np.memmap)


@pytest.mark.parametrize("keep", [[True, True, True, True, True], [True, False, True, False, True],
                                  [False, False, False, False, False]])
def test_bm25_update_equals_a_full_rebuild(keep, tmp_path):
    docs = [["a", "b", "a"], ["only-here", "c"], [], ["b", "c", "d", "d"], ["a", "e"]]
    new_docs = [["d", "new", "a"], ["b"], ["new", "new", "c"]]
    full = BM25Index.build([d for d, k in zip(docs, keep) if k] + new_docs)
    old = BM25Index.build(docs)
    old.save(tmp_path)
    inc = BM25Index.load(tmp_path).updated(np.array(keep), new_docs)  # from the memory-mapped files
    assert set(inc.vocab) == set(full.vocab) and inc.n_docs == full.n_docs and inc.nnz == full.nnz
    for t in full.vocab:
        assert inc.idf[inc.vocab[t]] == pytest.approx(full.idf[full.vocab[t]])
    for q in (["a"], ["b", "d"], ["new", "c", "zzz"], ["only-here"], ["e", "a", "a"]):
        assert np.allclose(inc.scores(q), full.scores(q))
        assert inc.search(q, 3) == full.search(q, 3) or np.allclose([s for _, s in inc.search(q, 3)],
                                                                    [s for _, s in full.search(q, 3)])
    inc.save(tmp_path)  # and it updates again
    again = BM25Index.load(tmp_path).updated(np.ones(inc.n_docs, dtype=bool), [["a"]])
    assert np.allclose(again.scores(["a"]), BM25Index.build(
        [d for d, k in zip(docs, keep) if k] + new_docs + [["a"]]).scores(["a"]))
