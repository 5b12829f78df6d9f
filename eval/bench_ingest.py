"""Benchmark: ingest throughput and the pipeline's overhead over raw embedding, in one run.

Usage: python eval/bench_ingest.py [POSTS_DIR] [--limit N] [--embedder NAME] [--json]

Copies the first N posts (default: all) of POSTS_DIR (default ../shared/bench/jaquad/posts),
runs a full `ingest` into a fresh index (timings: parse+clean, chunk+tokenize, embed, write),
then embeds exactly the same chunk texts directly with the same embedder, and reports chunks/s
for both and the overhead ratio (goal: pipeline within 10% of raw embedding).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.chunking import chunk_post  # noqa: E402
from rag.api import open_document_embedder  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.corpus import iter_post_files, read_post  # noqa: E402
from rag.embedding import embed_in_batches  # noqa: E402
from rag.ingest import ingest  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "jaquad" / "posts"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("posts", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    s = Settings() if not args.embedder else Settings(embedder=args.embedder)
    src = Path(args.posts)
    files = [p for p, prob in iter_post_files(src) if prob is None][: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "posts"
        for p in files:
            dest = root / p.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dest)
        emb = open_document_embedder(s)
        t = time.perf_counter()
        rep = ingest(root, Path(tmp) / "idx", s, emb)
        total = time.perf_counter() - t
        texts = [c.embed_text for p, _ in iter_post_files(root)
                 for c in chunk_post(read_post(p, root), emb.count_tokens, s.chunk_tokens, s.chunk_overlap_tokens)]
        t = time.perf_counter()
        embed_in_batches(emb, texts, s.embed_batch_size)
        raw = time.perf_counter() - t
    out = {
        "embedder": emb.name, "posts": len(files), "chunks": rep.chunks_total,
        "pipeline_s": round(total, 2), "raw_embed_s": round(raw, 2),
        "pipeline_chunks_per_s": round(rep.chunks_total / total, 2),
        "raw_embed_chunks_per_s": round(len(texts) / raw, 2),
        "overhead": round(total / raw - 1, 4),
        "stages_s": {k: round(v, 2) for k, v in rep.timings.items()},
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{out['posts']} posts, {out['chunks']} chunks, embedder {out['embedder']}")
        print(f"pipeline: {out['pipeline_s']} s ({out['pipeline_chunks_per_s']} chunks/s); stages: {out['stages_s']}")
        print(f"raw embedding of the same texts: {out['raw_embed_s']} s ({out['raw_embed_chunks_per_s']} chunks/s)")
        print(f"overhead of the pipeline over raw embedding: {out['overhead'] * 100:.1f}%")


if __name__ == "__main__":
    main()
