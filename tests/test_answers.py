"""Answers over the sample archive: assembled context, the two refusal kinds, the marker,
front-matter questions, follow-ups, and the evaluation's context keys (real index, real
scripted endpoint on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from rag import metadata
from rag.config import Settings
from rag.generation import Assistant, Prompts
from tests.llm_server import assistant_factory, json_reply, llm_server, sse_reply  # noqa: F401

README_Q = "PostgreSQLのインデックスを見直したとき、p95はどれくらい下がった？"
POSTGRES = "2021-06-30-postgres-index"
OFF_ARCHIVE_Q = "北海道でおすすめの温泉旅館はどこ？"  # cosine 0.77, coverage 0.13 on the sample archive
ABSENT_Q = "GraphQLのスキーマ設計で編集部が採用した命名規則は？"  # on the archive's topics; no post names GraphQL


@pytest.fixture
def chat(llm_server, retriever):
    with assistant_factory(llm_server, retriever, read_timeout=2, max_retries=0) as make:
        yield make


def stream(assistant, question, **kw):
    events = list(assistant.stream(question, **kw))
    return "".join(p for k, p in events[:-1]), events[-1][1]


# ----------------------------------------------------------------------------- context


def test_the_answer_sentence_reaches_the_model_in_one_source_per_post(chat, llm_server):
    llm_server.script(sse_reply(["320msから85msに下がりました[1]。"]))
    ans = chat().ask(README_Q)
    user = llm_server.requests[-1].json["messages"][-1]["content"]
    assert "320ms から 85ms" in user
    posts = [s["post_id"] for s in ans.sources]
    assert posts[0] == POSTGRES and len(posts) == len(set(posts))
    assert ans.sources[0]["text"].startswith("〔PostgreSQLのインデックス")   # front-matter line first
    assert "date: 2021-06-30" in ans.sources[0]["text"]
    assert len(ans.sources[0]["chunk_ids"]) >= 2


def test_context_budget_setting_bounds_what_the_model_reads(chat, llm_server):
    llm_server.script(sse_reply(["x[1]。"]))
    ans = chat(context_chars=700).ask(README_Q)
    assert sum(len(s["text"]) for s in ans.sources) <= 700


# ----------------------------------------------------------------------------- refusals


def test_marker_reply_becomes_a_not_stated_refusal_with_sources(chat, llm_server):
    llm_server.script(sse_reply(["NO_ANS", "WER_IN_", "SOURCES"]))
    streamed, ans = stream(chat(), "PostgreSQLのインデックスを作った担当者の社員番号は？")
    assert ans.mode == "refused" and ans.refusal == "not_stated"
    assert "NO_ANSWER" not in streamed and streamed == ans.answer == Prompts().get("not_stated.ja")
    assert ans.sources and ans.sources[0]["post_id"] == POSTGRES
    assert ans.evidence["reason"] == "marker"


def test_an_answer_starting_like_the_marker_is_still_shown(chat, llm_server):
    llm_server.script(sse_reply(["NO", "SQLは使いません[1]。"]))
    streamed, ans = stream(chat(), README_Q)
    assert ans.mode == "llm" and streamed == ans.answer == "NOSQLは使いません[1]。"


def test_clearly_off_archive_question_is_refused_before_the_model(chat, llm_server):
    ans = chat().ask(OFF_ARCHIVE_Q)
    assert ans.mode == "refused" and ans.refusal == "off_archive"
    assert ans.answer.endswith(Prompts().get("refusal.ja"))   # after 「北海道」, which no post names
    assert llm_server.requests == []


def test_a_question_naming_what_no_post_mentions_is_refused_in_both_modes(chat, llm_server, retriever):
    ans = chat().ask(ABSENT_Q)
    assert ans.mode == "refused" and ans.refusal == "off_archive" and llm_server.requests == []
    assert ans.evidence["absent_names"] == ["GraphQL"]
    notice = Prompts().get("absent_names.ja").format(names="「GraphQL」").strip()
    assert ans.answer == notice + "\n" + Prompts().get("refusal.ja") and ans.sources
    ans = Assistant(Settings(), retriever).ask(ABSENT_Q)
    assert ans.mode == "refused" and ans.refusal == "off_archive" and ans.answer.startswith(notice)
    assert "absent_names" not in Assistant(Settings(), retriever).ask(README_Q).evidence


def test_extractive_refuses_as_not_stated_when_no_sentence_answers(retriever):
    # the gate passes (the post is on topic); the best sentence window then decides
    strict = Assistant(Settings(answer_min_score=0.99), retriever).ask(README_Q)
    assert strict.mode == "refused" and strict.refusal == "not_stated"
    assert strict.answer == Prompts().get("not_stated.ja") and strict.sources
    loose = Assistant(Settings(answer_min_score=0.0), retriever).ask(README_Q)
    assert loose.mode == "extractive" and loose.refusal is None


def test_extractive_off_archive(retriever):
    ans = Assistant(Settings(), retriever).ask(OFF_ARCHIVE_Q)
    assert ans.mode == "refused" and ans.refusal == "off_archive"


# ----------------------------------------------------------------------------- metadata, follow-ups


@pytest.mark.parametrize("question,expected", [
    ("PostgreSQLの記事を書いたのは誰？", "田中 亮"),
    ("PostgreSQLの記事のタグは？", "PostgreSQL, インデックス, チューニング"),
    ("PostgreSQLのインデックスの記事が公開されたのはいつ？", "2021-06-30"),
    ("Who wrote the post about PostgreSQL indexes?", "田中 亮"),
])
def test_questions_about_a_post_are_answered_from_its_front_matter(retriever, question, expected):
    ans = Assistant(Settings(), retriever).ask(question)
    assert ans.answered_from == "metadata" and expected in ans.answer
    assert ans.citations[0]["post_id"] == POSTGRES and ans.answer.count("[1]") == 1


def test_which_posts_lists_only_posts_on_the_subject(retriever):
    ans = Assistant(Settings(), retriever).ask("PostgreSQLについて書かれた記事はどれ？")
    assert ans.answered_from == "metadata"
    assert [c["post_id"] for c in ans.citations] == [POSTGRES]


def test_follow_up_date_extractive(retriever):
    a = Assistant(Settings(), retriever)
    first = a.ask(README_Q)
    assert first.sources[0]["post_id"] == POSTGRES
    ans = a.ask("それはいつの記事？", history=[(README_Q, first.answer)])
    assert "2021-06-30" in ans.answer and ans.citations[0]["post_id"] == POSTGRES


def test_follow_up_date_with_a_chat_endpoint(chat, llm_server):
    # the endpoint rewrites the follow-up; the date then comes from the front matter
    llm_server.script(json_reply("PostgreSQLのインデックスを見直した記事はいつの記事？"))
    ans = chat().ask("それはいつの記事？", history=[(README_Q, "320msから85msに下がりました[1]。")])
    assert "2021-06-30" in ans.answer and ans.citations[0]["post_id"] == POSTGRES
    assert len(llm_server.requests) == 1  # the rewrite only


def test_how_closely_a_metadata_question_must_name_the_title_is_a_setting(retriever):
    q = "インデックス設計の記事の著者は？"   # 0.45 of the title's terms: below the default 0.5
    by_title = Settings(metadata_described_post=False)
    assert Assistant(by_title, retriever).ask(q).answered_from == "text"
    ans = Assistant(dataclasses.replace(by_title, metadata_min_title_match=0.4), retriever).ask(q)
    assert ans.answered_from == "metadata" and "田中 亮" in ans.answer
    assert ans.citations[0]["post_id"] == POSTGRES


def test_a_post_described_in_other_words_than_its_title_gets_its_front_matter(retriever):
    q = "注文履歴APIの遅さを部分インデックスで直した話を書いた記事の著者は誰ですか？"
    assert Assistant(Settings(metadata_described_post=False), retriever).ask(q).answered_from == "text"
    ans = Assistant(Settings(), retriever).ask(q)
    assert ans.answered_from == "metadata" and "田中 亮" in ans.answer
    assert ans.citations[0]["post_id"] == POSTGRES
    # most of the description is in that post, but no post names GraphQL: the gate refuses it
    off = "GraphQLの注文履歴APIを部分インデックスで速くした記事はいつ公開されましたか？"
    assert metadata.described_post(off, Assistant(Settings(), retriever).context(
        retriever.search(off, Settings().top_k, "hybrid"))) is not None
    ans = Assistant(Settings(), retriever).ask(off)
    assert ans.mode == "refused" and ans.refusal == "off_archive" and "2021-06-30" not in ans.answer


def test_what_the_extractive_answer_reads_and_quotes_is_set_by_the_answer_settings(retriever):
    dense = [h.dense_score for h in retriever.search(OFF_ARCHIVE_Q, Settings().top_k, "hybrid")]
    three = Assistant(Settings(), retriever).ask(OFF_ARCHIVE_Q).evidence
    one = Assistant(Settings(answer_passages=1), retriever).ask(OFF_ARCHIVE_Q).evidence
    assert three["dense"] == round(max(dense[:3]), 4) and one["dense"] == round(dense[0], 4) < three["dense"]
    assert one["coverage"] < three["coverage"]   # the evidence is measured on the passages read

    def quoted(settings):
        return Assistant(settings, retriever).ask("How did the p95 latency change?").answer.split("\n\n")[-1].split("\n")

    full = quoted(Settings())
    assert len(full) >= 2   # the best sentence and the ones scoring at least half as well
    assert quoted(Settings(answer_max_chars=1)) == full[:1]   # the best sentence, always
    assert quoted(Settings(answer_follow_share=1.01)) == full[:1]


def test_a_title_that_does_not_name_the_asked_version_is_not_answered_from_metadata(retriever):
    ans = Assistant(Settings(), retriever).ask("PostgreSQL 9.6.24 がリリースされたのはいつですか？")
    assert ans.answered_from == "text"


# ----------------------------------------------------------------------------- evaluation


def test_eval_records_the_exact_context_and_reports_the_new_keys(retriever):
    from rag.evaluation import evaluate_question, summarize

    a = Assistant(Settings(), retriever)
    qs = [{"id": "1", "question": README_Q, "answers": ["85ms"], "gold_posts": [POSTGRES], "answerable": True},
          {"id": "2", "question": README_Q, "answers": ["存在しない答え"], "gold_posts": [POSTGRES],
           "answerable": True},
          {"id": "3", "question": OFF_ARCHIVE_Q, "answers": [], "gold_posts": [], "answerable": False}]
    recs = [evaluate_question(q, retriever, a, 10, "hybrid", False) for q in qs]
    fresh = a.ask(README_Q)
    assert [s["text"] for s in recs[0]["sources"]] == [s["text"] for s in fresh.sources]
    assert recs[0]["context_contains_gold"] is True and recs[1]["context_contains_gold"] is False
    assert recs[0]["context_chars"] == sum(len(s["text"]) for s in fresh.sources)
    report = summarize(recs, 10, False)
    assert report["answers"]["context_recall"] == 0.5
    assert report["answers"]["context_chars_p50"] == sorted(r["context_chars"] for r in recs)[1]
    assert "first_sentence_contains_gold" in report["answers"]
    assert {"contains_gold", "char_f1", "citation_precision", "citation_recall"} <= set(report["answers"])


def test_marker_endpoint_for_eval_answers_only_from_the_sources_it_was_given():
    from eval.marker_llm import reply_for
    from rag.refusal import MARKER

    user = ('<sources>\n<source n="1" title="a" date="">\n前置き\n</source>\n'
            '<source n="2" title="b" date="">\np95 は 85ms に下がりました\n</source>\n</sources>\n\n'
            '<question>\nどれくらい？\n</question>\n\nreminder')
    assert reply_for(user, {"どれくらい？": ["85ms"]}) == "85msです[2]。"
    assert reply_for(user, {"どれくらい？": ["90ms"]}) == MARKER
    assert reply_for(user, {}) == MARKER


def test_extractive_answer_holds_the_readme_number_and_never_quotes_the_front_matter_line(retriever):
    ans = Assistant(Settings(), retriever).ask(README_Q)
    body = ans.answer.split("\n\n", 1)[1]
    assert "320ms から 85ms" in body
    assert "〔" not in body and "date:" not in body
    # the reader reads the retrieved chunks, not the assembled post that opens with its intro:
    # the answering sentence comes first, cited by the assembled source that holds it
    first = body.split("\n")[0]
    assert "320ms から 85ms" in first and re.search(r"\[(\d+)\]", first)
    n = int(re.search(r"\[(\d+)\]", first).group(1))
    assert "320ms から 85ms" in ans.sources[n - 1]["text"]


def test_an_english_question_is_told_the_quotes_are_japanese(retriever):
    a = Assistant(Settings(), retriever)
    note = Prompts().get("quoted_japanese.en")
    ans = a.ask("After the PostgreSQL index tuning, what was the p95 latency of the order history API?")
    assert ans.mode == "extractive" and note in ans.answer, ans.answer
    assert ans.answer.index(note) < ans.answer.index("[1]")   # before the quotes, after the mode note
    assert note not in a.ask(README_Q).answer


def test_an_english_question_over_japanese_posts_is_gated_lower(retriever):
    q = "After the PostgreSQL index tuning, what was the p95 latency of the order history API?"
    dense = Assistant(Settings(), retriever).ask(q).evidence["dense"]
    strict = Settings(refusal_min_dense=dense + 0.01, crosslingual_dense_offset=0.0)
    ans = Assistant(strict, retriever).ask(q)
    assert ans.mode == "refused" and ans.evidence["reason"] == "dense"
    ans = Assistant(strict.replace(crosslingual_dense_offset=0.02), retriever).ask(q)
    assert ans.mode == "extractive" and "85ms" in ans.answer, ans.answer
    # the same cosine bar for a Japanese question is not lowered
    ja = Assistant(Settings(), retriever).ask(README_Q).evidence["dense"]
    ans = Assistant(Settings(refusal_min_dense=ja + 0.01, crosslingual_dense_offset=0.02, refusal_reader_p=1.01),
                    retriever).ask(README_Q)
    assert ans.mode == "refused" and ans.evidence["reason"] == "dense"
