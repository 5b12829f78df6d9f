"""Refusals of two kinds, decided by small functions over scores.

- "off_archive": the archive does not cover the question at all. Decided before any answering,
  from retrieval evidence (best dense cosine, idf-weighted coverage of the question's terms by the
  top passages). With a chat endpoint this gate is loose (it only stops what is clearly off the
  archive); the model then decides the rest.
- "not_stated": the archive covers the topic but not the asked fact. With a chat endpoint the
  model replies with `MARKER`; without one, the question names an identifier (a version, a CVE
  id) that none of the sources holds, it asks how many (何名) and no source states a count of
  that kind, or the extractive answerer's best per-sentence answer score is below a threshold.
  Any answerer that scores sentences (the overlap scorer of `extractive.overlap_answer`, or a
  learned sentence ranker) plugs in through `no_answer`.
"""

from __future__ import annotations

import re
from typing import Sequence

OFF_ARCHIVE = "off_archive"
NOT_STATED = "not_stated"

# What the system prompt asks the model to reply, alone, when the sources do not hold the answer.
MARKER = "NO_ANSWER_IN_SOURCES"
_MARKER_RE = re.compile(r"[\[【「\"'`*\s]*NO[_ ]ANSWER[_ ]IN[_ ]SOURCES[\]】」\"'`*.。\s]*", re.I)


def off_archive(dense: float | None, coverage: float, cjk_question: bool, min_dense: float,
                min_coverage: float) -> bool:
    """The retrieval evidence says the archive does not cover the question.

    Coverage counts for questions written in Japanese only: a cross-lingual question shares few
    terms with Japanese posts even when it is answerable.
    """
    if cjk_question and coverage < min_coverage:
        return True
    return dense is not None and dense < min_dense


def missing_identifiers(identifiers: Sequence[str], held: Sequence[set[str]]) -> list[str]:
    """The question's identifiers (versions, CVE ids: `question.key_tokens`) that the sources lack.

    A question about Ruby 3.3.10 retrieves the posts on 3.3.9 and 3.3.12; quoting them would
    answer about another release. `held`: per source, the identifiers it holds."""
    return [t for t in dict.fromkeys(identifiers) if not any(t in h for h in held)]


# How a count in a post may be written for the counter a question asks with (何名 -> 30人 too).
_COUNT_UNITS = {
    "名": ("名", "人"), "人": ("人", "名"), "年間": ("年",), "日間": ("日",), "週間": ("週",),
    "か月": ("か月", "ヶ月", "カ月", "ヵ月", "ケ月", "箇月"), "か国": ("か国", "ヶ国", "カ国", "ヵ国", "ケ国"),
    "か所": ("か所", "ヶ所", "カ所", "箇所"), "歳": ("歳", "才"), "才": ("才", "歳"),
    "%": ("%", "パーセント"), "パーセント": ("パーセント", "%"), "キロ": ("キロ", "kg", "km"),
    "メートル": ("メートル", "m"), "グラム": ("グラム", "g"), "ドル": ("ドル", "$", "usd"), "円": ("円", "jpy", "¥"),
    "バイト": ("バイト", "b", "kb", "mb", "gb", "tb"),
}
_BEFORE_NUMBER = {"ドル": r"(?:\$|us\$|usd)", "円": r"(?:¥|jpy)"}   # $100, ¥3,000
for _a, _b in (("ヶ月", "か月"), ("カ月", "か月"), ("ヵ月", "か月"), ("ヶ国", "か国"), ("カ国", "か国"),
               ("ヶ所", "か所"), ("カ所", "か所"), ("箇所", "か所")):
    _COUNT_UNITS[_a] = _COUNT_UNITS[_b]
_NUMBER = r"(?:\d[\d,.]*|[〇一二三四五六七八九十百千万億兆数幾半]+)"
_HEDGE = r"(?:余|以上|以下|未満|超|近く|ほど|程度|強|弱|もの)"   # 30余名, 100人以上


def count_stated(counter: str, texts: Sequence[str]) -> bool:
    """Some text states a count with the question's counter (「何名」: 30名, 約三十人, 数百人).

    `texts` are folded (NFKC, lower case): the question asks 何ファイル, the release notes must say
    how many files; a sentence whose number was a template variable (「  ファイルが変更され」) does not."""
    units = _COUNT_UNITS.get(counter, (counter,))
    rx = re.compile(_NUMBER + r"\s*(?:" + _HEDGE + r"\s*)?(?:" + "|".join(map(re.escape, units)) + ")")
    before = _BEFORE_NUMBER.get(counter)
    rx_before = re.compile(before + r"\s*\d") if before else None
    return any(rx.search(t) or (rx_before is not None and rx_before.search(t)) for t in texts)


def no_answer(sentence_scores: Sequence[float], min_score: float) -> bool:
    """No sentence answers: the best per-sentence answer score is below `min_score` (or none)."""
    return not sentence_scores or max(sentence_scores) < min_score


def is_marker_reply(text: str) -> bool:
    """The model said the sources do not hold the answer (the marker alone, maybe decorated)."""
    return bool(_MARKER_RE.fullmatch(text or "")) and MARKER.lower() in (text or "").lower().replace(" ", "_")


def could_become_marker(text: str) -> bool:
    """While streaming: the text so far may still turn out to be the marker, so hold it back."""
    t = re.sub(r"^[\[【「\"'`*\s]+", "", text or "").upper().replace(" ", "_")
    return MARKER.startswith(t) or t.startswith(MARKER)


def window_coverage(question_weights: dict[str, float], unknown_weight: float,
                    sentence_terms: Sequence[set[str]], window: int = 1) -> list[float]:
    """Per sentence: idf-weighted share of the question's terms found in it and its neighbours.

    `question_weights` maps each question term known to the archive to its idf; terms unknown to
    the archive weigh `unknown_weight` each and are never found. A sentence that answers shares
    the question's rare terms (the fact's subject), within a sentence or two of it.
    """
    total = sum(question_weights.values()) + unknown_weight
    if total <= 0:
        return [0.0] * len(sentence_terms)
    out = []
    for i in range(len(sentence_terms)):
        near: set[str] = set()
        for j in range(max(0, i - window), min(len(sentence_terms), i + window + 1)):
            near |= sentence_terms[j]
        out.append(sum(w for t, w in question_weights.items() if t in near) / total)
    return out
