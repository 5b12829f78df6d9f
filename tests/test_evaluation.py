import json
import math

import pytest

from rag.evaluation import (char_f1, contains_answer, hit_at_k, load_questions, ndcg_at_k, percentile,
                            reciprocal_rank, relevance, retrieval_metrics)


def test_rank_metrics_hand_computed():
    rels = [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    m = retrieval_metrics(rels)
    assert m["hit@1"] == pytest.approx(1 / 3)
    assert m["hit@3"] == pytest.approx(2 / 3)
    assert m["mrr@10"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 + 0) / 3)
    assert hit_at_k([0, 0, 1], 2) == 0 and reciprocal_rank([0, 0, 1]) == pytest.approx(1 / 3)
    assert ndcg_at_k([1, 1]) == pytest.approx(1.0)


def test_relevance_needs_gold_post_and_answer():
    rel = relevance(["a", "b", "a"], ["答えは８５ｍｓ", "答えは85ms", "関係ない"], ["a"], ["85ms"])
    assert rel == [1, 0, 0]  # full-width folds; b is not a gold post
    assert relevance(["a", "b"], ["x", "y"], ["a"], ["85ms"], post_level=True) == [1, 0]
    assert contains_answer("p95 は 85 ms", ["85ms"])


def test_char_f1_and_percentile():
    assert char_f1("シャルル9世", "シャルル９世") == 1.0
    assert char_f1("abc", "xyz") == 0.0
    assert char_f1("ab", "abcd") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5


def test_load_questions_names_bad_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"id": "1", "question": "q", "answers": [], "gold_posts": [], "answerable": false}\n{bad\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2"):
        load_questions(p)


def test_sample_question_set_is_well_formed():
    from tests.conftest import EXAMPLES, ROOT

    qs = load_questions(ROOT / "eval" / "questions.jsonl")
    assert len(qs) >= 40
    assert any(not q["answerable"] for q in qs)
    for q in qs:
        for pid in q["gold_posts"]:
            assert any((EXAMPLES / f"{pid}{ext}").exists() for ext in (".md", ".markdown")), pid


def test_evaluation_reuses_its_hits_for_the_same_answer(retriever, settings):
    from rag.evaluation import evaluate_question
    from rag.generation import Assistant

    class CountingRetriever(type(retriever)):
        calls = 0

        def search(self, *a, **kw):
            CountingRetriever.calls += 1
            return super().search(*a, **kw)

    counting = CountingRetriever(retriever.reader, retriever.embedder, settings)
    assistant = Assistant(settings, counting)
    q = {"id": "t1", "question": "注文履歴APIのp95レイテンシはいくつからいくつに下がった？", "answers": ["85ms"],
         "gold_posts": ["2021-06-30-postgres-index"], "answerable": True}
    rec = evaluate_question(q, counting, assistant, 10, "hybrid", retrieval_only=False)
    assert CountingRetriever.calls == 1  # one search per question, not two
    fresh = Assistant(settings, retriever).ask(q["question"])
    assert rec["answer"] == fresh.answer and rec["mode"] == fresh.mode == "extractive"
    assert [c["chunk_id"] for c in rec["citations"]] == [c["chunk_id"] for c in fresh.citations]


def _rec(question, answerable, refused, refusal=None, fs=None, gold=None, **kw):
    return {"id": question, "question": question, "answerable": answerable, "refused": refused,
            "refusal": refusal, "first_sentence_contains_gold": fs, "contains_gold": gold, **kw}


# three Japanese and two English questions, hand-scored below
RECORDS = [
    _rec("iota とは何ですか？", True, False, fs=True, gold=True),
    _rec("GnuPG の既定の鍵長は？", True, True, "not_stated"),
    _rec("Go 3.0 はいつ出ましたか？", False, True, "off_archive"),
    _rec("When was Go 1.13 released?", True, False, fs=False, gold=True),
    _rec("Who maintains Typst?", False, True, "not_stated"),
]


def test_refusals_by_reason_hand_counted():
    from rag.evaluation import refusals_by_reason

    assert refusals_by_reason(RECORDS) == {
        "not_stated": {"total": 2, "answerable": 1, "unanswerable": 1},
        "off_archive": {"total": 1, "answerable": 0, "unanswerable": 1},
    }
    assert refusals_by_reason([_rec("q", False, True)]) == {"unknown": {"total": 1, "answerable": 0,
                                                                       "unanswerable": 1}}
    assert refusals_by_reason([_rec("q", True, False)]) == {}


def test_question_language_prefers_the_lang_field():
    from rag.evaluation import question_language

    assert question_language({"question": "When was Go 1.13 released?"}) == "en"
    assert question_language({"question": "Go 1.13 はいつ？"}) == "ja"
    assert question_language({"question": "1.13?"}) == "other"
    assert question_language({"question": "Go 1.13 はいつ？", "lang": "EN"}) == "en"


def test_by_language_hand_computed():
    from rag.evaluation import by_language

    out = by_language(RECORDS)
    assert list(out) == ["en", "ja"]
    assert out["ja"] == {"n": 3, "n_answerable": 2, "n_unanswerable": 1, "answerable_refused": 0.5,
                         "unanswerable_refused": 1.0, "contains_gold": 1.0, "first_sentence_contains_gold": 1.0}
    assert out["en"] == {"n": 2, "n_answerable": 1, "n_unanswerable": 1, "answerable_refused": 0.0,
                         "unanswerable_refused": 1.0, "contains_gold": 1.0, "first_sentence_contains_gold": 0.0}
    # a record's own lang wins; a group with no unanswerable question has no refusal rate for them
    only = by_language([_rec("iota とは？", True, False, fs=True, gold=False, lang="en")])
    assert only == {"en": {"n": 1, "n_answerable": 1, "n_unanswerable": 0, "answerable_refused": 0.0,
                           "unanswerable_refused": None, "contains_gold": 0.0,
                           "first_sentence_contains_gold": 1.0}}


def test_outcomes_hand_counted():
    from rag.evaluation import outcomes

    assert outcomes(RECORDS) == {"answerable": {"right": 2, "wrong": 0, "refused": 1},
                                 "unanswerable": {"refused": 2, "answered": 0}, "wrong_answers": 0, "errors": 0}
    more = RECORDS + [_rec("Go 1.22 の乱数は何倍速い？", True, False, fs=False, gold=False),   # answered wrongly
                      _rec("Typst 0.13 は何月何日？", False, False),                          # answered, unanswerable
                      _rec("GnuPG 2.5 は？", True, False, gold=False, mode="error"),         # the endpoint failed
                      _rec("Typst 0.14 は何月何日？", False, False, mode="error")]
    assert outcomes(more) == {"answerable": {"right": 2, "wrong": 1, "refused": 1},
                              "unanswerable": {"refused": 2, "answered": 1}, "wrong_answers": 2, "errors": 2}


def test_summary_report_and_compare_carry_the_new_keys():
    from rag.evaluation import compare_reports, flatten, report_markdown, summarize

    recs = [{**r, "rel": [1], "rel_post": [1], "citation_precision": None, "citation_recall": None, "char_f1": None,
             "latency_ms": {"retrieval": 1.0, "generation": 0.0, "total": 1.0}, "mode": "refused" if r["refused"]
             else "extractive"} for r in RECORDS]
    report = summarize(recs, 10, retrieval_only=False)
    assert report["refusal"] == {"correct_refusal_rate": 1.0, "false_refusal_rate": pytest.approx(1 / 3, abs=1e-4)}
    assert report["refusals_by_reason"]["not_stated"]["total"] == 2
    assert report["by_language"]["en"]["n"] == 2
    flat = flatten(report)
    assert flat["by_language.ja.answerable_refused"] == 0.5 and flat["refusals_by_reason.off_archive.total"] == 1
    assert flat["refusal.false_refusal_rate"] == report["refusal"]["false_refusal_rate"]
    md = report_markdown(report)
    assert "| not_stated | 2 | 1 | 1 |" in md
    assert "| en | 2 | 1 | 1 | 0.0 | 1.0 | 1.0 | 0.0 |" in md
    assert report["outcomes"]["wrong_answers"] == 0 and flat["outcomes.answerable.refused"] == 1
    assert "Outcomes: answerable 2 right, 0 wrong, 1 refused; unanswerable 2 refused, 0 answered" in md
    assert "by_language.en.n" in compare_reports(report, report)
    assert "refusals_by_reason" not in summarize(recs, 10, retrieval_only=True)


@pytest.mark.parametrize("name, least", [
    ("baldanders", {"english": 10, "quote": 10, "unanswerable": 10, "metadata": 5}),
    ("efcl", {"english": 10, "quote": 8, "unanswerable": 10, "metadata": 5}),
])
def test_blog_question_set_is_well_formed(name, least):
    """eval/sets/NAME: every answer occurs in a gold post (or its front-matter date/author), and each
    kind of question the sets are for is there."""
    from collections import Counter

    from rag.corpus import split_front_matter
    from rag.text import normalize
    from tests.conftest import ROOT

    base = ROOT / "eval" / "sets" / name
    qs = load_questions(base / "questions.jsonl")
    assert len({q["id"] for q in qs}) == len(qs) >= 60
    kinds = Counter(q["kind"] for q in qs)
    assert all(kinds[k] >= n for k, n in least.items()), kinds
    for q in qs:
        assert q["lang"] in ("ja", "en") and q["answerable"] == (q["kind"] != "unanswerable"), q["id"]
        assert bool(q["answers"]) == bool(q["gold_posts"]) == q["answerable"], q["id"]
        for a in q["answers"]:
            found = False
            for pid in q["gold_posts"]:
                meta, body = split_front_matter((base / "posts" / f"{pid}.md").read_text(encoding="utf-8"))
                author = meta.get("author")
                author = author.get("name") if isinstance(author, dict) else author
                found |= (a in (str(meta.get("date", ""))[:10], author) if q["kind"] == "metadata"
                          else normalize(a) in normalize(body))
            assert found, (q["id"], a)
    if not (base / "questions_en.jsonl").exists():
        return
    # the same questions asked in English: each names the Japanese one it translates, same gold
    by_id = {q["id"]: q for q in qs}
    en = load_questions(base / "questions_en.jsonl")
    assert len(en) >= 30
    for q in en:
        src = by_id[q["translated_from"]]
        assert q["id"] == src["id"] + "-en" and q["lang"] == "en" and src["lang"] == "ja", q["id"]
        assert (q["answers"], q["gold_posts"], q["answerable"]) == (src["answers"], src["gold_posts"], src["answerable"])


def _ablation_record(qid, answerable, would_contain, question="質問？", **ev):
    evidence = dict(n_passages=3, dense=0.86, coverage=0.5, cjk_question=True, cjk_sources=True, absent_names=[],
                    unheld_clauses=[], missing_identifiers=[], missing_count=None, missing_focus=None,
                    missing_value=None, answer_score=0.4, reader_p=0.5)
    evidence.update(ev)
    thresholds = dict(min_dense=0.83, min_coverage=0.2, gate_min_dense=0.81, gate_min_coverage=0.2, reader_p=0.7,
                      min_answer_p=0.0, focus_p=0.25, answer_min_score=0.0, crosslingual_offset=0.055, value_p=0.25)
    return {"id": qid, "question": question, "answerable": answerable, "evidence": evidence,
            "thresholds": thresholds, "would_contain": would_contain, "actual_contains": None}


def test_rule_ablation_counts_what_each_rule_alone_decides():
    from eval.rule_ablation import decide_all, effects

    records = [
        _ablation_record("a", True, True),                                           # answered right
        _ablation_record("b", True, False, missing_value="number", reader_p=0.1),   # a wrong answer refused
        _ablation_record("c", False, False, missing_value="when", reader_p=0.1),    # unanswerable refused
        # two rules refuse it: neither alone decides
        _ablation_record("d", False, False, missing_value="when", missing_count="名", reader_p=0.1),
        _ablation_record("e", True, True, question="「少女歌劇」とは？", absent_names=["少女歌劇"]),  # a quoted term
        _ablation_record("f", True, True, dense=0.80, reader_p=0.75),               # the reader vouches
    ]
    assert decide_all(records) == ["right", "refused", "refused_u", "refused_u", "refused", "right"]
    out = effects(records)
    assert out["asked values"] == {"refuses_unanswerable": 1, "refuses_right": 0, "refuses_wrong": 1,
                                   "lets_through_right": 0, "lets_through_wrong": 0, "lets_through_unanswerable": 0}
    assert out["quoted titles and terms"]["refuses_right"] == 1 and "names no post holds" not in out
    assert out["reader vouching"]["lets_through_right"] == 1
    assert "counts" not in out


def _eval_records(tmp_path, name, rows):
    d = tmp_path / name
    d.mkdir()
    with open(d / "questions.jsonl", "w", encoding="utf-8") as f:
        for answerable, refused, ev in rows:
            f.write(json.dumps({"answerable": answerable, "refused": refused, "evidence": ev}) + "\n")
    return str(d)


def test_refit_reader_bars_replays_the_last_checks_and_fits_on_the_other_sets(tmp_path):
    from eval.refit_reader_bars import figures, fit, load

    rows = [
        (True, False, {"reader_p": 0.30}),                                   # right, sure enough
        (True, False, {"reader_p": 0.15, "missing_value": "number"}),        # answered at value_p 0.1
        (False, True, {"reader_p": 0.20, "missing_value": "when", "reason": "missing_value"}),
        (False, False, {"reader_p": 0.05}),                                  # answered: min_p is 0
        (False, True, {"absent_names": ["X"], "reason": "absent_names"}),    # refused before the bars
    ]
    recs = load(_eval_records(tmp_path, "a", rows))
    today = figures(recs, (0.0, 0.25, 0.25))
    assert today == {"unanswerable_refused": 2, "n_unanswerable": 3, "answerable_refused": 1, "n_answerable": 2}
    assert figures(recs, (0.0, 0.25, 0.1))["answerable_refused"] == 0          # 0.15 passes a 0.1 value bar
    assert figures(recs, (0.0, 0.25, 0.1))["unanswerable_refused"] == 1        # and so does the 0.20 one
    assert figures(recs, (0.06, 0.25, 0.25))["unanswerable_refused"] == 3      # the floor takes the 0.05 one
    # refusing the 0.20 one costs the 0.15 answer (cost 0 + 2 x 1/2); the floor alone costs 1/3
    assert fit([recs], weight=2.0) == (0.06, 0.0, 0.0)
    assert fit([recs], weight=0.5) == (0.06, 0.0, 0.25)   # an answer refused weighs less than a third
