"""Extractive answers that lead with the answer: question types, spans, the learned ranker, the
model file (bundled, absent, broken) and the hook in the assistant. Passages are hand-written."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rag import extractive as ex

PG_Q = "PostgreSQLのインデックスを見直したとき、p95はどれくらい下がった？"
PG_SOURCES = [
    "注文履歴の API が遅いという問い合わせが増えたので、PostgreSQL 13 のインデックスを見直しました。"
    "対象のテーブルは約4,800万行あります。",
    "## 結果\n注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました。ディスク使用量も約14GB減りました。",
]
DATE_Q = "Ruby 2.0.0 が公開されたのはいつですか？"
DATE_SOURCES = [
    "Ruby 2.0.0 の公開について、開発チームからのお知らせです。Ruby 2.0.0 は 2013年2月24日 に公開されました。"
    "ダウンロードは公式サイトからどうぞ。",
]


@pytest.fixture(scope="module")
def reader():
    r = ex.load_reader()
    assert r is not None, "the bundled model rag/models/reader.json is missing"
    return r


def test_question_type_and_focus():
    assert ex.question_type(DATE_Q) == "when"
    assert ex.question_type("最新のバージョンはいくつ？") == "version"
    assert ex.question_type("この記事を書いたのは誰ですか") == "who"
    assert ex.question_type("会場はどこでしたか？") == "where"
    assert ex.question_type(PG_Q) == "number"
    assert ex.question_type("なぜ遅かったのですか") == "reason"
    assert ex.question_type("Ruby を触ってみた感想") == ""
    assert ex.question_focus(PG_Q) == "p95はどれくらい下がった?"
    assert ex.question_focus("芥川賞の受賞者は誰なの?") == "芥川賞の受賞者は誰なの?"


def test_span_candidates_hold_dates_versions_numbers_and_names():
    s = "手塚治虫は2005年6月17日に Ruby 2.7.0 を試し、p95 は 320ms → 85ms になった。"
    texts = {sp.text for sp in ex.span_candidates("いつ試しましたか", s)}
    assert "2005年6月17日" in texts
    assert any("2.7.0" in t for t in ex.span_candidates("どのバージョン？", s) for t in [t.text])
    assert any(t.text.replace(" ", "") == "320ms→85ms" for t in ex.span_candidates("p95はどれくらい？", s))
    person = [sp for sp in ex.span_candidates("誰が試した？", s) if sp.person]
    assert [sp.text for sp in person] == ["手塚治虫"]


def test_candidates_skip_headings_code_short_and_repeated_sentences():
    cands = ex.candidates(["# 見出し\n本文の一文目です。短い。\n```\ncode()\n```", "本文の一文目です。別の文です。"])
    assert [(c.source_n, c.sentence) for c in cands] == [(1, "本文の一文目です。"), (2, "別の文です。")]


def test_a_list_item_carries_the_line_that_introduces_its_list():
    text = ("松江Ruby会議07 を次のとおり開催します。\n\n* 日時: 2015年10月24日\n* 会場: [松江テルサ４F](https://x)\n\n"
            "## 脆弱性の存在するバージョン\n1.8系\n: 1\\.8.4以前の全てのバージョン\n\n## 対応\n- 更新してください")
    got = [(c.sentence, c.context) for c in ex.candidates([text])]
    assert got == [("松江Ruby会議07 を次のとおり開催します。", ""),
                   ("* 日時: 2015年10月24日", "松江Ruby会議07 を次のとおり開催します。"),
                   ("* 会場: 松江テルサ４F", "松江Ruby会議07 を次のとおり開催します。"),
                   ("1.8.4以前の全てのバージョン", "1.8系"),        # a kramdown definition: its term
                   ("- 更新してください", "対応")]                   # right under a heading: the heading
    item = ex.candidates([text])[2]
    assert item.for_reading() == "松江Ruby会議07 を次のとおり開催します。 * 会場: 松江テルサ４F"
    assert ex.candidates(["本文の一文目です。"])[0].for_reading() == "本文の一文目です。"


def test_a_hand_wrapped_paragraph_is_read_as_one_and_its_sentences_end_at_their_stops():
    text = ("この脆弱性は Apple 社が発見したものを、Hideki\nYamane 氏が報告したものです。ハッシュ関数を\n"
            "SipHash に変更して\nいます。\n\n* 項目が\n  続く\n* 次の項目\n```\ncode()\nmore()\n```\n"
            "[\\[ruby-dev:42003\\]][5] で\n公開されました。")
    assert ex.passage_sentences(text) == [
        "この脆弱性は Apple 社が発見したものを、Hideki Yamane 氏が報告したものです。",
        "ハッシュ関数を SipHash に変更しています。",            # a space where Latin meets, none between kana
        "* 項目が続く", "* 次の項目",                            # an item's own wrap, not the next item
        "[ruby-dev:42003] で公開されました。"]                   # a reference link's text, escapes and all
    # the overlap answerer (no model files) reads the same way: the joined sentence, the code unread
    assert ex.overlap_answer("Hideki Yamane 氏が報告したのは？", [text]).split("\n")[0] == \
        "この脆弱性は Apple 社が発見したものを、Hideki Yamane 氏が報告したものです[1]。"
    assert "code()" not in ex.overlap_answer("code() more()", [text])


def test_overlap_answer_quotes_the_best_sentence_the_next_one_and_close_seconds_in_reading_order():
    # question bigrams 犬の の名 名前 前は, weight 1: "犬の名前を決めた。" holds 3 (9 chars, passage 1),
    # "犬の名前はポチです。" 4 (10 chars, passage 2): 3/(1+.15 ln 10)+.3 = 2.530, 4/(1+.15 ln 11)+.15 = 3.092
    q = "犬の名前は？"
    sources = ["犬の名前を決めた。", "犬の名前はポチです。散歩は毎朝です。", "犬の名前はポチです。"]
    assert np.allclose(ex.overlap_scores(q, ex.candidates(sources), lambda t: 1.0), [2.530, 3.092, 0.15], atol=1e-3)
    # the best, the sentence after it, and 2.530 >= 0.6 * 3.092; passage 3 repeats passage 2: quoted once
    assert ex.overlap_answer(q, sources) == "犬の名前を決めた[1]。\n犬の名前はポチです[2]。\n散歩は毎朝です[2]。"
    assert ex.overlap_answer(q, sources, follow=0) == "犬の名前を決めた[1]。\n犬の名前はポチです[2]。"
    assert ex.overlap_answer(q, sources, max_chars=12) == "犬の名前はポチです[2]。"
    assert ex.overlap_answer(q, ["# 見出しだけの記事です"]) == ""


def test_ranker_prefers_the_answering_sentence_to_the_one_echoing_the_question(reader):
    sources = ["Ruby 2.0.0 の公開について、開発チームからお知らせします。公開日は2013年2月24日でした。"]
    ranked = ex.rank_sentences(DATE_Q, sources, None, reader)
    assert "2013年2月24日" in ranked[0][1] and ranked[0][0] == 1
    scores = [r[2] for r in ranked]
    assert scores == sorted(scores, reverse=True) and all(0 < x < 1 for x in scores)
    # the overlap ranking (no model) picks the sentence that repeats the question's words
    assert "2013年2月24日" not in ex.rank_sentences(DATE_Q, sources, None, None)[0][1]


def test_a_version_question_ranks_the_sentence_with_the_new_version_first(reader):
    # the learned weights for "version" come from 3 training questions: read as a number question
    # (before: the version sentences scored 0.0006 and 0.001, the restatements won)
    cases = [("REXML の DoS 脆弱性を修正するには、REXML gem をどのバージョンに更新すればよいですか？",
              "REXML gem に DoS 脆弱性が見つかりました。\nこの脆弱性は、CVE-2024-35176 として登録されています。\n"
              "REXML gem を 3.2.7 以上に更新してください。\n詳しくは公式ブログをご覧ください。", "3.2.7"),
             ("Ruby 2.1.1 で変わった Hash#reject の挙動は、どのバージョンで元に戻りますか？",
              "Ruby 2.1.1 では Hash#reject の挙動が意図せず変わりました。\nこの挙動変更は Ruby 2.1.2 で元に戻る予定です。\n"
              "Hash#reject を使うコードを確認してください。", "2.1.2")]
    plain = dataclasses.replace(reader, cross=None)
    for q, text, gold in cases:
        assert ex.question_type(q) == "version"
        assert gold in ex.rank_sentences(q, [text], None, plain)[0][1], q


def test_answer_leads_with_the_span_when_the_span_model_is_confident(reader):
    sure = dataclasses.replace(reader, span_threshold=0.0)
    span, p = ex.answer_span(DATE_Q, ex.rank_sentences(DATE_Q, DATE_SOURCES, None, sure)[0][1], sure)
    assert "2013年2月24日" in span and 0 < p < 1
    body = ex.extractive_answer(DATE_Q, DATE_SOURCES, None, sure)
    first = body.split("\n")[0]
    assert first.startswith(f"{span}[1]：") and first.endswith("[1]。")
    assert "2013年2月24日 に公開されました" in first
    never = dataclasses.replace(reader, span_threshold=1.01)
    assert not ex.extractive_answer(DATE_Q, DATE_SOURCES, None, never).startswith(span)
    # untyped and why-questions get no span
    assert ex.answer_span("なぜ公開が遅れたのですか", "公開は2013年2月24日でした。", sure) is None


def test_reader_file_round_trip_and_clear_errors(reader, tmp_path):
    p = tmp_path / "r.json"
    reader.save(p)
    back = ex.Reader.load(p)
    X = ex.features(PG_Q, ex.candidates(PG_SOURCES), lambda t: 1.0)
    assert np.allclose(back.sentence.predict(X), reader.sentence.predict(X), atol=1e-5)
    assert back.span_threshold == pytest.approx(reader.span_threshold, abs=1e-4)
    assert ex.load_reader(tmp_path / "absent.json") is None
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        ex.load_reader(tmp_path / "broken.json")
    d = json.loads(p.read_text(encoding="utf-8"))
    d["sentence"]["features"] = d["sentence"]["features"][:-1]
    (tmp_path / "old.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="other features"):
        ex.load_reader(tmp_path / "old.json")


def test_assistant_uses_the_model_and_falls_back_without_it(retriever, settings, tmp_path):
    from rag.generation import Assistant

    hits = retriever.search(PG_Q, settings.top_k)
    with_model = Assistant(settings, retriever)
    assert with_model.reader is not None
    body = with_model.extractive(PG_Q, hits)
    assert "85ms" in body.split("\n")[0].replace(" ", "")
    for missing in (settings.replace(extractive_model=str(tmp_path / "none.json")),
                    settings.replace(extractive_model="off")):
        a = Assistant(missing, retriever)
        assert a.reader is None
        assert a.extractive(PG_Q, hits) == ex.overlap_answer(PG_Q, hits, retriever)
    ans = with_model.ask(PG_Q)
    assert ans.mode == "extractive" and ans.citations and all(c["supported"] for c in ans.citations)


def test_training_script_fits_a_loadable_reader(tmp_path):
    """eval/train_reader.py end to end on a hand-made SQuAD-format set (the real one is ../shared)."""
    import subprocess
    import sys

    paras = []
    for i in range(12):
        ctx = (f"第{i}号機の開発は順調だった。第{i}号機は{2000 + i}年{i % 12 + 1}月に完成した。"
               f"設計者はタナカ{i}である。部品は{100 + i}個ある。")
        paras.append({"context": ctx, "qas": [
            {"id": f"q{i}a", "question": f"第{i}号機が完成したのはいつ?",
             "answers": [{"text": f"{2000 + i}年{i % 12 + 1}月", "answer_start": ctx.index(f"{2000 + i}年")}]},
            {"id": f"q{i}b", "question": f"第{i}号機の部品はいくつ?",
             "answers": [{"text": f"{100 + i}個", "answer_start": ctx.index(f"{100 + i}個")}]}]})
    data = {"data": [{"title": f"t{j}", "paragraphs": paras[j * 3:(j + 1) * 3]} for j in range(4)]}
    (tmp_path / "jaquad_train_0000.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "reader.json"
    root = ex.DEFAULT_MODEL.parents[2]
    subprocess.run([sys.executable, str(root / "eval" / "train_reader.py"), "--train", str(tmp_path),
                    "--out", str(out)], check=True, capture_output=True, cwd=root)
    r = ex.load_reader(out)
    assert r is not None and r.span is not None and r.meta["script"] == "eval/train_reader.py"
    ranked = ex.rank_sentences("第3号機が完成したのはいつ?", ["第3号機の開発は順調だった。第3号機は2003年4月に完成した。"], None, r)
    assert "2003年4月" in ranked[0][1]


def test_the_first_cue_decides_an_english_question_the_fixed_order_a_japanese_one():
    assert ex.question_type("How many modules did the mirror hold when it launched?") == "number"
    assert ex.question_type("Which option do you add when signing a commit?") == "term"   # "when": a conjunction
    assert ex.question_type("Which RubyGems version fixes it?") == "version"
    assert ex.question_type("When was Ruby 2.1 retired?") == "when"
    assert ex.question_type("When the speed was re-examined, how much faster was it?") == "number"
    assert ex.question_type("When was Go 1.22 released, and what changed?") == "when"
    assert ex.question_type("When did the team decide which database to use?") == "when"
    assert ex.question_type("このバージョン管理ツールの作者は誰？") == "who"      # バージョン管理 is no version
    assert ex.question_type("いつも使っているエディタは何ですか") == "term"      # いつも is no when
    assert ex.question_type("『どこへ行く』を書いたのは誰ですか") == "who"          # Japanese: who before where
    # 関数は / 変数を name a thing, not a count; 人数は asks one
    assert ex.question_type("os パッケージの関数は何ですか？") == "term"
    assert ex.question_type("参加者の人数は？") == "number"


@pytest.mark.parametrize("question, sentences, missing", [
    ("ChaCha8 は何倍速いですか？", ["ChaCha8 はセキュアでかつ速い。"], "number"),
    ("ChaCha8 は何倍速いですか？", ["ChaCha8 は速い。", "ChaCha8 は 3 倍速い。"], None),
    ("Go 1.22 の ChaCha8 は何倍速い？", ["Go 1.22 の ChaCha8 は速い。"], "number"),   # 1.22 is the question's
    ("1回あたりいくら課金しますか？", ["1回ごとに課金する。"], "number"),
    ("1回あたりいくら課金しますか？", ["1回あたり0.01ドル。"], None),
    ("参加者は何人でしたか？", ["参加者は三十人を超えた。"], None),
    ("How many modules did it mirror?", ["It mirrored hundreds of modules."], None),
    ("How many modules did it mirror?", ["The mirror launched in the summer."], "number"),
    ("どのバージョンで修正されましたか？", ["Ruby 2.7.1 で修正されました。"], None),
    ("どのバージョンで修正されましたか？", ["次のリリースで修正されました。"], "version"),
    ("誰が提案しましたか？", ["提案がありました。"], None),                          # not a value question
    ("Typst 0.13 がリリースされたのは何月何日ですか？", ["Typst 0.13 の新機能を紹介する。"], "when"),
    ("サポートはいつ終了しましたか？", ["2017 年 3 月 31 日をもって終了します。"], None),   # spaced, as posts write it
    ("サポートはいつ終了しましたか？", ["昨年 3 月末にリリースされた。"], None),
    ("When was it released?", ["It was released on March 3, 2024."], None),
    ("いつ公開されましたか？", ["2017に公開された。"], None),
    ("When was it decided?", ["The decision 5 was final."], "when"),             # "dec" is no December
    ("どのバージョンが必要ですか？", ["Python 3 が必要です。"], None),
    ("Go 1.13 で追加された関数は、どのバージョンで非推奨になりましたか？", ["Go 1.22 で非推奨になった。"], None),
    ("Go 1.13 で追加された関数は、どのバージョンで非推奨になりましたか？", ["Go 1.13 で追加された。"], "version"),
])
def test_missing_value_is_the_asked_kind_no_sentence_holds(question, sentences, missing):
    assert ex.missing_value(question, sentences) == missing


def test_a_follow_up_s_value_check_counts_the_values_named_before():
    before = "Go 1.22 の ChaCha8 は速いですか？"
    assert ex.missing_value("それは何倍速い？", ["Go 1.22 の ChaCha8 は速い。"]) is None      # 1.22 looks new
    assert ex.missing_value("それは何倍速い？", ["Go 1.22 の ChaCha8 は速い。"], named_before=before) == "number"
    assert ex.missing_value("それは何倍速い？", ["Go 1.22 の ChaCha8 は 3 倍速い。"], named_before=before) is None
