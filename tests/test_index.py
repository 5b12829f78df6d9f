"""Vector index choice by size: exact below the threshold, IVF-fp16 above it with tuned nprobe."""

import faiss
import numpy as np

from rag.index import build_vector_index


def clustered(n, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((50, d)).astype(np.float32)
    x = centers[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_small_archives_get_an_exact_index():
    x = clustered(500)
    index = build_vector_index(x, np.arange(10, 510, dtype=np.int64))
    assert not isinstance(index, faiss.IndexIVF)
    _, i = index.search(x[:1], 1)
    assert i[0][0] == 10


def test_large_archives_get_ivf_fp16_with_recall_target():
    x = clustered(6000)
    ids = np.arange(6000, dtype=np.int64) * 3
    index = build_vector_index(x, ids, exact_max=1000)
    assert isinstance(index, faiss.IndexIVFScalarQuantizer)
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    q = x[:100] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, truth = exact.search(q, 10)
    _, got = index.search(q, 10)
    recall = np.mean([len(set(ids[a]) & set(b)) / 10 for a, b in zip(truth, got)])
    assert recall >= 0.97
    # chunk ids can be reconstructed and removed (incremental ingest needs both)
    assert np.allclose(index.reconstruct(int(ids[5])), x[5], atol=1e-2)
    index.remove_ids(np.array([ids[0]], dtype=np.int64))
    assert index.ntotal == 5999
    sel = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(ids[:50]), nprobe=index.nprobe)
    _, only = index.search(x[:1], 5, params=sel)
    assert set(only[0]) <= set(ids[:50].tolist())
