"""rag.text: the one home of normalisation, sentences, bigrams, citation markers and script detection."""

from __future__ import annotations

from rag.text import (CITATION_RE, bigram_tokens, char_ngrams, content_bigrams, dedup_key, defuse_markers,
                      fenced_lines, has_cjk, is_english, is_fence, normalize, outside_fences, split_segments,
                      split_sentences, strip_citations)


def test_normalize_folds_width_case_and_space():
    assert normalize("ＡＰＩ の　p95 は 85 ms") == "apiのp95は85ms"
    assert dedup_key("「同じ文」です。") == dedup_key("同じ文です") == "同じ文です"


def test_sentences_keep_their_delimiters_and_drop_blanks():
    assert split_sentences("一文目。二文目！\n三行目") == ["一文目。", "二文目！", "三行目"]
    assert split_sentences("「引用です。」と書いた。") == ["「引用です。」と書いた。"]


def test_a_quotation_stays_in_its_sentence():
    # a title's "!" or a quoted sentence's 。 does not cut the sentence that quotes it
    assert split_sentences("『文学賞メッタ斬り!』を著した大森望は述べた。次の文。") == [
        "『文学賞メッタ斬り!』を著した大森望は述べた。", "次の文。"]
    assert split_sentences("「遅い。直して。」と訴えた。次は（注。補足。）です。") == [
        "「遅い。直して。」と訴えた。", "次は（注。補足。）です。"]
    # a bracket that never closes on its line protects nothing; a newline always ends a sentence
    assert split_sentences("括弧が「閉じない。次の文。") == ["括弧が「閉じない。", "次の文。"]
    assert split_sentences("「一行目。\n二行目。」") == ["「一行目。", "二行目。」"]
    # chunking and cleaning cut as they always did, so an index stays what it was
    assert split_sentences("「引用です。」と書いた。", keep_quotes=False) == ["「引用です。」", "と書いた。"]


def test_segments_rebuild_the_text_exactly():
    text = "First one. Second one.\n日本語の文。次の文！"
    assert "".join(split_segments(text)) == text
    assert split_segments(text) == ["First one.", " Second one.", "\n", "日本語の文。", "次の文！"]


def test_bigrams_latin_words_whole_cjk_pairs():
    assert bigram_tokens("PostgreSQLの索引") == ["postgresql", "の索", "索引"]
    assert bigram_tokens("犬") == ["犬"]
    # citation markers and particle-only bigrams do not count as content
    assert content_bigrams("p95 は[1]、85ms。") == content_bigrams("p95は85ms") == {"p95", "85ms"}
    assert "した" not in content_bigrams("有効にした") and "有効" in content_bigrams("有効にした")
    assert char_ngrams("ab c", 3) == {"abc"}


def test_citation_markers():
    text = "答え[1]。続き【2】と［3］、[1, 2][^4]。"
    assert [m.group(1) for m in CITATION_RE.finditer(text)] == ["1", "2", "3", "1, 2", "4"]
    assert strip_citations(text) == "答え。続きと、。"
    assert defuse_markers("本文の[3]と[1, 2]") == "本文の〔3〕と〔1, 2〕"
    assert not CITATION_RE.search(defuse_markers("本文の[3]"))


def test_script_detection():
    assert is_english("What runtime does hibiki use?") and not has_cjk("What runtime?")
    assert not is_english("hibikiはどのランタイム？") and has_cjk("hibikiはどのランタイム？")
    assert not is_english("42") and has_cjk("々") and has_cjk("ー")


def test_claim_check_and_highlighting_compare_the_same_bigrams():
    from rag.app import bigrams

    for s in ("注文履歴 API の p95 レイテンシは 320ms[1]。", "CSPを有効にした", "A first. [2]"):
        assert bigrams(s) == content_bigrams(s)


def test_fence_lines_open_with_three_backticks_or_tildes_at_any_indent():
    assert is_fence("```") and is_fence("~~~~ python") and is_fence("   ```sql") and is_fence("```sql\nx\n```")
    assert not is_fence("``") and not is_fence("```a``` はインラインコード") and not is_fence("本文 ```")


def test_a_fence_closes_only_with_its_own_character_at_least_as_long():
    lines = ["本文", "````md", "```python", "x = 1", "```", "~~~", "````", "後", "~~~", "```", "~~~", "最後"]
    assert fenced_lines(lines) == [False, True, True, True, True, True, True, False, True, True, True, False]
    assert fenced_lines(["```", "閉じない", ""]) == [True, True, True]   # runs to the end, as rendered
    assert fenced_lines(["```", "x", "``` 後ろに文字", "y", "```"]) == [True] * 5


def test_outside_fences_changes_only_the_text_between_code_blocks():
    text = "a<x>\n```html\n<x>\n```\n<x>b\n  ~~~\n<x>\n  ~~~"
    assert outside_fences(text, lambda t: t.replace("<x>", "")) == "a\n```html\n<x>\n```\nb\n  ~~~\n<x>\n  ~~~"
    seen: list[str] = []
    assert outside_fences(text, lambda t: seen.append(t) or t) == text
    assert seen == ["a<x>\n", "\n<x>b\n"]   # each stretch whole, with the newlines around the blocks
    assert outside_fences("```\n<x>", lambda t: "") == "```\n<x>"   # an unclosed block is code to the end
