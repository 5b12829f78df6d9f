"""Questions about the posts themselves: when, who, which tags, which posts discuss X.

These are answered from the front matter and the index, not from the body text, so they do not
depend on a chat model. `intent` reads what is asked; `pick_post` finds the post the question
names among the retrieved ones (or takes the one a follow-up refers to); the answer is a template
from `prompts/` citing that post as [1].
"""

from __future__ import annotations

import re
from typing import Sequence

from .question import key_tokens, quoted_phrases
from .text import content_bigrams, fold

DATE, AUTHOR, TAGS, POSTS = "date", "author", "tags", "posts"

_PATTERNS = [
    (AUTHOR, re.compile(r"(誰が(書|投稿|告知|発表|執筆|アナウンス)|(書い|投稿し|告知し|発表し|執筆し|アナウンスし)"
                        r"たの(は|って)誰|(投稿者|著者|筆者|執筆者|書き手)|\bwho\s+(wrote|posted|authored|announced)"
                        r"|\bauthor\b)", re.I)),
    (TAGS, re.compile(r"(タグ|\btags?\b)", re.I)),
    (DATE, re.compile(r"((リリース|公開|告知|発表|投稿|掲載|執筆|アナウンス)(され|し)?(た|る)?の(は|って)いつ"
                      r"|いつ(の記事|書かれ|投稿|公開|告知|発表|掲載|リリースされ)|記事の(日付|投稿日|公開日)"
                      r"|(投稿日|公開日|掲載日)|\bwhen\s+(was|were)\b.*\b(released|published|announced|posted|written)\b"
                      r"|何年何月(何日)?(に|の)?(投稿|公開|掲載|執筆|書かれ|告知|発表)"
                      r"|\bwhat\s+date\b.*\b(post|article)\b)", re.I)),
    (POSTS, re.compile(r"((どの|どんな|どれ)(記事|投稿|ポスト)|記事(は|を)(どれ|教えて|挙げて)|について(の|書かれた|扱った)"
                       r"記事(は|を)?(ありますか|ある|どれ)|\b(which|what)\s+(posts|articles)\b"
                       r"|\b(posts|articles)\s+(about|on|discussing)\b)", re.I)),
]
_ABOUT_POST = re.compile(r"(記事|投稿|ポスト|ブログ|告知|アナウンス|掲載|\b(post|posts|article|articles|blog)\b)", re.I)
_DESCRIBING = re.compile(r"(著者|筆者|執筆者|作者|投稿者|書き手|日付|投稿日|公開日|掲載日|何年|何月|何日|紹介|解説|告知|発表|記事)")
_HAS_HIRAGANA = re.compile(r"[\u3040-\u309f]")
_FILE_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})-")
_EN_META_WORDS = re.compile(r"\b(who|wrote|written|writes|the|a|an|posts?|articles?|about|on|when|was|were|is|are|"
                            r"published|released|announced|posted|what|which|date|of|tags?|author|by|did|does|"
                            r"do|in|for|discuss(es|ing)?|archive|blog)\b")
_META_WORDS = re.compile(r"(リリース|公開|告知|発表|投稿|掲載|執筆|記事|いつ|誰|ですか|ました|された|したの|のは|について"
                         r"|タグ|どの|どれ|日付|書いた|書かれた|知らせる)")


def intent(question: str) -> str | None:
    """What the question asks about the post: "date", "author", "tags", "posts" or None."""
    for kind, pat in _PATTERNS:
        if pat.search(question):
            return kind
    return None


def has_token(text: str, tok: str, series: bool = False) -> bool:
    """`tok` (folded) stands in folded `text` as a whole identifier: 1.8.8 is not in 1.8.8dev or
    1.8.80. series: a version also stands in its own releases (3.31 in 3.31.1)."""
    after = r"(?![0-9A-Za-z])" if series else r"(?![0-9A-Za-z]|\.\d)"
    return re.search(r"(?<![0-9A-Za-z.])" + re.escape(tok) + after, text) is not None


def title_match(question: str, title: str) -> float:
    """How well the question names this title: 1.0 for a quoted title or all identifiers present,
    else the share of the title's content bigrams that occur in the question (0 when an
    identifier of the question is missing from the title)."""
    t = fold(title)
    for quoted in quoted_phrases(question):
        if fold(quoted).replace(" ", "") == t.replace(" ", ""):
            return 1.0
    keys = key_tokens(question)
    if keys:
        return 1.0 if all(has_token(t, k) for k in keys) else 0.0
    tb = _content(t)
    qb = subject_terms(question)
    if not tb or not qb:
        return 0.0
    return max(len(tb & qb) / len(tb), len(tb & qb) / len(qb))


def subject_terms(question: str) -> set[str]:
    """What the question is about: its content terms without the words that ask for metadata."""
    return _content(_EN_META_WORDS.sub(" ", _META_WORDS.sub(" ", fold(question))))


def discusses(question: str, title: str, text: str) -> bool:
    """A post discusses the question's subject: most of the subject's terms occur in it."""
    subject = subject_terms(question)
    return bool(subject) and held_share(subject, title, text) >= 0.5


def held_share(terms: set[str], title: str, text: str) -> float:
    """The share of `terms` (content bigrams and words) that a post's title and text hold."""
    return len(terms & _content(fold(title + "\n" + text))) / len(terms)


def _content(text: str) -> set[str]:
    """Bigrams and words of a text without hiragana-only ones (particles, endings)."""
    return content_bigrams(text)


def about_post(question: str) -> bool:
    """The question names the post itself (記事, 投稿, post, …) or its announcing (告知, …)."""
    return bool(_ABOUT_POST.search(question))


def pick_post(question: str, sources: Sequence, followup: bool, min_match: float = 0.5) -> int | None:
    """Index of the source the question is about, or None when no retrieved post is clearly named.

    A follow-up ("それはいつの記事？") is about the first source of the standalone question. A
    question that does not name the post itself ("『X』はいつ公開された？", "『Y』の著者は誰？")
    asks about what the post describes, unless it names a version or identifier that the post's
    title carries (a release or advisory post: its date is the release date).
    """
    if not sources:
        return None
    if followup:
        return 0
    if not about_post(question) and not (intent(question) == DATE and key_tokens(question)):
        return None
    scored = [(title_match(question, s.title), -i) for i, s in enumerate(sources)]
    best, neg_i = max(scored)
    return -neg_i if best >= min_match else None


def described_post(question: str, sources: Sequence) -> int | None:
    """Index of the source a date or author question is about when it describes the post in other
    words than its title (「GitHon を HonKit に改名したと告知した記事の投稿日は」 for 「GitHon は HonKit に名前を変更
    しました」): the source holding most of the describing terms, at least half of them; else None.

    Only questions about the post itself that name no version or id: a question naming Ruby 3.3.10
    must find it in a title (`pick_post`), or the date would be another release's."""
    if not sources or intent(question) not in (DATE, AUTHOR) or not about_post(question) or key_tokens(question):
        return None
    described = described_terms(question)
    if len(described) < 2:   # 「Go の記事の著者は？」 describes no one post
        return None
    shares = [held_share(described, s.title, s.text) for s in sources]
    best = max(range(len(shares)), key=lambda i: (shares[i], -i))
    return best if shares[best] >= 0.5 else None


def described_terms(question: str) -> set[str]:
    """The terms describing the post: the question's bigrams of kanji, katakana and Latin words
    (「改名」, 「honkit」; not 「に改」 or 「日は」), without the words that ask for a date or author."""
    text = _DESCRIBING.sub(" ", fold(question))
    return {t for t in subject_terms(text) if not _HAS_HIRAGANA.search(t)}


def fields(post: dict) -> dict:
    """Template fields of a post (front matter), with the date's day part."""
    date = (post.get("date") or "")[:10] or file_date(post.get("post_id", ""))
    return {"title": post.get("title") or post.get("post_id", ""), "date": date or "?",
            "author": post.get("author") or "?", "tags": ", ".join(post.get("tags") or []) or "-",
            "post_id": post.get("post_id", "")}


def file_date(post_id: str) -> str:
    """A Jekyll post's date from its file name (`_posts/2005-07-01-title`) when the front matter has none."""
    m = _FILE_DATE.match(post_id.rsplit("/", 1)[-1])
    return m.group(1) if m else ""


def header(post: dict) -> str:
    """The front-matter line each source starts with: the answerer sees when, who and which tags."""
    f = fields(post)
    return f"〔{f['title']} | date: {f['date']} | author: {f['author']} | tags: {f['tags']}〕"


def is_header(line: str) -> bool:
    return line.startswith("〔") and "| date: " in line and line.rstrip().endswith("〕")


def without_header(text: str) -> str:
    """A source's text without the front-matter line the answerer reads first (readers see title and
    date beside it)."""
    return "\n".join(line for line in text.split("\n") if not is_header(line))
