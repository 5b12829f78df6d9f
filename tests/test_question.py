"""Reading a question (rag/question.py): names, identifiers, how-many counters, the focus noun, follow-ups."""

import pytest

from rag.config import Settings
from rag.generation import Assistant
from rag.metadata import pick_post
from rag.question import (asked_count, asked_focus, is_followup, katakana_names, key_tokens, numbered_names,
                          question_names)


def test_question_names_are_proper_nouns_quoted_terms_and_latin_names():
    assert question_names("国崎町の女性は何の事業に従事することが多いですか?") == ["国崎"]
    assert question_names("「Raven-II」はGraphQLとiOSとEC2とQAとRubyのどれ？") == ["Raven-II", "GraphQL", "iOS", "EC2"]
    assert question_names("その記事のタグは？") == []
    assert question_names("Which Tokyo team adopted GraphQL?") == []   # English: its words may be 東京 in a post


def test_katakana_names_are_dotted_runs_that_hold_a_proper_noun_or_an_unknown_word():
    assert katakana_names("イートン・カレッジとケンブリッジ") == ["イートン・カレッジ"]   # イートン: 固有名詞
    assert katakana_names("A・フィミスター・プロクターが制作") == ["フィミスター・プロクター"]
    # dotted common nouns are compounds a post may spell otherwise (ユーザインタフェース); an unknown word
    # alone may be a tech term a post writes in English (transpiler); known compounds are coined freely
    assert katakana_names("ドメイン・モデルとユーザー・インターフェースとテスト・デプロイ・監視") == []
    assert katakana_names("キンティンスヒルとトランスパイラーとフルネームとサフランパン") == []
    assert question_names("「ｲｰﾄﾝ･ｶﾚｯｼﾞ」の卒業生は？") == ["イートン", "イートン・カレッジ"]   # once, folded
    assert question_names("ルイス・クラーク探検隊は？") == ["ルイス", "クラーク", "ルイス・クラーク"]


@pytest.mark.parametrize("q,counter", [
    ("関西Ruby会議09 の参加定員は何名ですか？", "名"), ("参加者は何人でしたか？", "人"),
    ("サポートは何年間提供される契約ですか？", "年間"), ("Ruby 4.0.0 では何ファイルが変更されましたか？", "ファイル"),
    ("キースイッチは何個使いましたか？", "個"), ("シェアは何%ですか？", "%"), ("何キロですか？", "キロ"),
    ("リリースは何年何月何日でしたか？", None),         # when, not how many: a post may write 2024-08-01
    ("天守は何時代に建てられましたか？", None),          # 時代: one noun, an era not a count
    ("谷田川の下流には何台地がありますか？", None),      # 台 + 地: a word, not a count
    ("日本で最後になったのは何テーブルの様式ですか？", None),   # 何X の Y: what kind of X
    ("アルマデンの語源は何語？", None), ("なぜ遅くなったのですか？", None), ("How many files changed?", None),
])
def test_asked_count_is_the_counter_of_a_how_many_question(q, counter):
    assert asked_count(q) == counter


@pytest.mark.parametrize("q,focus", [
    ("まつもとさんが FSF 2011 Free Software Award を受け取った授賞式はどこで開かれましたか？", "授賞式"),
    ("RubyKaigi 2014 の一般価格（EarlyBird ではない通常のチケット）はいくらでしたか？", "一般価格"),  # aside left out
    ("フリードリヒ2世の母親は、誰か?", "母親"), ("関西Ruby会議09 の参加定員は何名ですか？", "参加定員"),
    ("第3回の会場はどこ？", "会場"), ("第6回大賞は誰が受賞しましたか？", "大賞"),   # a number and its counter end it
    ("RubyKaigiなどの会場はどこ？", "会場"), ("CVSS スコアはいくつですか？", "CVSS スコア"),
    ("会場はいつも満員でしたか？", None),                     # いつも: always, no question word
    ("GC はどう動きますか？", None),                          # a Latin name alone: question_names' to check
    ("第6回大賞で大賞を受賞したのはどの作品ですか？", None),   # 受賞したの: no noun before は
    ("GraphQLとは何ですか？", None), ("p95はどれくらい下がった？", None),   # とは; a number ends the run
    ("いつ公開されましたか？", None), ("When was it held?", None),
])
def test_asked_focus_is_the_noun_the_question_word_is_asked_of(q, focus):
    assert asked_focus(q) == focus


def test_identifiers_are_versions_ids_and_numbered_names():
    assert key_tokens("SQLite 3.31 と 3.3.1 と CVE-2024-1234 と 2.0.0-p0 と Ruby") == [
        "3.31", "3.3.1", "cve-2024-1234", "2.0.0-p0"]
    assert numbered_names("ジョージ4世とキュロス２世と19世紀とベビーブーム2世代") == ["ジョージ4世", "キュロス2世"]
    assert numbered_names("フリードリヒ・ヴィルヘルム3世の") == ["ヴィルヘルム3世"]


SHORT = "それはいつの記事？"                                           # under 20 characters
LEADING = "その記事で紹介されていたライブラリの最新バージョンはいくつですか？"      # opens with その記事
INSIDE = "Ruby 3.4.10 のリリース告知について、その公開日はいつでしたか？"         # その further on
PRONOUN = "Who wrote the post about feature flags, and when was it published?"
FRESH = "PostgreSQLのインデックスを見直した記事はいつ公開されましたか？"


def test_a_followup_needs_a_conversation():
    for q in (SHORT, LEADING, INSIDE, PRONOUN):
        assert not is_followup(q, False) and not is_followup(q, False, opening_only=True)


@pytest.mark.parametrize("q,anywhere,opening", [
    (SHORT, True, True),        # short: both
    (LEADING, True, True),      # points back first thing: both
    (INSIDE, True, False),      # names its post (3.4.10); only the rewrite prepends the history
    (PRONOUN, True, False),     # "it" inside a question that says which post
    (FRESH, False, False),      # long, and pointing at nothing
])
def test_one_followup_rule_two_reaches(q, anywhere, opening):
    assert len(q) >= 20 or q is SHORT
    assert is_followup(q, True) is anywhere
    assert is_followup(q, True, opening_only=True) is opening


def test_the_rewrite_and_the_metadata_answer_read_followups_as_before():
    """Without a chat endpoint the rewrite prepends the previous question to any follow-up; the
    metadata answerer takes the previous answer's first source only for one that opens by pointing."""
    a = Assistant(Settings(llm_base_url=""), retriever=None)
    history = [("Ruby 3.4.9 のリリースについて教えて", "…")]
    assert a.standalone(INSIDE, history) == f"{history[0][0]} {INSIDE}"
    assert a.standalone(FRESH, history) == FRESH
    assert a.standalone(INSIDE, []) == INSIDE

    class S:
        def __init__(self, title):
            self.title = title

    srcs = [S("Ruby 3.4.9 リリース"), S("Ruby 3.4.10 リリース")]
    assert pick_post(INSIDE, srcs, is_followup(INSIDE, True, opening_only=True)) == 1   # by its title
    assert pick_post(SHORT, srcs, is_followup(SHORT, True, opening_only=True)) == 0     # the one before


@pytest.mark.parametrize("phrase, clause", [
    ("iota をカウンタだと思い込んでいた", True), ("やっぱり Windows は面倒くさい", True),
    ("大胆で想像を絶するやり方", True),
    ("少女歌劇", False), ("ネフェルティティの胸像", False), ("見事な腕前", False), ("GOPATH 汚染問題", False),
])
def test_a_quoted_clause_says_something_a_quoted_title_names_something(phrase, clause):
    from rag.question import is_clause

    assert is_clause(phrase) is clause
