"""Development measurement: context recall and size by character budget (chooses `context_chars`).

Usage: python eval/context_budget.py QUESTIONS --index DIR [--budgets 0,2000,4000,6000,8000,12000]

Each question is retrieved once (top_k hits, as the assistant does); the hits are then assembled
at every budget (`rag.context`; 0 = the retrieved chunks as they are, the previous behaviour).
Context recall is the share of answerable questions whose gold answer occurs in the assembled
text, the same measure as `rag eval`'s `answers.context_recall`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.api import open_retriever  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.evaluation import contains_answer, load_questions, percentile  # noqa: E402
from rag.generation import Assistant  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions")
    ap.add_argument("--index", required=True)
    ap.add_argument("--budgets", default="0,2000,4000,6000,8000,12000")
    args = ap.parse_args()
    s = load_settings(index_dir=args.index)
    retriever = open_retriever(s, long_lived=True)
    budgets = [int(b) for b in args.budgets.split(",")]
    assistants = {b: Assistant(s.replace(context_chars=b), retriever) for b in budgets}
    found = {b: [] for b in budgets}
    chars = {b: [] for b in budgets}
    for q in load_questions(args.questions):
        hits = retriever.search(q["question"], s.top_k)
        for b, a in assistants.items():
            texts = [h.text for h in a.context(hits)]
            chars[b].append(sum(len(t) for t in texts))
            if q["answerable"]:
                found[b].append(any(contains_answer(t, q["answers"]) for t in texts))
    out = {str(b): {"context_recall": round(sum(found[b]) / max(1, len(found[b])), 4),
                    "context_chars_p50": percentile(chars[b], 50), "context_chars_p95": percentile(chars[b], 95)}
           for b in budgets}
    print(json.dumps({"questions": args.questions, "top_k": s.top_k, "by_budget": out}, indent=1))


if __name__ == "__main__":
    main()
