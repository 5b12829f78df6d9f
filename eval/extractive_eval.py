"""Does the extractive answer lead with the answer? First-sentence-contains-gold, old vs new answerer.

Same definition as `rag eval`'s `answers.first_sentence_contains_gold`: the first sentence of the
extractive answer (citations stripped), normalized (NFKC, width, case, whitespace), contains any
gold answer; answerable questions only. Retrieval runs once per question (the assistant's top_k)
and is cached in --cache, so the answerer can be re-scored quickly after retraining.

    python eval/extractive_eval.py ../shared/bench/jaquad/eval-questions.jsonl --index /tmp/idx-jaquad \
        --cache /tmp/jq-hits.json [--model rag/models/reader.json] [--json]
    python eval/extractive_eval.py --from-eval REPORT_DIR   # the same figure from `rag eval --out REPORT_DIR`
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.text import split_sentences, strip_citations  # noqa: E402
from rag.evaluation import contains_answer, load_questions  # noqa: E402
from rag.extractive import (answer_from_ranked, answer_span, load_reader, question_type,  # noqa: E402
                            rank_sentences)


def first_sentence(body: str) -> str:
    sents = [s for s in split_sentences(strip_citations(body)) if s.strip()]
    return sents[0] if sents else ""


def retrieve(questions: list[dict], index: str) -> dict:
    from rag.api import open_assistant
    from rag.config import load_settings
    from rag.extractive import index_idf, overlap_answer as old_answer

    s = load_settings(index_dir=index)
    assistant = open_assistant(s, long_lived=True)  # as `rag eval` runs it
    retriever = assistant.retriever
    idf = index_idf(retriever)
    out = {}
    for q in questions:
        hits = retriever.search(q["question"], s.top_k, "hybrid")
        out[q["id"]] = {"texts": [h.text for h in hits], "post_ids": [h.post_id for h in hits],
                        "old": old_answer(q["question"], hits, retriever),
                        "idf": {t: idf(t) for t in _terms(q["question"])}}
    return out


def _terms(question: str) -> set[str]:
    from rag.text import bigram_tokens

    return set(bigram_tokens(question))


def from_eval(report_dir: str) -> dict:
    """first_sentence_contains_gold over the answerable, non-refused records of `rag eval --out`."""
    recs = [json.loads(line) for line in (Path(report_dir) / "questions.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    ok = []
    for r in recs:
        if not r["answerable"] or r.get("mode") == "refused" or "answer" not in r:
            continue
        body = r["answer"].split("\n\n", 1)[1] if r.get("mode") == "extractive" and "\n\n" in r["answer"] else r["answer"]
        ok.append(contains_answer(first_sentence(body), r["answers"]))
    n_answerable = sum(r["answerable"] for r in recs)
    return {"report": report_dir, "n_answerable": n_answerable, "n_answered": len(ok),
            "first_sentence_contains_gold": round(sum(ok) / max(1, len(ok)), 4),
            "first_sentence_contains_gold_all_answerable": round(sum(ok) / max(1, n_answerable), 4)}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--from-eval":
        print(json.dumps(from_eval(sys.argv[2]), ensure_ascii=False))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("questions")
    ap.add_argument("--index")
    ap.add_argument("--cache", required=True, help="JSON of retrieved passages (written if absent)")
    ap.add_argument("--model", default=None, help="reader model JSON (default: the bundled one); 'none' = overlap ranking")
    ap.add_argument("--cross", default="", help="cross reader .npz (default: the bundled one); 'off' = linear reader alone")
    ap.add_argument("--passages", type=int, default=3, help="passages whose sentences are ranked (default 3)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--show", type=int, default=0, help="print N failures")
    args = ap.parse_args()
    qs = [q for q in load_questions(args.questions) if q["answerable"]]
    cache_p = Path(args.cache)
    if cache_p.exists():
        cache = json.loads(cache_p.read_text(encoding="utf-8"))
    else:
        if not args.index:
            raise SystemExit("--index is needed to build the cache")
        t = time.perf_counter()
        cache = retrieve(qs, args.index)
        cache_p.write_text(json.dumps(cache, ensure_ascii=False), encoding="utf-8")
        print(f"retrieved {len(qs)} questions in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    ranker = None if args.model == "none" else load_reader(args.model, args.cross)
    old_hits = new_hits = lead_hits = oracle = spans = span_ok = 0
    by_type: dict[str, list[int]] = {}
    fails = []
    t = time.perf_counter()
    for q in qs:
        c = cache[q["id"]]
        idf_table = c["idf"]
        top = max(idf_table.values(), default=1.0)

        def idf(term: str, table=idf_table, top=top) -> float:
            return table.get(term, top)

        old_ok = contains_answer(first_sentence(c["old"]), q["answers"])
        ranked = rank_sentences(q["question"], c["texts"], idf, ranker, args.passages)
        body = answer_from_ranked(q["question"], ranked, ranker)   # what extractive_answer returns
        new_ok = contains_answer(first_sentence(body), q["answers"])
        lead_ok = bool(ranked) and contains_answer(ranked[0][1], q["answers"])
        oracle += any(contains_answer(s, q["answers"]) for _, s, _ in ranked)
        span = answer_span(q["question"], ranked[0][1], ranker) if ranked else None
        if span and span[1] >= ranker.span_threshold:
            spans += 1
            span_ok += contains_answer(span[0], q["answers"])
        old_hits += old_ok
        new_hits += new_ok
        lead_hits += lead_ok
        by_type.setdefault(question_type(q["question"]) or "-", []).append(int(new_ok))
        if not new_ok and len(fails) < args.show:
            fails.append({"q": q["question"], "gold": q["answers"], "answer": body[:300], "span": span})
    n = max(1, len(qs))
    out = {"questions": args.questions, "n_answerable": len(qs),
           "model": "overlap" if ranker is None else (args.model or "bundled"),
           "cross": None if ranker is None or ranker.cross is None else (args.cross or "bundled"),
           "first_sentence_contains_gold_old": round(old_hits / n, 4),
           "first_sentence_contains_gold_new": round(new_hits / n, 4),
           "lead_sentence_contains_gold": round(lead_hits / n, 4),
           "any_candidate_contains_gold": round(oracle / n, 4),
           "span_lead_rate": round(spans / n, 4), "span_precision": round(span_ok / max(1, spans), 4),
           "by_type": {t: [len(v), round(sum(v) / len(v), 3)] for t, v in sorted(by_type.items())},
           "answer_ms_mean": round((time.perf_counter() - t) * 1000 / n, 2)}
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
        for f in fails:
            print(json.dumps(f, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
