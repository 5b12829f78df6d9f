"""Load test: N concurrent users asking questions through the served app's `/ask` API (127.0.0.1 only).

Usage: python eval/load_test.py --url http://127.0.0.1:7860 [--users 20] [--questions-per-user 3]
       [--timeout 120] [--json]

Bounded in count (users x questions) and time (--timeout for the whole run); refuses non-loopback
URLs. Prints throughput (answers/s), latency p50/p95 and the errors seen.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from urllib.parse import urlsplit

import numpy as np

QUESTIONS = [
    "注文履歴APIのp95レイテンシはいくつに下がった？",
    "hibikiサーバーはどのランタイムで書き直した？",
    "Kubernetesのオートスケールで何を見直した？",
    "リモートワークの日に会議を入れないルールの効果は？",
    "What did the static site migration do to the build time?",
    "形態素解析の辞書にない社内用語はどう扱った？",
]


_SOURCE_LIST = re.compile(r"\n\n(?:Sources|Nearest passages):\n\[1\] \S")


def answer_ok(out: object) -> bool:
    """An `/ask` reply counts as answered only in the expected shape: answer text, then a numbered
    source list, and no "Error:" prefix (the API reports failures as text, not as HTTP errors)."""
    if not isinstance(out, str) or out.lstrip().startswith("Error"):
        return False
    m = _SOURCE_LIST.search(out)
    return m is not None and out[:m.start()].strip() != ""


def run(url: str, users: int, per_user: int, timeout: float) -> dict:
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"refusing to load-test {host}: only 127.0.0.1/localhost")
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(users)

    def user(i: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            with lock:
                errors.append(f"user {i}: connect: {exc}")
            barrier.abort()
            return
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            pass
        for j in range(per_user):
            if time.monotonic() > deadline:
                with lock:
                    errors.append(f"user {i}: time budget exhausted")
                return
            q = QUESTIONS[(i + j) % len(QUESTIONS)]
            t = time.perf_counter()
            try:
                out = client.predict(q, api_name="/ask")
                ok = answer_ok(out)
            except Exception as exc:  # noqa: BLE001
                ok, out = False, f"{type(exc).__name__}: {exc}"
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    lat.append(dt)
                else:
                    errors.append(f"user {i}: {str(out)[:200]}")

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    wall = time.perf_counter() - t0
    return {"users": users, "requests": users * per_user, "answered": len(lat), "errors": len(errors),
            "error_samples": errors[:5], "wall_s": round(wall, 2),
            "throughput_per_s": round(len(lat) / wall, 2) if wall else 0.0,
            "latency_s_p50": round(float(np.percentile(lat, 50)), 2) if lat else None,
            "latency_s_p95": round(float(np.percentile(lat, 95)), 2) if lat else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7860")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--questions-per-user", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = run(args.url, args.users, args.questions_per_user, args.timeout)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{res['users']} users, {res['requests']} requests: {res['answered']} answered, {res['errors']} errors "
              f"in {res['wall_s']} s; {res['throughput_per_s']} answers/s; latency p50 {res['latency_s_p50']} s, "
              f"p95 {res['latency_s_p95']} s")
        for e in res["error_samples"]:
            print("  error:", e)
    sys.exit(1 if res["errors"] else 0)


if __name__ == "__main__":
    main()
