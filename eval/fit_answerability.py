"""Fit the answer-or-refuse decision as a small logistic model over the evidence, leave one set out.

Reads `rag eval --out` directories made without a chat endpoint (their per-question records carry
the whole `evidence`), turns each record into the features below, and for every development set
fits on the training pool plus the *other* sets, then scores the one left out. The refusal
threshold is chosen on the fitting data only: the highest P(answerable) cut that refuses at most
`--max-false-refusal` of its answerable questions. Prints, per set, the rules' figures (the records
as answered) beside the learned decision's, as unanswerable refused / answerable refused.

    python eval/fit_answerability.py --pool OUT_DIR [OUT_DIR ...] --sets NAME=OUT_DIR ... [--save FILE]

Questions answered from the front matter (`answered_from == "metadata"`) are left out: no refusal
decision is made for them. A reader P the answer path did not read (a refusal it could not change,
`refusal.reader_may_change`) counts as 0; the figures in docs/benchmarks.md were made when every
question was read (3071f3e).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rag.text import has_cjk

FEATURES = ["bias", "dense", "coverage_cjk", "cjk", "reader_p", "answer_score", "absent_names",
            "missing_identifiers", "missing_count", "missing_focus", "missing_value"]


def features(record: dict) -> list[float]:
    """One question's evidence as numbers (missing scores as 0)."""
    ev = record.get("evidence") or {}
    cjk = 1.0 if has_cjk(record.get("standalone_question") or record["question"]) else 0.0
    return [1.0, float(ev.get("dense") or 0.0), float(ev.get("coverage") or 0.0) * cjk, cjk,
            float(ev.get("reader_p") or 0.0), float(ev.get("answer_score") or 0.0),
            float(bool(ev.get("absent_names"))), float(bool(ev.get("missing_identifiers"))),
            float(bool(ev.get("missing_count"))), float(bool(ev.get("missing_focus"))),
            float(bool(ev.get("missing_value")))]


def load(directory: str) -> list[dict]:
    recs = [json.loads(line) for line in open(Path(directory) / "questions.jsonl", encoding="utf-8")]
    return [r for r in recs if r.get("answered_from") != "metadata" and not r.get("error")]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, balanced: bool = True) -> np.ndarray:
    """Weights by Newton's method (IRLS) with an L2 penalty (not on the bias); classes weighted
    equally when `balanced`, since unanswerable questions are the rarer kind."""
    w = np.zeros(x.shape[1])
    sw = np.ones(len(y))
    if balanced:
        for c in (0, 1):
            n = max(1, int((y == c).sum()))
            sw[y == c] = len(y) / (2 * n)
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        g = x.T @ (sw * (p - y)) + reg * w
        h = (x * (sw * p * (1 - p))[:, None]).T @ x + np.diag(reg) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def threshold(p: np.ndarray, y: np.ndarray, max_false_refusal: float) -> float:
    """The highest cut that refuses (p < cut) at most `max_false_refusal` of the answerable ones."""
    answerable = np.sort(p[y == 1])
    k = int(np.floor(max_false_refusal * len(answerable)))
    return float(answerable[k]) if k < len(answerable) else 1.0


def rates(refused: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(unanswerable refused, answerable refused)."""
    un, an = y == 0, y == 1
    return (float(refused[un].mean()) if un.any() else float("nan"),
            float(refused[an].mean()) if an.any() else float("nan"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", nargs="+", default=[], help="eval --out directories only ever fitted on")
    ap.add_argument("--sets", nargs="+", required=True, help="NAME=DIR development sets, each left out in turn")
    ap.add_argument("--max-false-refusal", type=float, default=0.03)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--save", help="write the model fitted on everything (weights, threshold) here")
    args = ap.parse_args(argv)

    pool = [r for d in args.pool for r in load(d)]
    sets = {name: load(d) for name, d in (s.split("=", 1) for s in args.sets)}

    def xy(recs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([features(r) for r in recs]).reshape(-1, len(FEATURES)),
                np.array([1.0 if r["answerable"] else 0.0 for r in recs]))

    print(f"pool: {len(pool)} questions; sets: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    print("set | n (unanswerable) | rules: unanswerable / answerable refused | learned, left out | cut")
    for name, recs in sets.items():
        fit = pool + [r for other, rs in sets.items() if other != name for r in rs]
        x, y = xy(fit)
        w = fit_logistic(x, y, args.l2)
        cut = threshold(1 / (1 + np.exp(-(x @ w))), y, args.max_false_refusal)
        xs, ys = xy(recs)
        learned = 1 / (1 + np.exp(-(xs @ w))) < cut
        rules = np.array([bool(r["refused"]) for r in recs])
        ru, ra = rates(rules, ys)
        lu, la = rates(learned, ys)
        print(f"{name} | {len(recs)} ({int((ys == 0).sum())}) | {ru:.3f} / {ra:.3f} | {lu:.3f} / {la:.3f} | {cut:.3f}")
    x, y = xy(pool + [r for rs in sets.values() for r in rs])
    w = fit_logistic(x, y, args.l2)
    cut = threshold(1 / (1 + np.exp(-(x @ w))), y, args.max_false_refusal)
    print("weights (all data): " + ", ".join(f"{f}={v:+.2f}" for f, v in zip(FEATURES, w)) + f"; cut {cut:.3f}")
    if args.save:
        Path(args.save).write_text(json.dumps({"features": FEATURES, "weights": [round(float(v), 6) for v in w],
                                               "threshold": round(cut, 6)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
