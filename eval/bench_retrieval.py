"""Benchmark: query latency, build time and memory of the real index at 1k, 10k, 100k and 1M chunks.

Usage: python eval/bench_retrieval.py --from-index DIR [--sizes 1000,10000,100000,1000000]
                                      [--questions FILE] [--queries 100] [--workdir DIR] [--json]

For each size an index is written through the product's own GenerationWriter (SQLite, FAISS chosen
by size, BM25), from chunks synthesized out of a real index (DIR, e.g. the JaQuAD posts ingested):
below the source's size its chunks are taken as they are; above it each synthetic chunk joins the
first half of one real chunk with the second half of another (text, keyword tokens) and averages
their vectors plus a little noise. On JaQuAD that keeps the real vectors' geometry (median cosine to
the nearest other chunk 0.934 vs 0.933 real; between random pairs 0.84 vs 0.78, i.e. a little more
crowded, which is harder for IVF), and posting lists grow like a real archive's.

Each size is then measured in a fresh process that opens the index as `rag serve` would and runs
real questions through `Retriever.search` (query embedding, dense search, BM25, fusion, SQLite rows)
and through `Assistant.stream` in extractive mode (time to the first answer token). Memory is the
process's resident set after the queries, split into anonymous memory and file-backed (memory-mapped
index files, shared between processes and evictable). Dense recall@10 of the chosen FAISS index is
measured against exact search with the same real query vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_QUESTIONS = [ROOT.parent / "shared/bench/jaquad/eval-questions.jsonl", ROOT / "eval/questions.jsonl"]


def pct(xs, q) -> float:
    return round(float(np.percentile(np.asarray(xs, dtype=np.float64), q)), 2)


def proc_memory() -> dict:
    """Resident memory of this process in MB: total, anonymous, file-backed, and the peak."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = round(int(val.split()[0]) / 1024)
    return out


def mapped_mb(prefix: Path) -> int:
    """Resident MB of this process's memory-mapped files under `prefix` (the index's own pages)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].startswith(str(prefix))
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return round(total / 1024)


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


# ---------------------------------------------------------------- building
def load_source(src: Path):
    from rag.index import IndexReader

    r = IndexReader(src)
    rows = r.conn.execute("SELECT c.text, c.keyword_tokens, c.vector, c.n_tokens, p.title FROM chunks c "
                          "JOIN posts p ON p.post_id = c.post_id ORDER BY c.id").fetchall()
    texts = [x[0] for x in rows]
    toks = [x[1].split("\x1f") if x[1] else [] for x in rows]
    vecs = np.vstack([np.frombuffer(x[2], dtype=np.float32) for x in rows])
    return dict(r.info), texts, toks, vecs, [x[3] for x in rows], [x[4] for x in rows]


def synth_post(source, p0: int, n: int, rng, per_post: int = 20):
    """Post number p0 // per_post with chunks p0..: real ones while they last, then joined halves."""
    from rag.corpus import Post
    from rag.index import NewChunk

    info, texts, toks, vecs, ntoks, titles = source
    s = len(texts)
    pid = f"p{p0 // per_post:06d}"
    chunks = []
    for i in range(p0, min(n, p0 + per_post)):
        if n <= s:
            text, kt, v, nt = texts[i], toks[i], vecs[i], ntoks[i]
        else:
            a, b = (int(x) for x in rng.integers(0, s, 2))
            ha, hb = len(texts[a]) // 2, len(texts[b]) // 2
            text = texts[a][:ha] + texts[b][hb:]
            kt = toks[a][:len(toks[a]) // 2] + toks[b][len(toks[b]) // 2:]
            v = 0.5 * (vecs[a] + vecs[b]) + 0.01 * rng.standard_normal(vecs.shape[1]).astype(np.float32)
            v = v / np.linalg.norm(v)
            nt = (ntoks[a] + ntoks[b]) // 2
        chunks.append(NewChunk(f"{pid}#{i - p0}", pid, i - p0, text, text, nt, f"h{i}", kt, v))
    post = Post(post_id=pid, path=f"{pid}.md", title=titles[p0 % s], body="",
                date=f"20{10 + p0 % 16:02d}-0{1 + p0 % 9}-1{p0 % 10}", categories=["bench"], tags=[], url=None)
    return post, chunks


def build(source, dst: Path, n: int, per_post: int = 20, seed: int = 0) -> dict:
    from rag.index import GenerationWriter, IndexReader

    info = source[0]
    rng = np.random.default_rng(seed)
    w = GenerationWriter(dst, info, start_empty=True)
    t0 = time.perf_counter()
    for p0 in range(0, n, per_post):
        w.put_post(*synth_post(source, p0, n, rng, per_post))
    t1 = time.perf_counter()
    w.publish(int(info["dim"]))
    t2 = time.perf_counter()
    r = IndexReader(dst)
    gen = r.gen
    out = {"chunks": r.n_chunks, "write_rows_s": round(t1 - t0, 1), "publish_s": round(t2 - t1, 1),
           "publish_parts_s": {k: round(v, 1) for k, v in w.timings.items()},
           "bm25_postings": r.bm25.nnz, "bm25_terms": len(r.bm25.vocab), "disk_mb": dir_mb(gen),
           "files_mb": {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(gen.iterdir())}}
    r.close()
    return out


def update(source, dst: Path, n: int, per_post: int = 20) -> dict:
    """An incremental ingest's write at this size: one post replaced by a new one (20 chunks)."""
    from rag.index import GenerationWriter

    t = time.perf_counter()
    w = GenerationWriter(dst, source[0])
    w.delete_post("p000000")
    w.put_post(*synth_post(source, n + per_post * 7, n + per_post * 8, np.random.default_rng(1), per_post))
    w.publish(int(source[0]["dim"]))
    return {"update_s": round(time.perf_counter() - t, 1),
            "update_parts_s": {k: round(v, 1) for k, v in w.timings.items()}}


# ---------------------------------------------------------------- measuring (fresh process)
def load_questions(path: Path, limit: int) -> list[str]:
    qs = [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return qs[:limit]


def measure(index: Path, questions: list[str], warmup: int = 3) -> dict:
    import faiss

    from rag.api import open_embedder, resolve_settings
    from rag.config import load_settings
    from rag.generation import Assistant
    from rag.index import IndexReader, stored_vectors
    from rag.keyword import get_tokenizer
    from rag.retrieval import Retriever

    # as `rag serve` runs: torch questions, the engine chosen from the CPU (and RAG_ENGINE) and the index
    s = resolve_settings(load_settings(index_dir=str(index), llm_base_url=""), long_lived=True)
    emb = open_embedder(s, s.query_threads, s.query_engine)
    emb.embed_query("warm up")
    get_tokenizer(s.keyword_tokenizer)("ウォームアップ")  # its dictionary is mapped once per process
    faiss.omp_set_num_threads(1)  # the libraries' own code is mapped too: not the index's memory
    before = proc_memory()
    t = time.perf_counter()
    reader = IndexReader(index)
    retriever = Retriever(reader, emb, s)
    load_s = time.perf_counter() - t
    loaded = proc_memory()
    assistant = Assistant(s, retriever)
    serial = Retriever(reader, emb, s.replace(parallel_legs=False))  # A/B in the same run
    for q in questions[:warmup]:
        retriever.search(q)
        serial.search(q)
    total, total_serial, ttft, parts = [], [], [], {}
    for q in questions:
        t = time.perf_counter()
        serial.search(q)
        total_serial.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        _, timings = retriever.search_timed(q)
        total.append((time.perf_counter() - t) * 1000)
        for k, v in timings.items():
            parts.setdefault(k, []).append(v)
        t = time.perf_counter()
        kind, _ = next(iter(assistant.stream(q)))
        ttft.append((time.perf_counter() - t) * 1000)
        assert kind == "delta"
    after = proc_memory()
    res = {"chunks": reader.n_chunks, "queries": len(questions), "load_s": round(load_s, 2),
           "embedder": getattr(emb, "describe", lambda: emb.name)(),
           "retrieval_ms_p50": pct(total, 50), "retrieval_ms_p95": pct(total, 95),
           "serial_legs_ms_p50": pct(total_serial, 50), "serial_legs_ms_p95": pct(total_serial, 95),
           "first_token_ms_p50": pct(ttft, 50), "first_token_ms_p95": pct(ttft, 95),
           **{f"{k[:-3]}_ms_p50": pct(v, 50) for k, v in parts.items()},
           **{f"{k[:-3]}_ms_p95": pct(v, 95) for k, v in parts.items()},
           "index_anon_mb": loaded["RssAnon"] - before["RssAnon"],
           "index_mapped_mb": mapped_mb(reader.gen.resolve()),
           "process_rss_mb": after["VmRSS"], "process_anon_mb": after["RssAnon"]}
    vindex = reader.vectors
    res["vector_index"] = type(vindex).__name__ if not isinstance(vindex, faiss.IndexIDMap2) else "IndexFlatIP"
    if isinstance(vindex, faiss.IndexIVF):
        res["nprobe"] = int(vindex.nprobe)
        q = np.vstack([emb.embed_query(x) for x in questions]).astype(np.float32)
        ids, vecs = stored_vectors(reader.conn, reader.n_chunks, q.shape[1])
        exact = faiss.IndexFlatIP(q.shape[1])
        exact.add(vecs)
        del vecs
        _, truth = exact.search(q, 10)
        _, got = vindex.search(q, 10)
        res["dense_recall@10"] = round(float(np.mean([len(set(ids[a]) & set(b)) / 10
                                                      for a, b in zip(truth, got)])), 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-index", help="a real index to synthesize chunks from (e.g. the JaQuAD posts)")
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--questions", help="JSONL with a `question` field (default: JaQuAD if present, else "
                                        "eval/questions.jsonl)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--workdir", help="where to build the indexes (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the built indexes")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure one index in this process
    ap.add_argument("--isa", default="", choices=["", "avx2"],
                    help="cap the kernels at this ISA (emulates an AVX2-only CPU on a bigger one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from eval.bench_embedding import cpu_header, isa_env

    if args.isa and any(os.environ.get(k) != v for k, v in isa_env(args.isa).items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, **isa_env(args.isa)))
    qpath = Path(args.questions) if args.questions else next(p for p in DEFAULT_QUESTIONS if p.exists())
    questions = load_questions(qpath, args.queries)
    if args.measure:
        print(json.dumps(measure(Path(args.measure), questions)))
        return
    if not args.from_index:
        ap.error("--from-index is required")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rag-bench-"))
    source = load_source(Path(args.from_index))
    results = []
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            dst = work / f"idx-{n}"
            shutil.rmtree(dst, ignore_errors=True)
            built = build(source, dst, n)
            env = dict(os.environ, RAG_LLM_BASE_URL="")
            p = subprocess.run([sys.executable, __file__, "--measure", str(dst), "--queries", str(args.queries),
                                "--questions", str(qpath)], capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise SystemExit(f"measuring {dst} failed:\n{p.stderr}")
            row = {**built, **json.loads(p.stdout.strip().splitlines()[-1]), **update(source, dst, n)}
            results.append(row)
            print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
            if not args.keep:
                shutil.rmtree(dst, ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    out = {"cpu": cpu_header(args.isa), "questions": str(qpath), "queries": args.queries, "sizes": results}
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return
    cols = ["chunks", "vector_index", "nprobe", "dense_recall@10", "retrieval_ms_p50", "retrieval_ms_p95",
            "serial_legs_ms_p50", "serial_legs_ms_p95",
            "embed_ms_p50", "dense_ms_p95", "keyword_ms_p95", "fusion_ms_p95", "first_token_ms_p50",
            "first_token_ms_p95", "write_rows_s", "publish_s", "update_s", "load_s", "index_anon_mb", "index_mapped_mb",
            "disk_mb", "bm25_postings"]
    print(out["cpu"])
    print(f"{args.queries} questions from {qpath}; medians and p95 in ms, memory in MB; {results[0]['embedder']}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")


if __name__ == "__main__":
    main()
