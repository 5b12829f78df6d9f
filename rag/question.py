"""Reading a question: the names, identifiers, counter and focus it asks about, and whether it leans
on the conversation before it.

Retrieval (names no post holds), the not-stated refusals (identifiers, how-many counters, the focus
noun), the metadata answers (identifiers, follow-ups) and the rewrite of a follow-up all read a
question here, so they read it the same way. Parts of speech come from MeCab/unidic through
`keyword.fugashi_tagger` (one tagger per thread).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from .keyword import fugashi_tagger
from .text import CJK_RE, fold, has_cjk

# ------------------------------------------------------------------ names

_QUOTED = re.compile(r"[「『\"“]([^「」『』\"“”\n]{2,80})[」』\"”]")
_LATIN_NAME = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*(?:[-.+][A-Za-z0-9]+)*")


def _is_name(word: str) -> bool:
    """`GraphQL`, `iOS`, `CVSS`, `Raven-II`, `EC2`: capitals beyond the first letter, or digits; three
    characters or more (two-letter acronyms such as QA or DB are as often a paraphrase of what the
    post writes out: 「QAボット」 for 質問応答ボット)."""
    return len(word) >= 3 and (sum(c.isupper() for c in word[1:]) >= 1 or any(c.isdigit() for c in word))


def quoted_phrases(text: str) -> list[str]:
    """What a question quotes (「…」, 『…』, "…"), in order: a title, a term, or a reader's loose
    paraphrase of what a post says."""
    return [q.strip() for q in _QUOTED.findall(text) if q.strip()]


def is_clause(phrase: str) -> bool:
    """A quoted phrase that says something (a verb or adjective, by unidic: 「iota をカウンタだと思い込んで
    いた」, and so also a title such as 「Go で CLI を作ってみた」) may be a reader's restatement of what a
    post says; one that does not (「少女歌劇」, 「ネフェルティティの胸像」) is a name-like title or term
    the posts would write as quoted."""
    return any(w.feature.pos1 in ("動詞", "形容詞") or w.feature.pos2 == "形容詞的"
               for w in fugashi_tagger()(fold(phrase)))


def question_names(text: str) -> list[str]:
    """Names a question uses, in order: proper nouns written in kana or kanji (unidic 固有名詞, two
    characters or more), and, in a question written in Japanese, dotted katakana names
    (`katakana_names`) and Latin names (`GraphQL`, `CVSS`). If no post contains one, the archive
    does not cover the question. An English question's words are left out: its "Tokyo" is 東京 in
    a post. Quoted phrases are not names: readers quote loosely (`quoted_phrases`)."""
    folded = fold(text)
    out = []
    for w in fugashi_tagger()(folded):
        s = w.surface.strip()
        if w.feature.pos2 == "固有名詞" and len(s) >= 2 and all(CJK_RE.match(c) for c in s):
            out.append(s)
    if CJK_RE.search(text):
        out += katakana_names(folded)
        out += [w for w in _LATIN_NAME.findall(text) if _is_name(w)]
    first: dict[str, str] = {}
    for name in out:
        first.setdefault(fold(name), name)
    return list(first.values())


_DOTTED_KATAKANA = re.compile(r"[ァ-ヴ][ァ-ヴー]*(?:・[ァ-ヴ][ァ-ヴー]*)+")


def katakana_names(folded: str) -> list[str]:
    """Katakana runs joined by ・ that hold a proper noun or a word unidic does not know: transliterated
    names (イートン・カレッジ, フィミスター・プロクター). unidic splits them into words other posts may
    hold (イートン), so only the whole run tells that the archive never names the college. Runs of
    common nouns (ドメイン・モデル, ユーザー・インターフェース) are ordinary compounds a post may
    spell otherwise, and an unknown katakana word alone is as often a tech term a post writes another
    way (トランスパイラー for transpiler): neither is a name here. `folded`: text passed through
    `text.fold` (half-width ｲｰﾄﾝ･ｶﾚｯｼﾞ is full width there)."""
    out = []
    for m in _DOTTED_KATAKANA.finditer(folded):
        if any(w.feature.pos2 == "固有名詞" or w.is_unk for w in fugashi_tagger()(m.group())):
            out.append(m.group())
    return out


# ------------------------------------------------------------------ identifiers

_KEY_TOKEN = re.compile(r"[A-Za-z]*\d[A-Za-z0-9]*(?:[.\-_][A-Za-z0-9]+)+|[A-Za-z]+-\d+(?:-\d+)*")


def key_tokens(question: str) -> list[str]:
    """Versions and identifiers (3.4.10, 2.0.0-p0, CVE-2024-43398): a named post must carry them."""
    return _KEY_TOKEN.findall(fold(question))


_NUMBERED_NAME = re.compile(r"[ァ-ヴ][ァ-ヴー]+\d{1,2}世(?![代紀])")


def numbered_names(question: str) -> list[str]:
    """Regnal names (ジョージ4世, ムハンマド5世): identifiers like versions, ジョージ1世 is someone
    else. Only the last part of a dotted name (ヴィルヘルム3世 of フリードリヒ・ヴィルヘルム3世: a post
    may join it with ＝). Not in `key_tokens`: a date question about one is about the person, not
    a post's date. A source writing ジョージ四世 in kanji numerals does not hold ジョージ4世."""
    return _NUMBERED_NAME.findall(fold(question))


# ------------------------------------------------------------------ how many, and of what

_KATAKANA_WORD = re.compile(r"[ァ-ヴー]{2,}")
_SUFFIX_COUNTERS = {"人", "冊", "杯", "匹", "枚", "頭", "羽", "通", "軒", "粒", "錠", "体"}   # unidic: 接尾辞-一般
_POINTS_IN_TIME = {"年", "月", "日", "時"}   # 何年に / 何日 ask when (a post may write 2024-08-01), not how many
_AFTER_COUNT = {"が", "を", "は", "も", "で", "です", "だ", "か", "に", "くらい", "ぐらい", "ほど"}


def asked_count(question: str) -> str | None:
    """The counter of a how-many question (何名 -> 名, 何年間 -> 年間, 何ファイル -> ファイル), or None.

    unidic marks most counters (助数詞; 人 and 冊 are plain suffixes); a katakana noun right after
    何 is read as one only when a particle follows (何ファイルが, not 何テーブルの様式). A one-kanji
    noun after the counter makes another word (何台地; 何時代 is one noun already), not a count."""
    q = fold(question)
    if re.search(r"何\s*(?:%|パーセント)", q):
        return "%"
    words = list(fugashi_tagger()(q))
    for i, w in enumerate(words):
        if w.surface == "何人":   # one word in unidic; the how-many reading (なんにん)
            return "人"
        if w.surface != "何" or i + 1 >= len(words):   # 数詞, or 代名詞 in 「では何ファイルが」
            continue
        unit, after = words[i + 1], (words[i + 2] if i + 2 < len(words) else None)
        counter = unit.feature.pos3 in ("助数詞", "助数詞可能") or unit.surface in _SUFFIX_COUNTERS
        ad_hoc = (unit.feature.pos1 == "名詞" and bool(_KATAKANA_WORD.fullmatch(unit.surface))
                  and (after is None or after.surface in _AFTER_COUNT or after.feature.pos1 == "補助記号"))
        if not (counter or ad_hoc) or unit.surface in _POINTS_IN_TIME:
            continue
        if (after is not None and after.feature.pos1 == "名詞" and len(after.surface) == 1
                and after.surface not in "間目"):
            continue
        return unit.surface
    return None


_QUESTION_WORDS = {"どこ", "いくら", "いくつ", "誰", "だれ", "いつ", "どれ", "どの", "どんな", "どう", "どちら", "どなた",
                   "なに", "なん", "なぜ"}
_ASIDE = re.compile(r"[（(][^（）()]*[）)]")
_FOCUS_PARTICLES = {"は", "が", "って"}
_COUNTERS = {"助数詞", "助数詞可能"}


def _is_question_word(words: Sequence, i: int) -> bool:
    s, nxt = words[i].surface, (words[i + 1].surface if i + 1 < len(words) else "")
    if s == "いつ" and nxt == "も":          # いつも: always
        return False
    return s in _QUESTION_WORDS or s.startswith("何") or (s == "いく" and nxt in ("つ", "ら"))


def asked_focus(question: str) -> str | None:
    """The noun the question word is asked of (「…受け取った授賞式はどこで開かれましたか」 -> 授賞式,
    「RubyKaigi 2014 の一般価格（…）はいくらでしたか」 -> 一般価格), or None: the noun run right
    before the は/が/って that the first question word follows, holding kana or kanji (a Latin name
    alone is `question_names`' to check). A number and its counter end the run (第6回大賞 -> 大賞);
    asides in brackets are left out."""
    q = _ASIDE.sub("", unicodedata.normalize("NFKC", question))
    words = list(fugashi_tagger()(q))
    at = next((i for i in range(len(words)) if _is_question_word(words, i)), None)
    if at is None:
        return None
    j = at - 1
    while j >= 0 and words[j].surface in ("、", ","):
        j -= 1
    if j < 1 or words[j].feature.pos1 != "助詞" or words[j].surface not in _FOCUS_PARTICLES:
        return None
    k = j - 1
    while k >= 0 and words[k].feature.pos1 in ("名詞", "接頭辞", "接尾辞") and words[k].feature.pos2 != "数詞":
        k -= 1
    run = words[k + 1:j]
    if k >= 0 and words[k].feature.pos2 == "数詞":
        while run and run[0].feature.pos3 in _COUNTERS:
            run = run[1:]
    text = "".join(w.white_space + w.surface for w in run).strip()
    return text if has_cjk(text) else None


# ------------------------------------------------------------------ follow-ups

_OPENS_WITH_REFERENCE = re.compile(r"^(それ|その記事|この記事|あの記事|これ|あれ|it|this|that)", re.I)
_REFERS_BACK = re.compile(r"(それ|その|これ|この|あれ|あの|そこ|彼|彼女|同じ|前者|後者|さっき"
                          r"|\b(it|its|that|those|they|them|this|these)\b)", re.I)


def is_followup(question: str, has_history: bool, *, opening_only: bool = False) -> bool:
    """The question leans on the conversation before it: there is one, and the question is short
    (under 20 characters) or points back at it.

    opening_only=False (rewriting a follow-up into a standalone question): a pointing word anywhere
    (その, 彼, 前者, they, ...): prepending the previous question costs little when it was not needed.
    opening_only=True (the metadata answers): only a question that opens by pointing at the earlier
    post (それ, その記事, this, ...); its answer is the previous answer's first source, while a longer
    question with an その further on names its post, which is then found by its title.
    """
    if not has_history:
        return False
    if len(question) < 20:
        return True
    if opening_only:
        return bool(_OPENS_WITH_REFERENCE.search(question.strip()))
    return bool(_REFERS_BACK.search(question))
