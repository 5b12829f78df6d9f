"""What each refusal rule does on its own: drop one rule at a time and count what changes.

Every question of a set is asked without a chat endpoint with the cross reader read for all of them
(`refusal.reader_may_change` forced, so the evidence is complete) and the answer it would give is kept
even where it is refused. Then `refusal.decide` is rerun on that evidence with one rule turned off,
and each question's outcome (a right answer: it holds a gold answer; a wrong one; a refusal) is
compared with the outcome of all rules together. A rule "refuses" what only it refuses and "lets
through" what only it lets through (the offset and the reader's vouching lower a bar).

    python eval/rule_ablation.py QUESTIONS --index DIR [--records FILE]
    python eval/rule_ablation.py --records FILE --questions QUESTIONS   # reuse the records

Figures for the development sets are in docs/benchmarks.md ("every rule measured on its own").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag import refusal  # noqa: E402
from rag.question import quoted_phrases  # noqa: E402
from rag.text import fold  # noqa: E402


def _absent_names_keeping(quotes: bool) -> Callable[[dict, str], dict]:
    """Evidence whose absent names keep only the question's quotes (`quotes`) or only its names."""
    def keep(ev: dict, question: str) -> dict:
        quoted = {fold(q) for q in quoted_phrases(question)}
        return {**ev, "absent_names": tuple(n for n in ev["absent_names"] if (fold(n) in quoted) is quotes)}
    return keep


# rule -> (evidence without it, thresholds without it)
RULES: dict[str, tuple[Callable[[dict, str], dict] | None, dict | None]] = {
    "names no post holds": (_absent_names_keeping(quotes=True), None),
    "quoted titles and terms": (_absent_names_keeping(quotes=False), None),
    "coverage gate": (None, {"min_coverage": 0.0}),
    "dense gate": (None, {"min_dense": 0.0}),
    "reader vouching": (None, {"reader_p": 2.0}),
    "cross-lingual offset": (None, {"crosslingual_offset": 0.0}),
    "identifiers": (lambda ev, q: {**ev, "missing_identifiers": ()}, None),
    "counts": (lambda ev, q: {**ev, "missing_count": None}, None),
    "overlap score": (None, {"answer_min_score": 0.0}),
    "reader P": (None, {"min_answer_p": 0.0}),
    "focus nouns": (lambda ev, q: {**ev, "missing_focus": None}, None),
    "asked values": (lambda ev, q: {**ev, "missing_value": None}, None),
}


def outcome(record: dict, decision: refusal.Decision | None) -> str:
    """right / wrong / refused (answerable); refused_u / answered_u (unanswerable). No decision: a
    metadata answer, scored as given."""
    if decision is None:
        if record["answerable"]:
            return "right" if record["actual_contains"] else "wrong"
        return "answered_u"
    if decision.action != refusal.ANSWER:
        return "refused" if record["answerable"] else "refused_u"
    if not record["answerable"]:
        return "answered_u"
    return "right" if record["would_contain"] else "wrong"


def decide_all(records: list[dict], rule: str | None = None) -> list[str]:
    """Each record's outcome with every rule, or with `rule` turned off."""
    ev_off, t_off = RULES[rule] if rule else (None, None)
    out = []
    for r in records:
        if r["evidence"] is None:
            out.append(outcome(r, None))
            continue
        ev = {k: tuple(v) if isinstance(v, list) else v for k, v in r["evidence"].items()}
        if ev_off:
            ev = ev_off(ev, r["question"])
        t = refusal.Thresholds(**{**r["thresholds"], **(t_off or {})})
        out.append(outcome(r, refusal.decide(refusal.Evidence(**ev), t, chat=False)))
    return out


def effects(records: list[dict]) -> dict[str, dict[str, int]]:
    """Per rule, what only it refuses and what only it lets through (rules with no effect left out)."""
    full = decide_all(records)
    out = {}
    for rule in RULES:
        pairs = list(zip(full, decide_all(records, rule)))

        def n(a: str, b: str) -> int:
            return sum(1 for x, y in pairs if x == a and y == b)

        e = {"refuses_unanswerable": n("refused_u", "answered_u"), "refuses_right": n("refused", "right"),
             "refuses_wrong": n("refused", "wrong"), "lets_through_right": n("right", "refused"),
             "lets_through_wrong": n("wrong", "refused"), "lets_through_unanswerable": n("answered_u", "refused_u")}
        if any(e.values()):
            out[rule] = e
    return out


def collect(questions_path: str, index: str) -> list[dict]:
    """Ask every question with the reader read for all; keep the evidence, the thresholds and
    whether the answer it would give holds a gold answer."""
    from rag import evaluation as ev
    from rag.api import open_assistant, resolve_settings
    from rag.config import load_settings
    from rag.generation import Assistant

    seen: dict = {}
    decide, read = refusal.decide, Assistant.extractive_read

    def spy_decide(e, t, chat):
        seen["evidence"], seen["thresholds"] = e, t
        return decide(e, t, chat)

    def spy_read(self, draft):
        seen["reading"] = read(self, draft)
        return seen["reading"]

    refusal.decide, refusal.reader_may_change, Assistant.extractive_read = spy_decide, lambda d: True, spy_read
    s = resolve_settings(load_settings(index_dir=index), long_lived=True)
    assistant = open_assistant(s)
    if assistant.client is not None:
        raise SystemExit("rule_ablation measures the extractive answerer: unset RAG_LLM_BASE_URL")
    records = []
    for q in ev.load_questions(questions_path):
        seen.clear()
        ans = assistant.ask(q["question"])
        text = seen["reading"].text if "reading" in seen else ""
        records.append({
            "id": q["id"], "question": q["question"], "answerable": q["answerable"], "mode": ans.mode,
            "evidence": dataclasses.asdict(seen["evidence"]) if "evidence" in seen else None,
            "thresholds": dataclasses.asdict(seen["thresholds"]) if "thresholds" in seen else None,
            "would_contain": bool(text) and ev.contains_answer(text, q["answers"]) if q["answerable"] else None,
            "actual_contains": ev.contains_answer(ans.answer, q["answers"]) if q["answerable"] else None})
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("questions", nargs="?")
    p.add_argument("--index")
    p.add_argument("--records", help="JSONL of collected records: written after collecting, read when no --index")
    p.add_argument("--questions", dest="questions_opt")
    a = p.parse_args()
    questions = a.questions or a.questions_opt
    if a.index:
        records = collect(questions, a.index)
        if a.records:
            Path(a.records).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    else:
        records = [json.loads(line) for line in open(a.records, encoding="utf-8")]
    full = decide_all(records)
    print(f"{questions or a.records}: " + ", ".join(f"{k} {full.count(k)}" for k in
                                       ("right", "wrong", "refused", "refused_u", "answered_u")))
    for rule, e in effects(records).items():
        print(f"  {rule:24s} " + ", ".join(f"{k} {v}" for k, v in e.items() if v))


if __name__ == "__main__":
    main()
