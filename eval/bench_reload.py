"""Benchmark: time from `rag ingest` finishing to a running `rag serve` answering from the new generation.

Usage: python eval/bench_reload.py --site SITE --index DIR [--runs 5] [--json]

Copies SITE and the index (built from SITE) to a temporary folder, starts `rag serve` on 127.0.0.1
with the default settings (reload_poll_s = 1 s), then per run: writes a new post with a unique
word into the copy, runs `rag ingest` as a separate process, and asks `/ask` (gradio_client) about
that word in a loop until the new post's URL is cited. Reports each run and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app_server import free_port, stop, wait_http  # noqa: E402

POST = """---
title: リロード計測 {word}
date: {date} 10:00:00 +0000
---

{word} は計測用の架空のライブラリです。{word} のバージョン 9.{n} では起動時間が 40% 短くなりました。
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from gradio_client import Client

    from rag.corpus import split_front_matter
    from rag.sites import detect_site, site_post

    tmp = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    site, idx = tmp / "site", tmp / "idx"
    shutil.copytree(args.site, site)
    shutil.copytree(args.index, idx)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    rag = [sys.executable, "-m", "rag.cli"]
    port = free_port()
    log = tmp / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*rag, "serve", "--index", str(idx), "--port", str(port)], env=env, cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    runs = []
    try:
        wait_http(url, proc, log, timeout=300)
        client = Client(url, verbose=False)
        posts_dir = next(site.rglob("_posts"))
        info = detect_site(site)
        for n in range(args.runs):
            word = f"Zqx{n}Reload"
            date = f"2020-01-{n + 1:02d}"
            rel = posts_dir / f"{date}-bench-reload-{n}.md"
            text = POST.format(word=word, date=date, n=n)
            rel.write_text(text, encoding="utf-8")
            meta, body = split_front_matter(text)
            new_url = site_post(info, rel.relative_to(site).as_posix(), meta, body).url
            t = time.perf_counter()
            r = subprocess.run([*rag, "ingest", str(site), "--index", str(idx), "--json"], env=env,
                               capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise SystemExit(r.stderr)
            done = time.perf_counter()
            asks = 0
            while True:
                out = client.predict(f"{word} のバージョン 9.{n} で何が変わった？", api_name="/ask")
                asks += 1
                if any(new_url in ln and "(not cited)" not in ln for ln in out.splitlines()):
                    break
                if time.perf_counter() - done > 120:
                    raise SystemExit(f"run {n}: {new_url} not cited within 120 s")
            runs.append({"ingest_s": round(done - t, 2), "reload_s": round(time.perf_counter() - done, 2),
                         "asks": asks})
            print(f"run {n}: ingest {done - t:.1f} s, answered from the new generation "
                  f"{runs[-1]['reload_s']:.2f} s after it finished ({asks} asks)", file=sys.stderr)
    finally:
        stop(proc)
    summary = {"runs": runs, "median_reload_s": statistics.median(r["reload_s"] for r in runs),
               "max_reload_s": max(r["reload_s"] for r in runs), "reload_poll_s": 1.0,
               "server_log_switches": log.read_text().count("serving index generation")}
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary, indent=2) if args.json else
          f"median {summary['median_reload_s']:.2f} s, max {summary['max_reload_s']:.2f} s over {len(runs)} runs")


if __name__ == "__main__":
    main()
