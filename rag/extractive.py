"""Extractive answers that lead with the answer: a learned sentence ranker and a typed answer span.

Without a chat endpoint the assistant quotes the archive. Ranking sentences by keyword overlap or
e5 cosine alone puts the answer first about a quarter of the time on a real blog: the sentence
that repeats the question's words is often not the one that answers it. `rank_sentences` scores
every sentence of the top passages with a small logistic model over cheap features (how much of
the question the sentence and its neighbours cover, how the sentence compares with the rest of the
pool, whether it holds what the question asks for -- a date for いつ, a number for いくつ, a name
for 誰 -- that the question does not already contain, its passage's rank). The model is fitted on
JaQuAD's train split by `eval/train_reader.py` and ships as a few KB of JSON (`rag/models/`);
where it is absent, `overlap_answer` answers with the hand-weighted `overlap_scores`. Every
answerer reads a passage into sentences the same way (`passage_sentences`).

`score` is P(sentence holds the answer) on the training distribution; the refusal layer may
threshold the best one ("no sentence answers"). `answer_span` cuts the short span (date, number,
version, name, term) a typed question asks for out of the best sentence, so the answer can start
with it.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from .metadata import is_header
from .text import bigram_tokens, defuse_markers, fenced_lines, has_cjk, normalize, split_sentences, unescape_markdown

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "reader.json"
MAX_PASSAGES = 3

# ------------------------------------------------------------------ question types

QTYPES = ("when", "number", "who", "where", "version", "term", "reason")
_QTYPE_RES: dict[str, re.Pattern] = {
    "version": re.compile(r"バージョン(?!管理)|version(?!\s+control)|ヴァージョン|何版|リリース番号", re.I),
    "when": re.compile(r"いつ(?!も|か|の間|でも)|何年|何月|何日|何時|何曜|日付|日時|年代|何世紀|\bwhen\b|"
                       r"what (year|date|day|time)", re.I),
    "number": re.compile(r"いくつ|いくら|何人|何個|何回|何倍|何度(?!も)|何%|何パーセント|何割|何歳|何円|何キロ|何メートル|何セン"
                         r"チ|何ミリ|何秒|何分|何件|何本|何台|何社|何種|何位|何点|何票|何番|何号|どれくらい|どれほど|どのくら"
                         r"い|どの程度|何桁|(?<![関変引定乱整小実複係因指対級偶奇素多少無然虚])数[はを]|規模|how (many|much|long|old|far|fast)", re.I),
    "who": re.compile(r"誰|だれ|どなた|何者|人物|\bwho(m|se)?\b", re.I),
    "where": re.compile(r"どこ|何処|どちら|場所|\bwhere\b", re.I),
    "reason": re.compile(r"なぜ|何故|どうして|理由|どのように|どうやって|どんな方法|\bwhy\b|\bhow\b", re.I),
    "term": re.compile(r"何と|なんと|何て|何という|名前|名称|何を|何が|何の|何で|何に|何は|なに|何か|どの|どんな|どれ|"
                       r"\bwhat\b|\bwhich\b|\bname\b", re.I),
}


_CLAUSE_SEP = re.compile(r"[、，,;；]|とき|時に|際に|ところ|ので|から、|が、|て、")


def question_focus(question: str) -> str:
    """The clause that holds the question word (「…を見直したとき、p95はどれくらい下がった？」 ->
    「p95はどれくらい下がった？」): the answer sits next to these words, the other clauses set the scene."""
    q = unicodedata.normalize("NFKC", question)
    cue = None
    for t in ("version", "when", "number", "who", "where", "reason", "term"):
        m = _QTYPE_RES[t].search(q)
        if m and (cue is None or m.start() < cue):
            cue = m.start()
    if cue is None:
        return q
    start = 0
    for m in _CLAUSE_SEP.finditer(q, 0, cue):
        start = m.end()
    return q[start:]


_QTYPES_SPECIFIC = ("version", "when", "number", "who", "where", "reason")
_OTHER_WH = re.compile(r"\b(?:what|which|how|who|whom|whose|where|why)\b", re.I)
_WH_AFTER_COMMA = re.compile(r",\s*(?:what|which|how|who|whom|whose|where|why)\b", re.I)


def question_type(question: str) -> str:
    """The kind of answer the question asks for; "" when none of the cues is present. In Japanese
    the fixed order decides (the question word ends the sentence: 「…を書いたのは誰ですか」); in
    English the first cue does ("How many modules … when …" asks how many), and a "when" after
    another question word, or whose clause a comma and another question word follow, is a
    conjunction ("Which option do you add when …", "When X was re-examined, how …"; not "When was
    it released, and what changed?"). "term" (何の, どの, which) only when no other cue is present
    (どのバージョン, which version: a version)."""
    q = unicodedata.normalize("NFKC", question)
    found = {t: m for t in _QTYPES_SPECIFIC if (m := _QTYPE_RES[t].search(q))}
    if found and has_cjk(q):
        return next(t for t in _QTYPES_SPECIFIC if t in found)
    when = found.get("when")
    if when and (_OTHER_WH.search(q, 0, when.start()) or _WH_AFTER_COMMA.search(q, when.end())):
        del found["when"]   # "Which option … when signing?", "When X was re-examined, how …?"
    if found:
        return min(found, key=lambda t: (found[t].start(), _QTYPES_SPECIFIC.index(t)))
    return "term" if _QTYPE_RES["term"].search(q) else ""


def model_type(qtype: str) -> str:
    """The question type the learned models read. Their training data (JaQuAD train: 0.08% of the
    sentence rows, about 3 of 3,209 questions, ask for a version) never taught them versions, and
    a 0/1 feature seen that rarely, once standardized, swings the logit by whole units (-6.7 on
    every sentence with a version): a version question is read as the number question it
    resembles. Spans keep the version shape."""
    return "number" if qtype == "version" else qtype


# ------------------------------------------------------------------ answer spans

_NUM = r"\d+(?:[.,]\d+)*"
_SPAN_RES: dict[str, re.Pattern] = {
    "when": re.compile(r"(?:紀元前)?\d{1,4}年(?:\s*\d{1,2}月(?:\s*\d{1,2}日)?)?(?:[\(（][^)）]{1,12}[\)）])?"
                       r"|(?:明治|大正|昭和|平成|令和)(?:\d{1,2}|元)年(?:\d{1,2}月(?:\d{1,2}日)?)?"
                       r"|\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:以降|以前)?|\d{1,2}月\d{1,2}日|\d{1,2}世紀(?:[前後半初頭末]+)?"
                       r"|(?:January|February|March|April|May|June|July|August|September|October|November|December)"
                       r"\s+\d{1,2},?\s+\d{4}"),
    "number": re.compile(r"(?:約|およそ|最大|最小|最高|最低)?" + _NUM +
                         r"\s*(?:[a-zA-Z%％]+|[万億千百十]*[\u3040-\u309f]{0,0}[\u3400-\u9fff\u30a0-\u30ff]{0,3})"
                         r"(?:\s*(?:→|->|⇒|から)\s*" + _NUM + r"\s*(?:[a-zA-Z%％]+|[\u3400-\u9fff\u30a0-\u30ff]{0,3}))?"),
    "version": re.compile(r"(?:[A-Za-z][A-Za-z+#]*\s*)?v?\d+\.\d+(?:\.\d+)*(?:[-.]?(?:p\d+|preview\d*|rc\d*|dev|beta\d*|"
                          r"alpha\d*))?"),
    "who": re.compile(r"[\u30a0-\u30ff・ー]{2,}|[A-Z][A-Za-z.\-]+(?:\s+[A-Z][A-Za-z.\-]+)*|[\u3400-\u9fff々]{2,6}"
                      r"(?:氏|さん|教授|博士|監督|社長)?"),
    "where": re.compile(r"[\u3400-\u9fff\u30a0-\u30ffー々]{1,12}(?:都|道|府|県|市|区|町|村|国|州|島|駅|大学|会場|ホール|"
                        r"センター|ビル|地方|半島|山|川|湖|城)|[\u30a0-\u30ff・ー]{2,}|[A-Z][A-Za-z.\-]+(?:\s+[A-Z][A-Za-z.\-]+)*"),
    "term": re.compile(r"「[^」]{1,40}」|『[^』]{1,40}』|[\u30a0-\u30ff・ー]{2,}|[A-Za-z][A-Za-z0-9_.+#\-]*(?:\s+[A-Z][A-Za-z0-9_.+#\-]*)*"),
}


_norm = normalize


def _regex_spans(qtype: str, sentence: str) -> list[tuple[int, int]]:
    """(start, end) of the spans of `sentence` that have the shape the question type asks for."""
    rx = _SPAN_RES.get(qtype)
    if rx is None:
        return []
    out = []
    for m in rx.finditer(sentence):
        s, e = m.span()
        while e > s and sentence[e - 1] in " 　、，,。．.:：":
            e -= 1
        if e - s >= 1 and re.search(r"[\w\u3040-\u30ff\u3400-\u9fff]", sentence[s:e]):
            out.append((s, e))
    return out


_JOINERS = {".", "・", "-", "/", "_", "+", "#", "ー", "〜", "~", "→", "(", ")", "（", "）"}
_NOUNISH = {"名詞", "接頭辞", "接尾辞"}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str
    person: bool = False   # holds a MeCab/unidic person name
    place: bool = False
    proper: bool = False
    numeral: bool = False
    quoted: bool = False
    regex: bool = False    # matched the question type's pattern


def _tagger():
    from .keyword import fugashi_tagger  # noqa: PLC0415 (MeCab is loaded only when spans are wanted)

    return fugashi_tagger()


def span_candidates(question: str, sentence: str) -> list[Span]:
    """Noun phrases of the sentence (maximal runs of MeCab nouns, numbers and joiners like `.`),
    quoted terms, and the spans shaped like what the question type asks for (dates, versions, ...)."""
    words, pos = [], 0
    for w in _tagger()(sentence):
        i = sentence.find(w.surface, pos)
        if i < 0:
            continue
        pos = i + len(w.surface)
        words.append((i, pos, w.surface, w.feature.pos1, w.feature.pos2, w.feature.pos3))
    spans: dict[tuple[int, int], dict] = {}
    run: list = []

    def close() -> None:
        while run and run[-1][2] in _JOINERS:
            run.pop()
        while run and run[0][2] in _JOINERS - {"(", "（"}:
            run.pop(0)
        if run:
            key = (run[0][0], run[-1][1])
            spans[key] = {"person": any(x[5] == "人名" for x in run), "place": any(x[5] == "地名" for x in run),
                          "proper": any(x[4] == "固有名詞" for x in run), "numeral": any(x[4] == "数詞" for x in run)}
        run.clear()

    for w in words:
        gap = bool(run) and w[0] > run[-1][1] and not sentence[run[-1][1]:w[0]].isspace()
        if gap:
            close()
        if w[3] in _NOUNISH or (run and w[2] in _JOINERS) or (w[3] == "記号" and w[2] not in "、。，．"):
            run.append(w)
        else:
            close()
    close()
    out = {k: Span(k[0], k[1], sentence[k[0]:k[1]], **v) for k, v in spans.items()}
    for m in re.finditer(r"「([^」]{1,40})」|『([^』]{1,40})』", sentence):
        k = m.span(1) if m.group(1) is not None else m.span(2)
        out[k] = Span(k[0], k[1], sentence[k[0]:k[1]], quoted=True)
    for k in _regex_spans(question_type(question), sentence):
        old = out.get(k)
        out[k] = Span(k[0], k[1], sentence[k[0]:k[1]], regex=True, **({} if old is None else {
            "person": old.person, "place": old.place, "proper": old.proper, "numeral": old.numeral,
            "quoted": old.quoted}))
    return [sp for k, sp in sorted(out.items()) if sp.text.strip() and len(sp.text) <= 60]


SPAN_FEATURES = (
    "bias", "in_question", "q_char_share", "log_len", "log_anchor_dist", "after_anchor", "rel_pos",
    "person", "place", "proper", "numeral", "quoted", "regex", "katakana", "latin", "next_wa", "next_ga",
    "next_wo", "next_no", "next_ni", "next_de", "next_to", "next_other",
    *(f"{t}_x_{f}" for t in ("when", "number", "who", "where", "version", "term", "none")
      for f in ("person", "place", "proper", "numeral", "quoted", "regex", "katakana", "latin")),
)


def span_features(question: str, sentence: str, spans: Sequence[Span]) -> np.ndarray:
    """One row of SPAN_FEATURES per span: its shape against the question type, its distance from
    the words the question reuses, what follows it, and how much of it the question already holds."""
    qtype = model_type(question_type(question))
    tq = qtype if qtype in ("when", "number", "who", "where", "version", "term") else "none"
    qn = _norm(question)
    q_chars = set(qn)
    q_bigrams = set(bigram_tokens(question))
    anchors = [i for i in range(len(sentence) - 1)
               if (b := bigram_tokens(sentence[i:i + 2])) and b[0] in q_bigrams and len(b[0]) == 2]
    rows = []
    for sp in spans:
        tn = _norm(sp.text)
        outside = [a for a in anchors if a + 2 <= sp.start or a >= sp.end]
        dist = min((min(abs(a - sp.end), abs(a + 2 - sp.start)) for a in outside), default=len(sentence))
        after = float(any(a + 2 <= sp.start for a in outside))
        nxt = sentence[sp.end:sp.end + 1]
        kata = bool(_KATA_RE.search(sp.text))
        latin = bool(_LATIN_RE.search(sp.text))
        shape = {"person": sp.person, "place": sp.place, "proper": sp.proper, "numeral": sp.numeral,
                 "quoted": sp.quoted, "regex": sp.regex, "katakana": kata, "latin": latin}
        row = [1.0, float(bool(tn) and tn in qn), sum(ch in q_chars for ch in tn) / max(1, len(tn)),
               math.log1p(len(sp.text)) / 4, math.log1p(dist) / 5, after, sp.start / max(1, len(sentence)),
               *(float(shape[f]) for f in ("person", "place", "proper", "numeral", "quoted", "regex")),
               float(kata), float(latin),
               *(float(nxt == p) for p in ("は", "が", "を", "の", "に", "で", "と")),
               float(nxt not in ("は", "が", "を", "の", "に", "で", "と")),
               *(float(tq == t and shape[f]) for t in ("when", "number", "who", "where", "version", "term", "none")
                 for f in ("person", "place", "proper", "numeral", "quoted", "regex", "katakana", "latin"))]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(spans), len(SPAN_FEATURES))


# ------------------------------------------------------------------ sentence candidates

@dataclass(frozen=True)
class Candidate:
    source_n: int       # 1-based rank of the passage among the sources
    pos: int            # position of the sentence in its passage
    sentence: str
    context: str = ""   # for a list item: the line that introduces its list (what it is about)

    def for_reading(self, max_context: int = 60) -> str:
        """The sentence as the cross reader reads it: a list item after its list's introduction
        (「* 会場: 松江テルサ」 says where only next to 「松江Ruby会議07 を開催します」)."""
        return f"{self.context[-max_context:]} {self.sentence}" if self.context else self.sentence


_defuse = defuse_markers


_LINK_TEXT = r"((?:\\.|[^\]\n\\])*)"   # escaped brackets allowed: [\[ruby-dev:27251\]][1]
_MD_LINK = re.compile(r"!?\[" + _LINK_TEXT + r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)|!?\[" + _LINK_TEXT + r"\]\[[^\]\n]*\]")
_URL = re.compile(r"https?://[^\s)\]」』>]+")


def plain_line(line: str) -> str:
    """Markdown link syntax and escapes out of a line (`[CVE-2024-1](https://…)` -> `CVE-2024-1`),
    so a URL's `?` does not end a sentence and the reader quotes what the post's reader sees."""
    line = _MD_LINK.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), line)
    return unescape_markdown(line)


def _split_keeping_urls(line: str) -> list[str]:
    urls: list[str] = []

    def hide(m: re.Match) -> str:
        urls.append(m.group(0))
        return f"\x00{len(urls) - 1}\x00"

    hidden = _URL.sub(hide, line)
    return [re.sub(r"\x00(\d+)\x00", lambda m: urls[int(m.group(1))], s) for s in split_sentences(hidden)]


_ITEM_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)]|:)\s")   # list items and kramdown definitions (": …")


_BLOCK_START = re.compile(r"\s*(?:[-*+]\s|\d+[.)]\s|:\s|#|\||>|<)")
_CJK_EDGE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def _unwrapped_lines(text: str) -> list[tuple[str, bool]]:
    """(line, is code) with a paragraph's hand-wrapped lines joined into one (Markdown renders the
    break as a space): a sentence must not end where the author's editor wrapped it (「…公開された
    ものを、Hideki\\nYamane氏が報告した」). Headings, list items, tables, quotes, fenced code and the
    front-matter line stay lines."""
    lines = text.split("\n")
    out: list[tuple[str, bool]] = []
    joinable = False
    for line, code in zip(lines, fenced_lines(lines)):
        if code:
            out.append((line, True))
            joinable = False
            continue
        if joinable and line.strip() and not _BLOCK_START.match(line) and not is_header(line):
            prev = out[-1][0].rstrip()
            cjk = _CJK_EDGE.match(prev[-1:]) and _CJK_EDGE.match(line.strip()[:1])
            out[-1] = (prev + ("" if cjk else " ") + line.strip(), False)
            continue
        out.append((line, False))
        joinable = bool(line.strip()) and not line.lstrip().startswith(("#", "|", ">", "<")) and not is_header(line)
    return out


def passage_sentences(text: str) -> list[str]:
    """The one reading of a passage into the sentences an answer may quote (the reader model's
    candidates, the overlap answerer's, the not-stated refusal's): no headings, no code, not the
    front-matter line, nothing shorter than 6 chars; hand-wrapped lines joined, links as their text."""
    return [s for s, _ in passage_sentences_in_context(text)]


def passage_sentences_in_context(text: str) -> list[tuple[str, str]]:
    """(sentence, context) for `passage_sentences`: context is, for a list item, the nearest line
    above its list that is not an item (its introduction, a definition's term, or a heading)."""
    out, intro = [], ""
    for line, code in _unwrapped_lines(text):
        if code or is_header(line) or not line.strip():   # not the front-matter line
            continue
        item = bool(_ITEM_RE.match(line))
        if line.lstrip().startswith("#"):
            intro = plain_line(line.lstrip("# ").strip())
            continue
        for s in _split_keeping_urls(plain_line(line)):
            s = s.strip().lstrip(":：").strip()
            if len(s) >= 6:
                out.append((s, intro if item else ""))
        if not item:
            intro = plain_line(line).strip()
    return out


def candidates(sources: Sequence, max_passages: int = MAX_PASSAGES) -> list[Candidate]:
    """Sentences of the top passages (`sources`: strings or objects with `.text`), in reading order,
    each once."""
    out, seen = [], set()
    for n, src in enumerate(list(sources)[:max_passages], start=1):
        text = src if isinstance(src, str) else src.text
        for i, (s, context) in enumerate(passage_sentences_in_context(text)):
            key = _norm(s)
            if key not in seen:  # overlapping chunks repeat sentences: keep the better-ranked copy
                seen.add(key)
                out.append(Candidate(n, i, s, context))
    return out


# ------------------------------------------------------------------ features

_DATE_RE = _SPAN_RES["when"]

# The shape of the value a number, version or date question asks for, looser than the spans' and
# `_type_match`'s (a post may write 三つ, 1万, $0.01, Python 3, v2 or 2017 年 3 月末): only whether a
# quoted sentence holds one is asked of it. `_type_match` stays as it is: the reader models were
# trained on its features.
_MONTHS = (r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
           r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)")
_VALUE_RES = {
    "number": re.compile(r"\d+(?:[.,]\d+)*|[一二三四五六七八九十百千万億兆数半]+\s*(?:つ|人|名|個|回|倍|度|割|歳|円|件|本|台|社|"
                         r"種|位|点|票|番|号|年|か月|ヶ月|日|週|時間|分|秒|枚|冊|行|桁|%)|"
                         r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozens?|hundreds?|"
                         r"thousands?|millions?|billions?)\b", re.I),
    # a capitalised name and its number (Python 3, Java 17, ES2015), not "December 2" or "of 1"
    "version": re.compile(r"\b(?!(?i:" + _MONTHS[3:-1] + r")\b)[A-Z][A-Za-z+#]*\s?[vV]?\d+(?:\.\d+)*\b|"
                          r"\d+(?:\.\d+)+|\b[vV]\d+\b|\d+\s*系"),
    "when": re.compile(r"\d{1,4}\s*(?:年|月|日|時|世紀)|\d{4}[-/.]\d{1,2}|(?<!\d)(?:1[5-9]|20)\d\d(?!\d)|"
                       r"\b" + _MONTHS + r"\.?\s+\d|"
                       r"明治|大正|昭和|平成|令和|[昨今去来]年|[先今来]月|[先今来]週|昨日|今日|明日|[元正]日|"
                       r"[一二三四五六七八九十]+\s*(?:年|月|日)|(?:上|中|下)旬|(?:年|月)末|[\u3400-\u9fff]{1,4}時代", re.I),
}
_DIGIT_RE = re.compile(r"\d")
_VERSION_RE = re.compile(r"\d+\.\d+")
_KATA_RE = re.compile(r"[\u30a0-\u30ff]{2,}")
_LATIN_RE = re.compile(r"[A-Za-z]{2,}")
_QUOTE_RE = re.compile(r"[「『\"“]")
_PLACE_RE = re.compile(r"[都道府県市区町村国州島駅]|大学|地方")
_PERSON_RE = re.compile(r"氏|さん|教授|博士|監督|社長|選手|作家|[\u30a0-\u30ff]{2,}・[\u30a0-\u30ff]{2,}")
_LIST_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
_URL_RE = re.compile(r"https?://|www\.")

FEATURES = (
    "bias", "cov", "cov_prev", "cov_next", "cov_window", "cov_gap", "cov_is_best", "cov_rank_inv",
    "chars", "streak", "passage_inv_rank", "passage_cov", "log_len", "pos_first", "pos_scaled",
    "new_share", "has_digit", "has_date", "is_list", "has_url",
    *(f"type_{t}" for t in QTYPES),
    *(f"match_{t}" for t in QTYPES if t != "reason"),
    "match_new", "cov_x_match", "chars_gap", "streak_gap", "window_gap", "prev_is_best", "new_x_chars",
    "new_x_window", "log_q_len", "focus_cov", "focus_gap", "focus_window", "focus_share",
    "typed_near_focus", "typed_near_focus_gap", "local_cov", "local_gap", "local_window", "local_focus",
)
_CONTENT_CHAR = re.compile(r"[\u30a0-\u30ff\u3400-\u9fffA-Za-z0-9]")


def _type_match(t: str, s: str) -> bool:
    if t == "when":
        return bool(_DATE_RE.search(s))
    if t == "number":
        return bool(_DIGIT_RE.search(s))
    if t == "version":
        return bool(_VERSION_RE.search(s))
    if t == "who":
        return bool(_PERSON_RE.search(s) or _KATA_RE.search(s) or re.search(r"[A-Z][a-z]+", s))
    if t == "where":
        return bool(_PLACE_RE.search(s) or _KATA_RE.search(s))
    if t == "term":
        return bool(_QUOTE_RE.search(s) or _KATA_RE.search(s) or _LATIN_RE.search(s))
    return False


def _streak(q_tokens: Sequence[str], s_tokens: set[str]) -> int:
    best = cur = 0
    for t in q_tokens:
        cur = cur + 1 if t in s_tokens else 0
        best = max(best, cur)
    return best


def _typed_near_focus(qtype: str, sentence: str, focus: Mapping[str, float], q_norm: str) -> float:
    """exp(-distance/10) from a span shaped like the answer (and not in the question) to the nearest
    place where the sentence repeats the question's focus words; 0 when there is none."""
    sentence = unicodedata.normalize("NFKC", sentence)
    spans = [(s, e) for s, e in _regex_spans(qtype, sentence) if _norm(sentence[s:e]) not in q_norm]
    if not spans or not focus:
        return 0.0
    low = sentence.lower()
    anchors = [m.start() for t in focus for m in re.finditer(re.escape(t), low)]
    if not anchors:
        return 0.0
    dist = min(min(abs(a - e), abs(a + 2 - s)) if not s <= a < e else 0 for s, e in spans for a in anchors)
    return math.exp(-dist / 10)


def features(question: str, cands: Sequence[Candidate], idf: Callable[[str], float]) -> np.ndarray:
    """One row of FEATURES per candidate. Coverages are shares of the question's idf weight, so the
    scale of the index's idf (or the training corpus's) does not matter."""
    q_list = bigram_tokens(question)
    q_terms = set(q_list)
    weights = {t: idf(t) for t in q_terms}
    total = sum(weights.values()) or 1.0
    q_chars = set(_CONTENT_CHAR.findall(unicodedata.normalize("NFKC", question).lower()))
    qtype = question_type(question)
    mtype = model_type(qtype)   # the one-hot type features; the shapes (match_new, near) keep qtype
    toks = [set(bigram_tokens(c.sentence)) for c in cands]
    cov = [sum(w for t, w in weights.items() if t in ts) / total for ts in toks]
    by_pos = {(c.source_n, c.pos): i for i, c in enumerate(cands)}
    passage_terms: dict[int, set[str]] = {}
    for c, ts in zip(cands, toks):
        passage_terms.setdefault(c.source_n, set()).update(ts)
    passage_cov = {n: sum(w for t, w in weights.items() if t in ts) / total for n, ts in passage_terms.items()}
    n_in_passage: dict[int, int] = {}
    for c in cands:
        n_in_passage[c.source_n] = n_in_passage.get(c.source_n, 0) + 1
    best = max(cov, default=0.0)
    focus = {t: w for t, w in weights.items() if t in set(bigram_tokens(question_focus(question)))}
    f_total = sum(focus.values()) or 1.0
    fcov = [sum(w for t, w in focus.items() if t in ts) / f_total for ts in toks]
    best_f = max(fcov, default=0.0)
    # the same coverage with the question's terms weighted by their rarity within this pool: terms
    # that every sentence repeats (the post's topic, a CVE id) say little about which one answers
    df: dict[str, int] = {}
    for ts in toks:
        for t in q_terms & ts:
            df[t] = df.get(t, 0) + 1
    n_pool = len(cands)
    local = {t: w * math.log(1 + n_pool / (1 + df.get(t, 0))) for t, w in weights.items()}
    l_total = sum(local.values()) or 1.0
    lcov = [sum(w for t, w in local.items() if t in ts) / l_total for ts in toks]
    best_l = max(lcov, default=0.0)
    l_focus = [sum(w for t, w in local.items() if t in ts and t in focus) / l_total for ts in toks]
    q_norm = _norm(question)
    near = [_typed_near_focus(qtype, c.sentence, focus, q_norm) for c in cands]
    best_near = max(near, default=0.0)
    chars_all, streak_all, window_all = [], [], []
    for i, c in enumerate(cands):
        ip, inx = by_pos.get((c.source_n, c.pos - 1)), by_pos.get((c.source_n, c.pos + 1))
        window = toks[i] | (toks[ip] if ip is not None else set()) | (toks[inx] if inx is not None else set())
        window_all.append(sum(w for t, w in weights.items() if t in window) / total)
        s_chars = _CONTENT_CHAR.findall(unicodedata.normalize("NFKC", c.sentence).lower())
        chars_all.append((len(q_chars & set(s_chars)) / max(1, len(q_chars)), s_chars))
        streak_all.append(_streak(q_list, toks[i]) / max(1, len(q_list)))
    best_chars = max((x[0] for x in chars_all), default=0.0)
    best_streak, best_window = max(streak_all, default=0.0), max(window_all, default=0.0)
    order = sorted(range(len(cands)), key=lambda i: -cov[i])
    rank = {i: r for r, i in enumerate(order, start=1)}
    rows = []
    for i, c in enumerate(cands):
        ip, inx = by_pos.get((c.source_n, c.pos - 1)), by_pos.get((c.source_n, c.pos + 1))
        cov_w = window_all[i]
        chars, s_chars = chars_all[i]
        new_share = sum(ch not in q_chars for ch in s_chars) / max(1, len(s_chars))
        matches = {t: _type_match(t, c.sentence) for t in QTYPES if t != "reason"}
        match_new = 0.0
        if qtype in _SPAN_RES:
            match_new = float(any(_norm(c.sentence[s:e]) not in q_norm for s, e in _regex_spans(qtype, c.sentence)))
        m = float(matches.get(mtype, False))
        row = [1.0, cov[i], cov[ip] if ip is not None else 0.0, cov[inx] if inx is not None else 0.0, cov_w,
               cov[i] - best, float(cov[i] >= best and best > 0), 1.0 / rank[i],
               chars, streak_all[i], 1.0 / c.source_n, passage_cov[c.source_n],
               math.log1p(len(c.sentence)) / 6, float(c.pos == 0), c.pos / max(1, n_in_passage[c.source_n] - 1),
               new_share, float(bool(_DIGIT_RE.search(c.sentence))), float(bool(_DATE_RE.search(c.sentence))),
               float(bool(_LIST_RE.match(c.sentence))), float(bool(_URL_RE.search(c.sentence))),
               *(float(mtype == t) for t in QTYPES),
               *(float(mtype == t and matches[t]) for t in QTYPES if t != "reason"),
               match_new, cov[i] * m, chars - best_chars, streak_all[i] - best_streak, cov_w - best_window,
               float(ip is not None and cov[ip] >= best and best > 0), new_share * chars, new_share * cov_w,
               math.log1p(len(q_norm)) / 5, fcov[i], fcov[i] - best_f,
               max(fcov[i], fcov[ip] if ip is not None else 0.0), f_total / total, near[i], near[i] - best_near,
               lcov[i], lcov[i] - best_l, max(lcov[i], lcov[ip] if ip is not None else 0.0), l_focus[i]]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(cands), len(FEATURES))


# ------------------------------------------------------------------ the model

@dataclass(frozen=True)
class LinearModel:
    """Logistic regression, or a one-hidden-layer ReLU network when `hidden` is set, over
    standardized features (fitted by eval/train_reader.py). Pure numpy at run time."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    hidden: tuple[np.ndarray, np.ndarray] | None = None  # (W [d, h], b [h]); coef is then [h]

    @classmethod
    def from_dict(cls, d: Mapping, expected: Sequence[str]) -> "LinearModel":
        if tuple(d.get("features", ())) != tuple(expected):
            raise ValueError("it was trained on other features; rerun eval/train_reader.py")
        hidden = None
        if d.get("hidden"):
            hidden = (np.asarray(d["hidden"]["W"], float), np.asarray(d["hidden"]["b"], float))
        return cls(tuple(d["features"]), np.asarray(d["mean"], float), np.asarray(d["scale"], float),
                   np.asarray(d["coef"], float), float(d["intercept"]), hidden)

    def as_dict(self) -> dict:
        d = {"features": list(self.features), "mean": self.mean.round(6).tolist(),
             "scale": self.scale.round(6).tolist(), "coef": self.coef.round(6).tolist(),
             "intercept": round(self.intercept, 6)}
        if self.hidden is not None:
            d["hidden"] = {"W": self.hidden[0].round(6).tolist(), "b": self.hidden[1].round(6).tolist()}
        return d

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean) / self.scale
        if self.hidden is not None:
            Z = np.maximum(Z @ self.hidden[0] + self.hidden[1], 0.0)
        z = Z @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Reader:
    """The sentence ranker, and optionally the span scorer with the probability a span needs to lead."""

    sentence: LinearModel
    span: LinearModel | None = None
    span_threshold: float = 1.0
    meta: Mapping = None  # type: ignore[assignment]
    cross: object | None = None  # rag.cross_reader.CrossReader: rereads the best few sentences

    @classmethod
    def load(cls, path: str | Path) -> "Reader":
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            sentence = LinearModel.from_dict(d["sentence"], FEATURES)
            span = LinearModel.from_dict(d["span"], SPAN_FEATURES) if d.get("span") else None
            return cls(sentence, span, float(d.get("span_threshold", 1.0)), d.get("meta", {}))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read extractive reader model {p}: {exc!r}") from None
        except ValueError as exc:
            raise ValueError(f"extractive reader model {p}: {exc}") from None

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        d = {"sentence": self.sentence.as_dict(), "span": self.span.as_dict() if self.span else None,
             "span_threshold": round(self.span_threshold, 4), "meta": dict(self.meta or {})}
        p.write_text(json.dumps(d, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def load_reader(path: str | Path | None = None, cross: str | Path | None = "off") -> Reader | None:
    """The model at `path` (default: the bundled one); None where the file is absent, so the
    answerer falls back to the overlap ranking. A file that exists but is broken is an error.

    cross: the cross reader that rereads the best sentences ("" = the bundled one, a path, or
    "off"); absent file = the linear reader alone."""
    p = Path(path) if path else DEFAULT_MODEL
    if not p.exists():
        return None
    reader = Reader.load(p)
    if cross != "off":
        from .cross_reader import load_cross_reader

        model = load_cross_reader(cross or None)
        if model is not None:
            reader = replace(reader, cross=model)
    return reader


def overlap_scores(question: str, cands: Sequence[Candidate], idf: Callable[[str], float],
                   tokenize: Callable[[str], list[str]] = bigram_tokens) -> np.ndarray:
    """The one overlap score (no reader model): the idf-weighted overlap of the question's terms
    with the sentence's, damped by length, plus a prior for the passage's rank. `tokenize`: the
    terms compared, bigrams unless the caller weighs the keyword index's own terms."""
    weights = {t: idf(t) for t in set(tokenize(question))}
    out = []
    for c in cands:
        ts = set(tokenize(c.sentence))
        overlap = sum(w for t, w in weights.items() if t in ts)
        out.append(overlap / (1 + 0.15 * math.log1p(len(c.sentence))) + 0.3 / c.source_n)
    return np.asarray(out, dtype=np.float64)


def rank_sentences(question: str, sources: Sequence, idf: Callable[[str], float] | None = None,
                   reader: Reader | None = None, max_passages: int = MAX_PASSAGES,
                   asked: str | None = None) -> list[tuple[int, str, float]]:
    """(source_n, sentence, score) for the sentences of the top passages, best first.

    With a reader model, score = P(the sentence holds the answer), comparable across questions (a
    refusal threshold can use it); without one, the old overlap score (not a probability).
    """
    cands = candidates(sources, max_passages)
    if not cands:
        return []
    idf = idf or (lambda t: 1.0)
    if reader is not None:
        scores = reader.sentence.predict(features(question, cands, idf))
    else:
        scores = overlap_scores(question, cands, idf)
    order = sorted(range(len(cands)), key=lambda i: (-scores[i], cands[i].source_n, cands[i].pos))
    cross = getattr(reader, "cross", None)
    if cross is not None:   # `asked`: a follow-up as typed, when `question` glues it to the one before
        order, scores = reread(asked or question, cands, order, scores, cross)
    return [(cands[i].source_n, cands[i].sentence, float(scores[i])) for i in order]


def reread(question: str, cands: Sequence[Candidate], order: list[int], p: np.ndarray,
           cross) -> tuple[list[int], np.ndarray]:
    """The cross reader rescores the linear reader's best `cross.top` sentences; they stay ahead of
    the rest, whose scores are capped below theirs, so `score` keeps meaning P(answers)."""
    top, rest = order[:cross.top], order[cross.top:]
    combined = cross.combine(cross.logits(question, [cands[i].for_reading() for i in top]), p[top])
    scores = np.asarray(p, dtype=np.float64).copy()
    scores[top] = combined
    if rest:
        scores[rest] = np.minimum(scores[rest], float(combined.min()))
    top = sorted(top, key=lambda i: (-scores[i], cands[i].source_n, cands[i].pos))
    return top + rest, scores


def answer_span(question: str, sentence: str, reader: Reader | None) -> tuple[str, float] | None:
    """The short span (name, number, date, version, term) that answers a typed question, with its
    probability, or None (untyped or why/how question, no span model, no candidate)."""
    qtype = question_type(question)
    if reader is None or reader.span is None or qtype in ("", "reason"):
        return None
    spans = span_candidates(question, sentence)
    if not spans:
        return None
    p = reader.span.predict(span_features(question, sentence, spans))
    i = int(np.argmax(p))
    return spans[i].text.strip(), float(p[i])


def _cite(sentence: str, n: int) -> str:
    s = _defuse(sentence)
    if s.endswith(("。", ".", "！", "？", "!", "?")):
        return f"{s[:-1]}[{n}]{s[-1]}"
    return f"{s}[{n}]"


def extractive_answer(question: str, sources: Sequence, idf: Callable[[str], float] | None = None,
                      reader: Reader | None = None, max_chars: int = 320,
                      max_passages: int = MAX_PASSAGES) -> str:
    """Lead with the answer: the best sentence, prefixed by the short span a typed question asks
    for when the span model is confident (`17mm[1]：精莢の長さは…17mm…[1]。`), then the next best
    sentences while room is left and they score at least half as well; each cited `[n]`."""
    return read(question, sources, idf, reader, max_chars, max_passages)[0]


class Reading(NamedTuple):
    """What one reading gives: the answer text, the best sentence's score (None without
    sentences), and the kind of value asked for (number, version, when) that none of the sentences the
    answer quotes holds (`missing_value`), else None."""

    text: str
    p: float | None
    missing_value: str | None = None


def read(question: str, sources: Sequence, idf: Callable[[str], float] | None = None,
         reader: Reader | None = None, max_chars: int = 320, max_passages: int = MAX_PASSAGES,
         asked: str | None = None, follow_share: float = 0.5) -> Reading:
    """`extractive_answer`'s text, the best sentence's score and the value it lacks (`Reading`).

    asked: the follow-up as typed where `question` is the rule's rewrite (the previous question
    prepended): the cross reader reads that one, or it answers the previous question again."""
    ranked = rank_sentences(question, sources, idf, reader, max_passages, asked)
    quoted = quoted_sentences(ranked, max_chars, follow_share)
    return Reading(_answer_text(question, quoted, reader), ranked[0][2] if ranked else None,
                   missing_value(asked or question, [s for _, s in quoted], named_before=question if asked else "")
                   if ranked else None)


def missing_value(question: str, sentences: Sequence[str], named_before: str = "") -> str | None:
    """The kind of value the question asks for (「何倍」, "how many": number; 「どのバージョン」:
    version; 「いつ」, 「何月何日」: when) when none of `sentences` holds one that the question does not
    already name (「Go 1.22 の…」 names 1.22; a sentence repeating it states nothing new); None for
    other questions. `named_before`: the conversation a follow-up continues (its values are named
    too: after 「Go 1.22 の ChaCha8 は？」, 「それは何倍速い？」 is not answered by 1.22).

    A sentence about the topic without any number cannot answer 「いくら課金しますか」: the reader
    found the topic, not the fact."""
    kind = question_type(question)
    rx = _VALUE_RES.get(kind)
    if rx is None:
        return None
    named = {_norm(m.group()) for m in rx.finditer(unicodedata.normalize("NFKC", question + "\n" + named_before))}
    for s in sentences:
        if any(_norm(m.group()) not in named for m in rx.finditer(unicodedata.normalize("NFKC", s))):
            return None
    return kind


def answer_from_ranked(question: str, ranked: Sequence[tuple[int, str, float]], reader: Reader | None = None,
                       max_chars: int = 320) -> str:
    """The answer text from `rank_sentences`' output (for callers that keep the ranking too)."""
    return _answer_text(question, quoted_sentences(ranked, max_chars), reader)


def _answer_text(question: str, quoted: Sequence[tuple[int, str]], reader: Reader | None) -> str:
    """The quoted sentences, each cited, the first led by its short answer span when the span model is sure."""
    if not quoted:
        return ""
    n, best = quoted[0]
    lead = _cite(best, n)
    span = answer_span(question, best, reader)
    if span and span[1] >= reader.span_threshold and _norm(span[0]) != _norm(best):
        lead = f"{_defuse(span[0])}[{n}]：{lead}"
    return "\n".join([lead] + [_cite(s, n2) for n2, s in quoted[1:]])


def quoted_sentences(ranked: Sequence[tuple[int, str, float]], max_chars: int = 320,
                     follow_share: float = 0.5) -> list[tuple[int, str]]:
    """(source_n, sentence) the answer quotes: the best, then the next two while room is left and
    they score at least `follow_share` of the best."""
    if not ranked:
        return []
    out, used = [ranked[0][:2]], len(ranked[0][1])
    for n, s, score in ranked[1:3]:
        if used + len(s) > max_chars or score < follow_share * ranked[0][2]:
            break
        out.append((n, s))
        used += len(s)
    return out


def overlap_answer(question: str, sources: Sequence, retriever=None, max_sentences: int = 2,
                   max_chars: int = 320, follow: int = 1, max_passages: int = MAX_PASSAGES) -> str:
    """The answer where no reader model is installed: the best sentence by `overlap_scores`, the
    `follow` sentences after it (in JaQuAD the answer sits in the next sentence often enough that
    this raised answer-contains-gold), then others scoring at least 0.6 of the best; in reading
    order, each cited `[n]`.

    retriever: the question's terms are those of its keyword index, weighted by their idf there
    (0 for terms the archive lacks); without one, bigrams of weight 1."""
    cands = candidates(sources, max_passages)
    if not cands:
        return ""
    tokenize, idf = bigram_tokens, (lambda t: 1.0)
    if retriever is not None:
        known = retriever.term_idf(set(retriever.tokenize(question)))
        tokenize, idf = retriever.tokenize, (lambda t: known.get(t, 0.0))
    scores = overlap_scores(question, cands, idf, tokenize)
    at = {(c.source_n, c.pos): i for i, c in enumerate(cands)}
    ranked = sorted(range(len(cands)), key=lambda i: -scores[i])
    best = ranked[0]
    chosen = [best]

    def fits(i: int) -> bool:
        return sum(len(cands[j].sentence) for j in chosen) + len(cands[i].sentence) <= max_chars

    for j in range(1, follow + 1):
        nxt = at.get((cands[best].source_n, cands[best].pos + j))
        if nxt is not None and fits(nxt):
            chosen.append(nxt)
    for i in ranked[1:]:
        if len(chosen) >= max_sentences + follow or not fits(i):
            break
        if scores[i] >= 0.6 * scores[best] and i not in chosen:
            chosen.append(i)
    return "\n".join(_cite(cands[i].sentence, cands[i].source_n) for i in sorted(chosen))


def index_idf(retriever) -> Callable[[str], float]:
    """idf of a bigram in the retriever's BM25 index (stored with a \\x01 prefix when the tokenizer
    also emits morphemes); terms the archive does not know get the largest idf."""
    top = float(retriever.max_idf)
    cache: dict[str, float] = {}

    def lookup(t: str) -> float:
        if t not in cache:
            known = retriever.term_idf(["\u0001" + t, t])
            cache[t] = known.get("\u0001" + t, known.get(t, top))
        return cache[t]

    return lookup
