"""Development measurement: choose the refusal thresholds jointly on several dev sets.

Usage: python eval/calibrate_answer_refusal.py OUT_DIR [OUT_DIR ...] [--max-false-refusal 0.03]

Each OUT_DIR is a `rag eval --out` directory of an extractive run made with `answer_min_score=0`
(its per-question `evidence` holds the best dense cosine, the coverage and the best sentence
answer score). Two decisions are calibrated, both on all the sets at once, never on one:

- the chat-endpoint gate (`gate_min_dense`, `gate_min_coverage`): the strictest pair that wrongly
  refuses at most a third of the allowed false refusals on *every* set (the model and the context
  use up the rest), taking the most unanswerable refusals summed over the sets;
- the extractive refusal (`refusal_min_dense`, `refusal_min_coverage`, `answer_min_score`): the
  triple with false refusals at most the limit on every set and the best worst-set share of
  unanswerable questions refused.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


def load(out_dir: str) -> list[dict]:
    recs = []
    for line in (Path(out_dir) / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        ev = r.get("evidence") or {}
        q = r["question"]
        english = not _CJK.search(q)
        recs.append({"answerable": r["answerable"], "cjk": not english, "dense": ev.get("dense"),
                     "coverage": ev.get("coverage", 0.0), "answer": ev.get("answer_score", 0.0)})
    return recs


def refused(f: dict, dmin: float, cmin: float, amin: float) -> bool:
    if f["dense"] is None:
        return True
    if (f["cjk"] and f["coverage"] < cmin) or f["dense"] < dmin:
        return True
    return f["answer"] < amin


def rates(recs: list[dict], dmin: float, cmin: float, amin: float) -> tuple[float, float]:
    ans = [f for f in recs if f["answerable"]]
    una = [f for f in recs if not f["answerable"]]
    fr = sum(refused(f, dmin, cmin, amin) for f in ans) / max(1, len(ans))
    cr = sum(refused(f, dmin, cmin, amin) for f in una) / max(1, len(una))
    return cr, fr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dirs", nargs="+")
    ap.add_argument("--max-false-refusal", type=float, default=0.03)
    args = ap.parse_args()
    sets = {d: load(d) for d in args.out_dirs}
    dense_grid = [x / 100 for x in range(70, 90)]
    cov_grid = [x / 100 for x in range(0, 80, 2)]
    amin_grid = [x / 100 for x in range(0, 100, 2)]

    gate_limit = args.max_false_refusal / 3
    best_gate = None
    for d, c in itertools.product(dense_grid, cov_grid):
        r = [rates(v, d, c, 0.0) for v in sets.values()]
        if all(fr <= gate_limit for _, fr in r):
            key = (sum(cr for cr, _ in r), d + c)
            if best_gate is None or key > best_gate[0]:
                best_gate = (key, d, c, r)

    best = None
    for d, c, a in itertools.product(dense_grid, cov_grid, amin_grid):
        r = [rates(v, d, c, a) for v in sets.values()]
        if all(fr <= args.max_false_refusal for _, fr in r):
            key = (min(cr for cr, _ in r), sum(cr for cr, _ in r), -a)
            if best is None or key > best[0]:
                best = (key, d, c, a, r)

    def per_set(r):
        return {Path(d).name: {"correct_refusal": round(cr, 4), "false_refusal": round(fr, 4)}
                for d, (cr, fr) in zip(sets, r)}

    out = {}
    if best_gate:
        out["gate"] = {"gate_min_dense": best_gate[1], "gate_min_coverage": best_gate[2],
                       "gate_only": per_set(best_gate[3])}
    if best:
        out["extractive"] = {"refusal_min_dense": best[1], "refusal_min_coverage": best[2],
                             "answer_min_score": best[3], "sets": per_set(best[4])}
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
