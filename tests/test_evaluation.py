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
