import math

import numpy as np
import pytest

from rag.keyword import BM25Index, bigram_tokens, fugashi_tokens, get_tokenizer, sudachi_tokens


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


def test_best_row_share_is_the_most_of_the_terms_one_row_holds():
    bm = BM25Index.build([["a", "b"], ["a", "c", "d"], ["b"]])
    assert bm.best_row_share(["a", "c", "d"]) == 1.0        # row 1 holds all three
    assert bm.best_row_share(["a", "b", "c", "z"]) == 0.5   # row 0 (a, b) or row 1 (a, c); z held nowhere
    assert bm.best_row_share(["z"]) == 0.0
