"""Refit the three bars the extractive answer reads after the cross reader, leave one set out.

`extractive_min_p` (refuse below this P), `refusal_focus_p` (a focus noun no post uses, below this
P) and `refusal_value_p` (an asked number, version or date the quoted sentences lack, below this P)
are `refusal.decide`'s last checks. Their effect can therefore be replayed from `rag eval --out`
records made without a chat endpoint, with no rerun: a question refused before them keeps its
refusal, the others are decided again by `refusal.decide` from their recorded evidence.

For each development set, the bars are chosen on the *other* development sets (grid search; cost
per set = share of unanswerable questions answered + WEIGHT x share of answerable questions
refused, summed over sets, so a large set does not outweigh a blog) and reported on the one left
out, beside today's bars. Held-out sets are reported with bars fitted on every development set.

    python eval/refit_reader_bars.py --dev sample=DIR rubyja=DIR ... [--held efcl=DIR] [--weight 2 4]

Questions answered from the front matter are left out (no refusal decision is made for them).
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from rag import refusal
from rag.config import Settings

LATE = {"reader_p", "missing_focus", "missing_value"}   # the reasons these bars give
MIN_P = [round(0.02 * i, 2) for i in range(11)]          # 0 .. 0.2
BAR = [round(0.05 * i, 2) for i in range(13)]            # 0 .. 0.6


@dataclass(frozen=True)
class Record:
    answerable: bool
    late: bool                  # reached the bars: answered, or refused by one of them
    evidence: refusal.Evidence


def load(directory: str) -> list[Record]:
    out = []
    for line in open(Path(directory) / "questions.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r.get("answered_from") == "metadata" or r.get("error"):
            continue
        ev = r.get("evidence") or {}
        late = not r.get("refused") or ev.get("reason") in LATE
        # past the gate and the earlier checks: only what the last three read matters
        evidence = refusal.Evidence(
            n_passages=1, dense=None, coverage=1.0, cjk_question=False, answer_score=1.0,
            reader_p=ev.get("reader_p"), missing_focus=ev.get("missing_focus"),
            missing_value=ev.get("missing_value"))
        out.append(Record(bool(r["answerable"]), late, evidence))
    return out


def thresholds(min_p: float, focus_p: float, value_p: float) -> refusal.Thresholds:
    return refusal.Thresholds(min_dense=-1.0, min_coverage=-1.0, gate_min_dense=-1.0, gate_min_coverage=-1.0,
                              reader_p=2.0, min_answer_p=min_p, focus_p=focus_p, answer_min_score=0.0,
                              value_p=value_p)


def refused(rec: Record, bars: tuple[float, float, float]) -> bool:
    if not rec.late:
        return True
    return refusal.decide(rec.evidence, thresholds(*bars), chat=False).action != refusal.ANSWER


def figures(recs: list[Record], bars: tuple[float, float, float]) -> dict:
    """Unanswerable refused / answerable refused, as counts and shares."""
    un = [refused(r, bars) for r in recs if not r.answerable]
    an = [refused(r, bars) for r in recs if r.answerable]
    return {"unanswerable_refused": sum(un), "n_unanswerable": len(un),
            "answerable_refused": sum(an), "n_answerable": len(an)}


def cost(sets: list[list[Record]], bars: tuple[float, float, float], weight: float) -> float:
    total = 0.0
    for recs in sets:
        f = figures(recs, bars)
        total += 1 - f["unanswerable_refused"] / max(1, f["n_unanswerable"])
        total += weight * f["answerable_refused"] / max(1, f["n_answerable"])
    return total


def fit(sets: list[list[Record]], weight: float) -> tuple[float, float, float]:
    """The bars of least cost; ties go to the lowest bars (the fewest refusals)."""
    grid = itertools.product(MIN_P, BAR, BAR)
    return min(grid, key=lambda g: (round(cost(sets, g, weight), 9), g))


def cell(f: dict) -> str:
    return f"{f['unanswerable_refused']}/{f['n_unanswerable']} ; {f['answerable_refused']}/{f['n_answerable']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--held", nargs="*", default=[], metavar="NAME=DIR")
    ap.add_argument("--weight", nargs="+", type=float, default=[2.0])
    args = ap.parse_args()
    dev = {k: load(v) for k, v in (a.split("=", 1) for a in args.dev)}
    held = {k: load(v) for k, v in (a.split("=", 1) for a in args.held)}
    s = Settings()
    today = (s.extractive_min_p, s.refusal_focus_p, s.refusal_value_p)
    for weight in args.weight:
        print(f"\ncost weight {weight}: unanswerable refused ; answerable refused (extractive, metadata answers left out)")
        print(f"| set | today {today} | left out: fitted on the others | bars fitted |\n| --- | --- | --- | --- |")
        for name, recs in dev.items():
            bars = fit([r for k, r in dev.items() if k != name], weight)
            print(f"| {name} | {cell(figures(recs, today))} | {cell(figures(recs, bars))} | {bars} |")
        bars = fit(list(dev.values()), weight)
        for name, recs in held.items():
            print(f"| {name} (held out) | {cell(figures(recs, today))} | {cell(figures(recs, bars))} | {bars} |")


if __name__ == "__main__":
    main()
