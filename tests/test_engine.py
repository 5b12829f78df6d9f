"""The int8 engine of the bundled e5-small: an index records it, questions follow it, mixing is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def int8_index(tmp_path_factory):
    from rag.config import Settings
    from rag.embedding import E5SmallEmbedder
    from rag.ingest import ingest

    emb = E5SmallEmbedder(threads=2, engine="int8")
    d = tmp_path_factory.mktemp("int8-index")
    ingest(EXAMPLES, d, Settings(), emb)
    return d, emb


def _dense_hit5(retriever, questions) -> int:
    return sum(any(h.post_id in q["gold_posts"] for h in retriever.search(q["question"], 5, "dense"))
               for q in questions)


def test_int8_index_records_its_engine_and_retrieves_like_float(int8_index, retriever, settings):
    from rag.e5 import E5_NAME_INT8
    from rag.evaluation import load_questions
    from rag.index import IndexReader
    from rag.retrieval import Retriever

    d, emb = int8_index
    reader = IndexReader(d)
    assert reader.info["embedder"] == E5_NAME_INT8 and reader.info["engine"] == "int8"
    assert emb.query_engine == "torch"        # questions by the same engine as the documents
    r8 = Retriever(reader, emb, settings)
    qs = [q for q in load_questions(ROOT / "eval" / "questions.jsonl") if q["answerable"]]
    assert _dense_hit5(r8, qs) >= _dense_hit5(retriever, qs) - 2


def test_mixing_int8_and_float_is_refused(int8_index, embedder, sample_index, settings):
    from rag.index import UnusableIndex, IndexReader
    from rag.retrieval import Retriever

    d, emb8 = int8_index
    with pytest.raises(UnusableIndex, match="torch-dq-int8"):
        Retriever(IndexReader(d), embedder, settings)          # float questions on int8 documents
    with pytest.raises(UnusableIndex, match="torch-dq-int8"):
        Retriever(IndexReader(sample_index), emb8, settings)   # int8 questions on float documents


def rag(*args, env: dict) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    e.pop("RAG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=e,
                          timeout=900)


@pytest.mark.slow
def test_cli_prints_the_engine_and_auto_follows_the_index(int8_index, tmp_path):
    import shutil

    d = tmp_path / "idx"
    shutil.copytree(int8_index[0], d)
    env = {"RAG_INDEX_DIR": str(d), "RAG_ENGINE": "auto"}
    # whatever this CPU would pick, an int8 index is extended and searched in int8
    p = rag("ingest", str(EXAMPLES), "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert "documents on torch int8" in p.stderr and json.loads(p.stdout)["chunks_embedded"] == 0
    p = rag("search", "型カバレッジ", "--json", "--mode", "dense", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["post_id"] == "2019-05-14-python-type-hints"
    p = rag("search", "型カバレッジ", env={**env, "RAG_ENGINE": "fp32"})
    assert p.returncode != 0 and "torch-dq-int8" in p.stderr and "--rebuild" in p.stderr
    p = rag("ingest", str(EXAMPLES), "--rebuild", env={**env, "RAG_ENGINE": "bf16"})
    assert p.returncode == 0 and "documents on torch bf16 (set by RAG_ENGINE)" in p.stderr
