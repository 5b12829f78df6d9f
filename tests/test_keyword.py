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


def test_bm25_save_load(tmp_path):
    bm = BM25Index.build([["x", "y"], ["y"]])
    bm.save(tmp_path)
    bm2 = BM25Index.load(tmp_path)
    assert np.allclose(bm.scores(["y", "x"]), bm2.scores(["y", "x"]))
