"""Development measurement: choose the refusal thresholds on a question set with unanswerable questions.

Usage: python eval/calibrate_refusal.py QUESTIONS --index DIR [--max-false-refusal 0.05]

For each question it records the evidence the assistant uses (best dense cosine of the top
passages, idf-weighted coverage of the question's terms by them), then grid-searches the two
thresholds for the best F1 of "refuse" on unanswerable questions while wrongly refusing at most
the given share of answerable ones. Prints precision/recall of refusal at the chosen point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.api import open_retriever  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.evaluation import load_questions  # noqa: E402
from rag.generation import evidence  # noqa: E402
from rag.text import has_cjk  # noqa: E402


def prf(feats, dmin, cmin):
    tp = fp = fn = 0
    for f in feats:
        refuse = (f["cjk"] and f["coverage"] < cmin) or (f["dense"] is not None and f["dense"] < dmin)
        if refuse and not f["answerable"]:
            tp += 1
        elif refuse:
            fp += 1
        elif not f["answerable"]:
            fn += 1
    n_ans = sum(f["answerable"] for f in feats)
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "false_refusal_rate": fp / n_ans if n_ans else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions")
    ap.add_argument("--index", required=True)
    ap.add_argument("--max-false-refusal", type=float, default=0.05)
    ap.add_argument("--dump", help="write per-question evidence as JSONL here")
    args = ap.parse_args()
    r = open_retriever(load_settings(index_dir=args.index), long_lived=True)
    s = r.settings
    feats = []
    for q in load_questions(args.questions):
        hits = r.search(q["question"], s.top_k)
        feats.append({"id": q["id"], "answerable": q["answerable"], "cjk": has_cjk(q["question"]),
                      **evidence(r, q["question"], hits)})
    if args.dump:
        Path(args.dump).write_text("\n".join(json.dumps(f) for f in feats) + "\n")
    best = None
    for d100 in range(70, 92):
        for c100 in range(0, 100, 2):
            m = prf(feats, d100 / 100, c100 / 100)
            if m["false_refusal_rate"] <= args.max_false_refusal and (best is None or m["f1"] > best[2]["f1"]):
                best = (d100 / 100, c100 / 100, m)
    dense_only = max((prf(feats, d / 100, 0.0) | {"dense": d / 100} for d in range(70, 95)
                      if prf(feats, d / 100, 0.0)["false_refusal_rate"] <= args.max_false_refusal),
                     key=lambda m: m["f1"])
    print(json.dumps({"n": len(feats), "unanswerable": sum(not f["answerable"] for f in feats),
                      "chosen": {"refusal_min_dense": best[0], "refusal_min_coverage": best[1],
                                 **{k: round(v, 4) for k, v in best[2].items()}},
                      "dense_threshold_only": {k: round(v, 4) for k, v in dense_only.items()}}, indent=1))


if __name__ == "__main__":
    main()
