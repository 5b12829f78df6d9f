"""Text helpers shared by chunking, keyword search, citations, generation, the UI and evaluation.

One home per idea, so that, for example, the claim check and the passage highlighting compare the
same bigrams, and a `[n]` marker means the same thing to the renumberer, the extractive answerer
and the UI, and a code block ends at the same line for the cleaner, the chunker, the site reader
and the extractive answerers (`fenced_lines`). Pure functions on strings; imports nothing from the
package.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Sequence

# ------------------------------------------------------------------ normalisation

_WS_RE = re.compile(r"\s+")
_PUNCT_RE = re.compile(r"[\s、，,。．.！!？?「」『』（）()・:：;；\-—–…\"'“”‘’]+")


def fold(text: str) -> str:
    """NFKC (full/half width folded) and lower case: the form every tokenizer starts from."""
    return unicodedata.normalize("NFKC", text).lower()


def normalize(text: str) -> str:
    """`fold` without whitespace: the form in which an answer is looked for in a passage."""
    return _WS_RE.sub("", fold(text))


def dedup_key(text: str) -> str:
    """`fold` without whitespace or punctuation: the form in which repeated sentences are compared."""
    return _PUNCT_RE.sub("", fold(text))


# ------------------------------------------------------------------ script detection

CJK_CLASS = r"\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u30fc々〆ヶ"
CJK_RE = re.compile(f"[{CJK_CLASS}]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_HIRAGANA_ONLY = re.compile(r"^[\u3040-\u309f]+$")


def has_cjk(text: str) -> bool:
    return CJK_RE.search(text) is not None


def is_english(text: str) -> bool:
    """No kana or kanji and at least two Latin letters (decides the prompt and refusal language)."""
    return not has_cjk(text) and len(_LATIN_RE.findall(text)) >= 2


# ------------------------------------------------------------------ code fences

# Three or more ` or ~, any indentation (a fence inside a list item is indented), then the info string.
_FENCE_RE = re.compile(r"[ \t]*(`{3,}|~{3,})([^\n]*)")


def _fence(line: str) -> tuple[str, str] | None:
    """(marker run, rest of the line) when the line is a fence line, else None. A backtick fence's
    info string holds no backtick: "```a```" is inline code, not a fence (CommonMark)."""
    m = _FENCE_RE.match(line)
    if m is None or (m.group(1)[0] == "`" and "`" in m.group(2)):
        return None
    return m.group(1), m.group(2)


def is_fence(line: str) -> bool:
    """Whether the line (or a block's first line) opens a fenced code block: ``` or ~~~."""
    return _fence(line) is not None


def _closes(marker: str, line: str) -> bool:
    """CommonMark: only a run of the opening character, at least as long, with nothing after it,
    closes the block; "```python" inside a ~~~ block or a ``` inside a ```` block is code."""
    f = _fence(line)
    return f is not None and f[0][0] == marker[0] and len(f[0]) >= len(marker) and not f[1].strip()


def fenced_lines(lines: Sequence[str]) -> list[bool]:
    """For each line, whether it is part of a fenced code block (its two fence lines included);
    a block never closed runs to the end, as a Markdown renderer shows it."""
    out, marker = [], None
    for line in lines:
        if marker is None:
            f = _fence(line)
            marker = f[0] if f else None
            out.append(marker is not None)
        else:
            out.append(True)
            if _closes(marker, line):
                marker = None
    return out


def outside_fences(text: str, fn: Callable[[str], str]) -> str:
    """`fn` applied to the text outside fenced code blocks, the blocks kept as they are (a code
    sample may show a comment or a template tag on purpose). `fn` gets each stretch between two
    blocks whole, newlines included."""
    lines = text.split("\n")
    out, start, pos = [], 0, 0   # start: where the current stretch (code or not) began
    code = fenced_lines(lines)
    for i, line in enumerate(lines):
        if i and code[i] != code[i - 1]:
            cut = pos - 1 if code[i - 1] else pos   # a code stretch ends before its last newline
            out.append(text[start:cut] if code[i - 1] else fn(text[start:cut]))
            start = cut
        pos += len(line) + 1
    out.append(text[start:] if code[-1] else fn(text[start:]))
    return "".join(out)


# ------------------------------------------------------------------ sentences

_SENT_END_RE = re.compile(r"[。！？!?]+[」』）)]*|\n")
_SEGMENT_RE = re.compile(r"(?<=[。！？!?\n])|(?<=[.;])(?=\s)")
_PAIRS = {"「": "」", "『": "』", "（": "）", "(": ")", "【": "】"}
_MAX_QUOTE = 300   # a bracket left open this long is a typo, not a quotation


def _quoted(text: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost bracket pair (「…」, 『…』, （…）) closed on its own line
    within `_MAX_QUOTE` characters."""
    out, stack = [], []
    for i, c in enumerate(text):
        if c == "\n":
            stack = []
        elif c in _PAIRS:
            stack.append((c, i))
        elif stack and c == _PAIRS[stack[-1][0]]:
            _, start = stack.pop()
            if not stack and i - start <= _MAX_QUOTE:
                out.append((start, i + 1))
    return out


def split_sentences(text: str, keep_quotes: bool = True) -> list[str]:
    """Japanese-aware sentence split on 。！？!? and newlines, the delimiters (and closing brackets)
    kept with the sentence, blank pieces dropped (chunking, cleaning, claims, extractive answers).

    keep_quotes: a quotation is part of its sentence (「…。…」と述べた。 is one sentence, and
    『文学賞メッタ斬り!』を著した… does not end at the title's "!"). Chunking and cleaning pass
    False: their units were measured for retrieval as they are (re-chunking with quotations kept
    moved JaQuAD hit@1 0.8825 -> 0.8725), and an index stays what it was."""
    quoted = _quoted(text) if keep_quotes and any(c in text for c in _PAIRS) else []
    out, start, q = [], 0, 0
    for m in _SENT_END_RE.finditer(text):
        while q < len(quoted) and quoted[q][1] <= m.start():
            q += 1
        if m.group(0) != "\n" and q < len(quoted) and quoted[q][0] < m.start() and m.end() <= quoted[q][1]:
            continue   # inside a quotation (its closing bracket included)
        out.append(text[start:m.end()])
        start = m.end()
    out.append(text[start:])
    return [s for s in out if s.strip()]


def split_segments(text: str) -> list[str]:
    """Sentences and lines, also English ones ending in `. `; joined back they give the text exactly
    (the UI marks some of them inside the passage)."""
    return [s for s in _SEGMENT_RE.split(text) if s]


# ------------------------------------------------------------------ bigrams

_WORD_RE = re.compile(f"[0-9a-z][0-9a-z_.+#\\-]*|[{CJK_CLASS}]+")


def bigram_tokens(text: str) -> list[str]:
    """Latin words whole, CJK runs as overlapping character bigrams (a lone char stays a unigram)."""
    out = []
    for run in _WORD_RE.findall(fold(text)):
        if CJK_RE.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.append(run.strip(".-+_"))
    return [t for t in out if t]


def content_bigrams(text: str) -> set[str]:
    """Bigram tokens of the text without citation markers and without all-hiragana bigrams (particles
    and endings): what a claim and a passage are compared on."""
    return {t for t in bigram_tokens(strip_citations(text)) if not _HIRAGANA_ONLY.match(t)}


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Character n-grams of the text without whitespace (near-duplicate passages)."""
    t = "".join(text.split())
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


# ------------------------------------------------------------------ citation markers

# [1], [1, 2], [1][2], 【1】, ［1］, [^1]; group 1 holds the numbers
CITATION_RE = re.compile(r"[\[【［]\^?\s*(\d{1,3}(?:\s*[,，、]\s*\^?\d{1,3})*)\s*[\]】］]")


def citation_numbers(marker_body: str) -> list[int]:
    """The numbers inside one marker's group 1 (`"1, ^2"` -> [1, 2])."""
    return [int(x) for x in re.findall(r"\d+", marker_body)]


def strip_citations(text: str) -> str:
    return CITATION_RE.sub("", text)


def defuse_markers(text: str) -> str:
    """Quoted post text may contain `[3]`-like strings: they are not our citations, keep them inert."""
    return CITATION_RE.sub(lambda m: f"〔{m.group(0)[1:-1]}〕", text)


_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|])")


def unescape_markdown(text: str) -> str:
    """Markdown's backslash escapes removed (`1\\.8.4` -> `1.8.4`): what the post's reader sees."""
    return _MD_ESCAPE.sub(r"\1", text)

