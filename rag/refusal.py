"""Refusals of two kinds, decided by small functions over scores.

- "off_archive": the archive does not cover the question at all. Decided before any answering,
  from retrieval evidence (best dense cosine, idf-weighted coverage of the question's terms by the
  top passages). With a chat endpoint this gate is loose (it only stops what is clearly off the
  archive); the model then decides the rest.
- "not_stated": the archive covers the topic but not the asked fact. With a chat endpoint the
  model replies with `MARKER`; without one, the question names an identifier (a version, a CVE
  id) that none of the sources holds, it asks how many (何名) and no source states a count of
  that kind, the best per-sentence overlap score is below a threshold, or the cross reader is
  unsure of its best sentence (more so when the question asks for a number, version or date that none
  of the sentences it would quote holds, or of a noun no post uses).

The evidence for both is gathered once per question (`Evidence`) and `decide` turns it into the
decision; every cut-off it reads is a setting (`Thresholds`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

OFF_ARCHIVE = "off_archive"
NOT_STATED = "not_stated"

# What the system prompt asks the model to reply, alone, when the sources do not hold the answer.
MARKER = "NO_ANSWER_IN_SOURCES"
_MARKER_RE = re.compile(r"[\[【「\"'`*\s]*NO[_ ]ANSWER[_ ]IN[_ ]SOURCES[\]】」\"'`*.。\s]*", re.I)


ANSWER = "answer"


@dataclass(frozen=True)
class Evidence:
    """Everything the answer-or-refuse decision reads, gathered once per question.

    `dense`: best cosine of the top three passages; `coverage`: idf-weighted share of the question's
    terms they hold; `cjk_question` / `cjk_sources`: the question / the top passages have kana or
    kanji (coverage counts for Japanese questions only: a cross-lingual question shares few terms
    with the posts, and its cosines sit lower, `Thresholds.crosslingual_offset`); `absent_names`:
    names and quoted titles no post holds; `unheld_clauses`: quoted clauses no chunk holds most of
    (recorded, not refused on). The rest are read without a chat endpoint only (the model decides
    there): identifiers and the how-many counter no source states, the focus noun no post uses, the
    best overlap score of a sentence window, and, from one reading, the cross reader's P(the best
    sentence answers) and the number, version or date asked for that none of the sentences the
    answer quotes holds (`missing_value`), read only where it can change the decision
    (`reader_may_change`)."""

    n_passages: int
    dense: float | None
    coverage: float
    cjk_question: bool
    cjk_sources: bool = True
    absent_names: tuple[str, ...] = ()
    unheld_clauses: tuple[str, ...] = ()
    missing_identifiers: tuple[str, ...] = ()
    missing_count: str | None = None
    missing_focus: str | None = None
    missing_value: str | None = None
    answer_score: float | None = None
    reader_p: float | None = None

    def as_dict(self) -> dict:
        """The `evidence` of an answer's JSON: dense and coverage always, the rest when known
        (`answer_p` repeats `reader_p`, its older name)."""
        out: dict = {"dense": self.dense, "coverage": self.coverage}
        for key in ("absent_names", "unheld_clauses", "missing_identifiers"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        for key in ("missing_count", "missing_focus", "missing_value", "answer_score", "reader_p"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.reader_p is not None:
            out["answer_p"] = self.reader_p
        return out


@dataclass(frozen=True)
class Thresholds:
    """The cut-offs of `decide`, all settings (docs/configuration.md)."""

    min_dense: float
    min_coverage: float
    gate_min_dense: float
    gate_min_coverage: float
    reader_p: float        # a reader this sure outweighs a low cosine (above 1: never)
    min_answer_p: float    # below it, not stated
    focus_p: float         # below it, a focus noun no post uses means not stated
    answer_min_score: float
    crosslingual_offset: float = 0.0   # how much lower a cross-lingual question's cosine sits
    value_p: float = 0.0   # below it, an asked number, version or date no quoted sentence holds means not stated


@dataclass(frozen=True)
class Decision:
    """answer, off_archive or not_stated; `reason` names the evidence that decided, `missing` what
    the sources lack (names, identifiers, a counter or a noun) when that was it."""

    action: str
    reason: str = ""
    missing: tuple[str, ...] = ()


def decide(ev: Evidence, t: Thresholds, chat: bool) -> Decision:
    """Answer or refuse, from the evidence alone. With a chat endpoint (`chat`) only the loose gate
    applies; the model replies with the marker when the sources do not hold the answer."""
    if not ev.n_passages:
        return Decision(OFF_ARCHIVE, "no_passages")
    if ev.absent_names:
        return Decision(OFF_ARCHIVE, "absent_names", ev.absent_names)
    min_dense, min_coverage = (t.gate_min_dense, t.gate_min_coverage) if chat else (t.min_dense, t.min_coverage)
    if ev.cjk_question != ev.cjk_sources:
        min_dense -= t.crosslingual_offset
    if ev.cjk_question and ev.coverage < min_coverage:
        return Decision(OFF_ARCHIVE, "coverage")
    if ev.dense is not None and ev.dense < min_dense:
        # dense cosines bunch together (off-archive ~0.82, answerable ~0.86); a sentence the cross
        # reader finds answering is the stronger evidence (Japanese questions: chosen on them)
        vouched = (not chat and ev.cjk_question and t.reader_p <= 1 and ev.reader_p is not None
                   and ev.reader_p >= t.reader_p)
        if not vouched:
            return Decision(OFF_ARCHIVE, "dense")
    if chat:
        return Decision(ANSWER)
    if ev.missing_identifiers:
        return Decision(NOT_STATED, "missing_identifiers", ev.missing_identifiers)
    if ev.missing_count:
        return Decision(NOT_STATED, "missing_count", (ev.missing_count,))
    if ev.answer_score is None or ev.answer_score < t.answer_min_score:
        return Decision(NOT_STATED, "answer_score")
    if ev.reader_p is not None:
        if ev.reader_p < t.min_answer_p:
            return Decision(NOT_STATED, "reader_p")
        if ev.missing_focus and ev.reader_p < t.focus_p:
            return Decision(NOT_STATED, "missing_focus", (ev.missing_focus,))
        if ev.missing_value and ev.reader_p < t.value_p:
            return Decision(NOT_STATED, "missing_value", (ev.missing_value,))
    return Decision(ANSWER)


def reader_may_change(d: Decision) -> bool:
    """Whether the cross reader's P, not yet read, could turn this decision: it vouches for a
    question only the cosine refuses, and it can make an answer "not stated". Every other refusal
    stands without reading (a reading costs 0.1-0.9 s)."""
    return d.action == ANSWER or d.reason == "dense"


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
