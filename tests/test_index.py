"""Vector index choice by size: exact below the threshold, IVF-fp16 above it with tuned nprobe."""

import faiss
import numpy as np

from rag.index import build_vector_index, search_vectors, tune_nprobe


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
    # tuning compares chunk ids with chunk ids: it stops well before scanning every list
    assert index.nprobe <= index.nlist // 4, (index.nprobe, index.nlist)
    # chunk ids can be reconstructed and removed (incremental ingest needs both)
    assert np.allclose(index.reconstruct(int(ids[5])), x[5], atol=1e-2)
    index.remove_ids(np.array([ids[0]], dtype=np.int64))
    assert index.ntotal == 5999
    # a narrow filter still gets k results: the filtered search widens nprobe when it must
    allowed = ids[1:51]
    exact_allowed = faiss.IndexFlatIP(x.shape[1])
    exact_allowed.add(x[1:51])
    for qi in range(0, 6000, 600):
        scores, only = search_vectors(index, x[qi:qi + 1], 5, allowed)
        assert len(only) == 5 and set(only.tolist()) <= set(allowed.tolist())
        _, want = exact_allowed.search(x[qi:qi + 1], 5)
        assert len(set(only.tolist()) & set(allowed[want[0]].tolist())) >= 4
    assert len(search_vectors(index, x[:1], 10, ids[1:4])[1]) == 3
    assert len(search_vectors(index, x[:1], 10, ids[:0])[1]) == 0


def test_tuned_nprobe_reaches_the_recall_target_it_reports():
    x = clustered(4000, d=32, seed=3)
    ids = np.arange(4000, dtype=np.int64) + 1  # chunk ids start at 1, not at the row position
    index = build_vector_index(x, ids, exact_max=100)
    recall = tune_nprobe(index, x, ids)
    assert recall >= 0.98 and index.nprobe < index.nlist
    index.nprobe = 1
    assert tune_nprobe(index, x, ids) == recall  # deterministic: same sample, same answer


def test_wide_filters_on_ivf_widen_nprobe_until_k_results(monkeypatch):
    import rag.index

    x = clustered(6000)
    ids = np.arange(6000, dtype=np.int64) * 3
    index = build_vector_index(x, ids, exact_max=1000)
    monkeypatch.setattr(rag.index, "FILTER_EXACT_MAX", 10)  # force the IVF path for a 50-id filter
    index.nprobe = 1
    for qi in (0, 1234, 4321):
        _, got = search_vectors(index, x[qi:qi + 1], 5, ids[1:51])
        assert (got >= 0).sum() == 5 and set(got.tolist()) <= set(ids[1:51].tolist())
