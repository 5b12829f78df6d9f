"""Development measurement: keyword tokenizers and fusion weights on an existing index.

Usage: python eval/tune_retrieval.py QUESTIONS --index DIR [--tokenizers a,b] [--weights 1:1,1:2]

Rebuilds the BM25 side in memory for each tokenizer (no re-embedding), embeds each question once,
and prints hit@1/hit@5/MRR@10 for keyword-only, dense-only and each fused weighting, so that the
defaults in rag/config.py can be chosen by measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.api import open_retriever  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.evaluation import load_questions, relevance, retrieval_metrics  # noqa: E402
from rag.keyword import BM25Index, get_tokenizer  # noqa: E402
from rag.retrieval import fused_keyword_hits, score_fusion, weighted_rrf  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions")
    ap.add_argument("--index", required=True)
    ap.add_argument("--tokenizers", default="bigram,fugashi,sudachi,fugashi+bigram")
    ap.add_argument("--weights", default="1:1,1:2,1:3,2:1")
    ap.add_argument("--rrf-k", default="60", help="comma-separated k values for RRF")
    ap.add_argument("--alphas", default="", help="comma-separated keyword weights for score fusion (dense = 1 - a)")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--json", action="store_true", help="also print all figures as one JSON object")
    args = ap.parse_args()
    retriever = open_retriever(load_settings(index_dir=args.index), long_lived=True)
    reader, emb = retriever.reader, retriever.embedder
    qs = [q for q in load_questions(args.questions) if q["answerable"]]
    rows = reader.conn.execute("SELECT id, post_id, text, embed_text FROM chunks ORDER BY id").fetchall()
    ids = np.asarray([r[0] for r in rows])
    post_of = {r[0]: r[1] for r in rows}
    text_of = {r[0]: r[2] for r in rows}
    n = args.candidates

    t = time.perf_counter()
    dense = []
    for q in qs:
        d, i = reader.vectors.search(emb.embed_query(q["question"]).reshape(1, -1), n)
        dense.append([(int(x), float(y)) for x, y in zip(i[0], d[0]) if x >= 0])
    print(f"dense: {len(qs)} queries in {time.perf_counter() - t:.1f}s", file=sys.stderr)

    def score(rankings):
        rels = [relevance([post_of[c] for c in r[:10]], [text_of[c] for c in r[:10]], q["gold_posts"], q["answers"])
                for q, r in zip(qs, rankings)]
        m = retrieval_metrics(rels)
        return {k: round(m[k], 4) for k in ("hit@1", "hit@5", "mrr@10")}

    results = {"dense": score([[d for d, _ in r] for r in dense])}
    print("dense", results["dense"])
    for name in args.tokenizers.split(","):
        tok = get_tokenizer(name)
        t = time.perf_counter()
        bm = BM25Index.build([tok(r[3]) for r in rows])
        build_s = time.perf_counter() - t
        kw = []
        t = time.perf_counter()
        for q in qs:
            kw.append([(int(ids[r]), sc) for r, sc in bm.search(tok(q["question"]), n)])
        q_ms = (time.perf_counter() - t) * 1000 / len(qs)
        results[f"keyword[{name}]"] = score([[d for d, _ in r] for r in kw])
        print(f"keyword[{name}] build {build_s:.1f}s, {q_ms:.1f} ms/query", results[f"keyword[{name}]"])
        kw = [fused_keyword_hits(q["question"], k, d) for q, d, k in zip(qs, dense, kw)]   # as search fuses
        for rk in (int(x) for x in args.rrf_k.split(",")):
            for w in args.weights.split(","):
                wd, wk = (float(x) for x in w.split(":"))
                fused = [[d for d, _ in weighted_rrf([[x for x, _ in a], [x for x, _ in b]], [wd, wk], rk)]
                         for a, b in zip(dense, kw)]
                key = f"rrf[{name}, k={rk}, dense:kw={w}]"
                results[key] = score(fused)
                print(" ", key, results[key])
        for a in (float(x) for x in args.alphas.split(",") if x):
            fused = [[d for d, _ in score_fusion([dd, kk], [1 - a, a])] for dd, kk in zip(dense, kw)]
            key = f"score[{name}, kw={a}]"
            results[key] = score(fused)
            print(" ", key, results[key])
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
