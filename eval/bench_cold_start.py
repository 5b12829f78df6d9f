"""Benchmark: cold start of `rag search` (invocation to printed results) on a ~10k-chunk index.

Usage: python eval/bench_cold_start.py --from-index DIR [--copies 5] [--runs 5] [--json]

Builds a bigger index from an existing one by writing each post `copies` times under new ids
(vectors and keyword tokens reused, so no embedding), through the product's own GenerationWriter,
then times `rag search` as a fresh process several times and reports the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.corpus import Post  # noqa: E402
from rag.index import GenerationWriter, IndexReader, NewChunk  # noqa: E402


def replicate(src: Path, dst: Path, copies: int) -> int:
    r = IndexReader(src)
    info = dict(r.info)
    w = GenerationWriter(dst, info)
    posts = r.conn.execute("SELECT * FROM posts").fetchall()
    for c in range(copies):
        for p in posts:
            pid = f"{p['post_id']}-copy{c}"
            post = Post(post_id=pid, path=p["path"], title=p["title"], body="", date=p["date"],
                        categories=json.loads(p["categories"]), tags=json.loads(p["tags"]), url=p["url"])
            chunks = [NewChunk(f"{pid}#{row['ord']}", pid, row["ord"], row["text"], row["embed_text"], row["n_tokens"],
                               row["embed_hash"], row["keyword_tokens"].split("\x1f"),
                               np.frombuffer(row["vector"], dtype=np.float32))
                      for row in r.conn.execute("SELECT * FROM chunks WHERE post_id=? ORDER BY ord", (p["post_id"],))]
            w.put_post(post, chunks)
    w.publish(int(info["dim"]))
    return IndexReader(dst).n_chunks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-index", required=True)
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        idx = Path(tmp) / "idx"
        n = replicate(Path(args.from_index), idx, args.copies)
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "rag.cli", "search", "小坂鉱山は何の産出量が多かった？",
                                "--index", str(idx), "-k", "5"], capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            assert p.returncode == 0, p.stderr
    out = {"chunks": n, "runs": args.runs, "cold_start_s_median": round(statistics.median(times), 2),
           "cold_start_s_all": [round(t, 2) for t in times]}
    print(json.dumps(out, indent=1) if args.json else
          f"rag search on {n} chunks: median {out['cold_start_s_median']} s over {args.runs} runs {out['cold_start_s_all']}")


if __name__ == "__main__":
    main()
