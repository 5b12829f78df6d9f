"""Evaluation: metrics as plain functions and dicts, in the style of sentence-transformers' evaluators.

A retrieved passage is relevant when it comes from a gold post and contains one of the gold
answers after normalization (NFKC, width, case, whitespace); post-level relevance needs only
the gold post. Japanese needs no word splitting for these checks: containment and
character-level F1 work on characters.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .text import has_cjk, is_english, normalize, split_sentences

KS = (1, 3, 5, 10)
QUESTION_KEYS = {"id", "question", "answers", "gold_posts", "answerable"}


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    t = normalize(text)
    return any(normalize(a) and normalize(a) in t for a in answers)


def relevance(post_ids: Sequence[str], texts: Sequence[str], gold_posts: Sequence[str], answers: Sequence[str],
              post_level: bool = False) -> list[int]:
    gold = set(gold_posts)
    return [int(p in gold and (post_level or contains_answer(t, answers))) for p, t in zip(post_ids, texts)]


def hit_at_k(rels: Sequence[int], k: int) -> float:
    return float(any(rels[:k]))


def reciprocal_rank(rels: Sequence[int], k: int = 10) -> float:
    for i, r in enumerate(rels[:k], start=1):
        if r:
            return 1.0 / i
    return 0.0


def ndcg_at_k(rels: Sequence[int], k: int = 10) -> float:
    """Binary nDCG; the ideal list puts every relevant item found in the top k first (at least one)."""
    dcg = sum(r / math.log2(i + 1) for i, r in enumerate(rels[:k], start=1))
    n_rel = max(1, sum(1 for r in rels[:k] if r))
    idcg = sum(1 / math.log2(i + 1) for i in range(1, n_rel + 1))
    return dcg / idcg


def retrieval_metrics(all_rels: Sequence[Sequence[int]], ks: Iterable[int] = KS) -> dict[str, float]:
    """Mean hit@k, MRR@10 and nDCG@10 over questions (each a list of 0/1 by rank)."""
    n = len(all_rels)
    if n == 0:
        return {**{f"hit@{k}": 0.0 for k in ks}, "mrr@10": 0.0, "ndcg@10": 0.0}
    out = {f"hit@{k}": sum(hit_at_k(r, k) for r in all_rels) / n for k in ks}
    out["mrr@10"] = sum(reciprocal_rank(r, 10) for r in all_rels) / n
    out["ndcg@10"] = sum(ndcg_at_k(r, 10) for r in all_rels) / n
    return out


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 (bag of characters after normalization), the usual measure for Japanese QA."""
    p, g = Counter(normalize(prediction)), Counter(normalize(gold))
    common = sum((p & g).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def load_questions(path: str | Path) -> list[dict]:
    """Read a JSONL question set, naming the line of any malformed entry."""
    out = []
    p = Path(path)
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{n}: invalid JSON: {exc.msg}") from None
        missing = QUESTION_KEYS - set(q)
        if missing:
            raise ValueError(f"{p}:{n}: missing keys {sorted(missing)}")
        if not isinstance(q["answers"], list) or not isinstance(q["gold_posts"], list):
            raise ValueError(f"{p}:{n}: 'answers' and 'gold_posts' must be lists")
        out.append(q)
    return out


# ---------------------------------------------------------------- running an evaluation

def _answer_body(answer) -> str:
    """The answer without the extractive label (the label is not an answer)."""
    text = answer.answer
    if (answer.mode == "extractive" or answer.model_answer is not None) and "\n\n" in text:
        text = text.split("\n\n", 1)[1]
    from .citations import strip_citations

    return strip_citations(text)


def evaluate_question(q: dict, retriever, assistant, k: int, mode: str, retrieval_only: bool) -> dict:
    """Everything measured for one question, as a plain dict (one line of the per-question JSONL)."""
    import time

    t = time.perf_counter()
    hits = retriever.search(q["question"], max(k, 10), mode)
    search_ms = (time.perf_counter() - t) * 1000
    rec = {"id": q["id"], "question": q["question"], "answerable": q["answerable"], "gold_posts": q["gold_posts"],
           "answers": q["answers"], "lang": question_language(q),
           **({"kind": q["kind"]} if q.get("kind") else {}),
           "retrieved": [{"rank": i, "post_id": h.post_id, "chunk_id": h.chunk_id, "score": round(h.score, 4)}
                         for i, h in enumerate(hits[:k], 1)]}
    if q["answerable"]:
        rec["rel"] = relevance([h.post_id for h in hits], [h.text for h in hits], q["gold_posts"], q["answers"])
        rec["rel_post"] = relevance([h.post_id for h in hits], [h.text for h in hits], q["gold_posts"],
                                    q["answers"], post_level=True)
    rec["latency_ms"] = {"retrieval": round(search_ms, 1), "generation": 0.0, "total": round(search_ms, 1)}
    if retrieval_only:
        return rec
    same_ranking = retriever.candidate_depth(max(k, 10)) == retriever.candidate_depth(assistant.settings.top_k)
    ans = assistant.ask(q["question"], mode=mode, hits=hits if same_ranking else None)  # no second search
    body = _answer_body(ans)
    cited_posts = [c["post_id"] for c in ans.citations]
    gold = set(q["gold_posts"])
    rec.update({
        "mode": ans.mode, "answer": ans.answer, "error": ans.error, "grounded": ans.grounded,
        "citations": ans.citations, "claims": ans.claims, "latency_ms": {
            "retrieval": round(search_ms, 1), "generation": ans.latency_ms.get("generation", 0.0),
            "total": round(search_ms + ans.latency_ms.get("total", 0.0), 1)},
        "evidence": ans.evidence,
        "refused": ans.mode == "refused",
        "contains_gold": contains_answer(body, q["answers"]) if q["answerable"] and ans.mode != "refused" else None,
        "char_f1": max((char_f1(body, a) for a in q["answers"]), default=0.0)
        if q["answerable"] and ans.mode != "refused" else None,
        "citation_precision": (sum(p in gold for p in cited_posts) / len(cited_posts)) if cited_posts and q["answerable"]
        else None,
        "citation_recall": float(bool(gold & set(cited_posts))) if q["answerable"] and ans.mode != "refused" else None,
        "refusal": ans.refusal,
        "answered_from": ans.answered_from,
        **context_record(ans, q),
    })
    return rec


def question_language(q: dict) -> str:
    """The question's language: its `lang` field when the set gives one, else "en" when the answerer
    reads it as English (`text.is_english`), "ja" when it has kana or kanji, "other" otherwise."""
    lang = q.get("lang")
    if isinstance(lang, str) and lang.strip():
        return lang.strip().lower()
    text = q.get("question") or ""
    if is_english(text):
        return "en"
    return "ja" if has_cjk(text) else "other"


def refusals_by_reason(records: Sequence[dict]) -> dict[str, dict[str, int]]:
    """Refused questions counted by the answer's refusal reason (`Answer.refusal`: "off_archive",
    "not_stated", ...; "unknown" when a refusal carries none), each split into answerable (wrongly
    refused) and unanswerable (rightly refused). Reasons sorted by name; none refused: {}."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        if not r.get("refused"):
            continue
        counts = out.setdefault(r.get("refusal") or "unknown", {"total": 0, "answerable": 0, "unanswerable": 0})
        counts["total"] += 1
        counts["answerable" if r["answerable"] else "unanswerable"] += 1
    return dict(sorted(out.items()))


def _rate(flags: list) -> float | None:
    """Mean of the 0/1 flags (None skipped); None when there is nothing to average."""
    xs = [float(x) for x in flags if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


def group_answer_metrics(records: Sequence[dict]) -> dict:
    """Refusal and answer figures of one group of answered records. Rates whose group is empty are None
    (not 0.0): a language with no unanswerable question has no correct-refusal rate."""
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    answered = [r for r in answerable if not r.get("refused")]
    return {
        "n": len(records),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "answerable_refused": _rate([r.get("refused") for r in answerable]),
        "unanswerable_refused": _rate([r.get("refused") for r in unanswerable]),
        "contains_gold": _rate([r.get("contains_gold") for r in answered]),
        "first_sentence_contains_gold": _rate([r.get("first_sentence_contains_gold") for r in answered]),
    }


def by_language(records: Sequence[dict]) -> dict[str, dict]:
    """`group_answer_metrics` per question language (the record's `lang`, else `question_language`)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r.get("lang") or question_language(r), []).append(r)
    return {lang: group_answer_metrics(rs) for lang, rs in sorted(groups.items())}


def first_sentence(text: str) -> str:
    for s in split_sentences(text):
        if s.strip():
            return s.strip()
    return ""


def context_record(ans, q: dict) -> dict:
    """What the answerer was given (each source's exact text) and whether it holds the answer."""
    texts = [s["text"] for s in ans.sources]
    answerable = q["answerable"]
    return {
        "sources": [{"n": s["n"], "post_id": s["post_id"], "chunk_ids": s.get("chunk_ids", [s["chunk_id"]]),
                     "text": s["text"]} for s in ans.sources],
        "context_chars": sum(len(t) for t in texts),
        "context_contains_gold": any(contains_answer(t, q["answers"]) for t in texts) if answerable else None,
        "first_sentence_contains_gold": contains_answer(first_sentence(_answer_body(ans)), q["answers"])
        if answerable and ans.mode != "refused" else None,
    }


def _mean(xs: list) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else 0.0


def summarize(records: list[dict], k: int, retrieval_only: bool) -> dict:
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    out: dict = {
        "retrieval": {m: round(v, 4) for m, v in retrieval_metrics([r["rel"] for r in answerable]).items()},
        "retrieval_post_level": {m: round(v, 4) for m, v in
                                 retrieval_metrics([r["rel_post"] for r in answerable]).items()},
        "n_questions": len(records),
        "n_answerable": len(answerable),
    }
    lat = {key: [r["latency_ms"][key] for r in records] for key in ("retrieval", "generation", "total")}
    out["latency_ms"] = {f"{key}_{p}": round(percentile(v, q), 1) for key, v in lat.items()
                         for p, q in (("p50", 50), ("p95", 95))}
    if not retrieval_only:
        claims = [c for r in records for c in (r.get("claims") or [])]
        out["answers"] = {
            "contains_gold": round(_mean([r["contains_gold"] for r in answerable if r["contains_gold"] is not None]), 4),
            "char_f1": round(_mean([r["char_f1"] for r in answerable]), 4),
            "citation_precision": round(_mean([r["citation_precision"] for r in answerable]), 4),
            "citation_recall": round(_mean([r["citation_recall"] for r in answerable]), 4),
            "unsupported_rate": round(sum(not c["supported"] for c in claims) / len(claims), 4) if claims else 0.0,
            "errors": sum(r.get("mode") == "error" for r in records),
            "first_sentence_contains_gold": round(_mean([r.get("first_sentence_contains_gold")
                                                         for r in answerable if r.get("mode") != "refused"]), 4),
            "context_recall": round(_mean([float(bool(r.get("context_contains_gold"))) for r in answerable]), 4),
            "context_chars_p50": round(percentile([r.get("context_chars", 0) for r in records], 50), 1),
        }
        verdicts = [r["grounded"] for r in records if r.get("grounded")]
        if verdicts:  # model answers only: the share the claim check matched to the archive, fully or partly
            out["answers"].update({f"grounded_{v}": round(verdicts.count(v) / len(verdicts), 4)
                                   for v in ("yes", "partly", "no")})
        out["refusal"] = {
            "correct_refusal_rate": round(_mean([float(r["refused"]) for r in unanswerable]), 4),
            "false_refusal_rate": round(_mean([float(r["refused"]) for r in answerable]), 4),
        }
        out["refusals_by_reason"] = refusals_by_reason(records)
        out["by_language"] = by_language(records)
        out["outcomes"] = outcomes(records)
    return out


def outcomes(records: Sequence[dict]) -> dict:
    """Counts of what each question got: an answerable one a right answer (it holds a gold answer),
    a wrong one or a refusal; an unanswerable one a refusal or an answer. The refusal rates alone
    cannot tell a refused right answer from a refused wrong one; a reader is misled only by
    `wrong_answers` (answerable answered wrongly plus unanswerable answered). A chat endpoint's
    error is none of these (`errors`)."""
    answered = [r for r in records if not r.get("refused") and r.get("mode") != "error"]
    right = sum(1 for r in answered if r["answerable"] and r.get("contains_gold"))
    wrong = sum(1 for r in answered if r["answerable"]) - right
    answered_unanswerable = sum(1 for r in answered if not r["answerable"])

    def refused(answerable: bool) -> int:
        return sum(1 for r in records if r["answerable"] is answerable and r.get("refused"))

    return {"answerable": {"right": right, "wrong": wrong, "refused": refused(True)},
            "unanswerable": {"refused": refused(False), "answered": answered_unanswerable},
            "wrong_answers": wrong + answered_unanswerable,
            "errors": sum(1 for r in records if r.get("mode") == "error")}


def report_markdown(report: dict, title: str = "Evaluation report") -> str:
    lines = [f"# {title}", ""]
    cfg = report.get("config", {})
    lines.append("Config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    lines.append("")
    lines.append("| metric | value |")
    lines.append("| --- | --- |")
    for section in ("retrieval", "retrieval_post_level", "answers", "refusal", "latency_ms"):
        for k, v in (report.get(section) or {}).items():
            lines.append(f"| {section}.{k} | {v} |")
    lines.append(f"| n_questions | {report.get('n_questions')} |")
    reasons = report.get("refusals_by_reason")
    if reasons is not None:
        lines += ["", "Refusals by reason:", "", "| reason | total | answerable (wrong) | unanswerable (right) |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['total']} | {v['answerable']} | {v['unanswerable']} |" for k, v in reasons.items()]
        if not reasons:
            lines.append("| (none refused) | 0 | 0 | 0 |")
    oc = report.get("outcomes")
    if oc:
        a, u = oc["answerable"], oc["unanswerable"]
        lines += ["", f"Outcomes: answerable {a['right']} right, {a['wrong']} wrong, {a['refused']} refused; "
                      f"unanswerable {u['refused']} refused, {u['answered']} answered; "
                      f"wrong answers {oc['wrong_answers']}."]
    langs = report.get("by_language")
    if langs:
        def cell(v):
            return "—" if v is None else v

        lines += ["", "By question language:", "",
                  "| lang | n | answerable | unanswerable | answerable refused | unanswerable refused "
                  "| contains gold | first sentence contains gold |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['n']} | {v['n_answerable']} | {v['n_unanswerable']} | {cell(v['answerable_refused'])} "
                  f"| {cell(v['unanswerable_refused'])} | {cell(v['contains_gold'])} "
                  f"| {cell(v['first_sentence_contains_gold'])} |" for k, v in langs.items()]
    return "\n".join(lines) + "\n"


def flatten(report: dict, prefix: str = "") -> dict[str, float]:
    """Numeric values by dotted path (`refusal.false_refusal_rate`, `by_language.en.n`); config left out."""
    out = {}
    for key, val in report.items():
        if isinstance(val, dict) and not (key == "config" and not prefix):
            out.update(flatten(val, f"{prefix}{key}."))
        elif isinstance(val, (int, float)) and not isinstance(val, bool):
            out[f"{prefix}{key}"] = val
    return out


def compare_reports(a: dict, b: dict) -> str:
    """Side-by-side table of two reports with differences (B - A)."""
    fa, fb = flatten(a), flatten(b)
    keys = list(dict.fromkeys([*fa, *fb]))
    width = max(len(k) for k in keys) if keys else 10
    lines = [f"{'metric':<{width}}  {'A':>10}  {'B':>10}  {'B-A':>10}"]
    for k in keys:
        va, vb = fa.get(k), fb.get(k)
        diff = "" if va is None or vb is None else f"{vb - va:+.4f}"
        lines.append(f"{k:<{width}}  {'' if va is None else f'{va:.4f}':>10}  {'' if vb is None else f'{vb:.4f}':>10}"
                     f"  {diff:>10}")
    ca, cb = a.get("config", {}), b.get("config", {})
    for k in dict.fromkeys([*ca, *cb]):
        if ca.get(k) != cb.get(k):
            lines.append(f"config.{k}: A={ca.get(k)!r}  B={cb.get(k)!r}")
    return "\n".join(lines)


def load_report(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read report {p}: {exc}") from None
