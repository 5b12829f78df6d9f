"""Citations that can be trusted: parse `[n]`, drop numbers that point nowhere, renumber in order of
first citation (also while streaming), and check each cited sentence against its sources.

The numbers shown in the answer and the numbers of the source list are one list: source 1 is the
first source the answer cites, and so on; retrieved passages the answer does not cite follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from .text import (CITATION_RE, citation_numbers, content_bigrams, split_sentences, strip_citations,
                   unescape_markdown)

_CITE_RUN_RE = re.compile(r"(?:" + CITATION_RE.pattern + r")+")
_PARTIAL_RE = re.compile(r"[\[【［]\^?[\d\s,，、^]*$")
_NUM_RE = re.compile(r"\d+(?:[.,]\d+)*")


def cited_numbers(text: str) -> list[int]:
    """All cited numbers in order of appearance (with repeats)."""
    out = []
    for m in CITATION_RE.finditer(text):
        out.extend(citation_numbers(m.group(1)))
    return out


@dataclass
class Renumberer:
    """Streaming-safe rewrite of `[n]` markers: valid numbers renumbered by first use, invalid ones dropped."""

    n_sources: int
    mapping: dict[int, int] = field(default_factory=dict)  # original -> shown
    invalid: list[int] = field(default_factory=list)
    _buf: str = ""

    def _sub(self, m: re.Match) -> str:
        out = []
        for n in citation_numbers(m.group(1)):
            if 1 <= n <= self.n_sources:
                if n not in self.mapping:
                    self.mapping[n] = len(self.mapping) + 1
                tag = f"[{self.mapping[n]}]"
                if tag not in out:
                    out.append(tag)
            elif n not in self.invalid:
                self.invalid.append(n)
        return "".join(out)

    def feed(self, text: str) -> str:
        """Rewrite what can be rewritten; hold back a possibly unfinished marker at the end."""
        self._buf += text
        m = _PARTIAL_RE.search(self._buf)
        if m and len(self._buf) - m.start() <= 40:
            head, self._buf = self._buf[:m.start()], self._buf[m.start():]
        else:
            head, self._buf = self._buf, ""
        return _CITE_RUN_RE.sub(self._sub_run, head)

    def _sub_run(self, m: re.Match) -> str:
        """A run of adjacent markers ([2][2], [1][3]) becomes one run without repeats."""
        tags = "".join(CITATION_RE.sub(self._sub, x.group(0)) for x in CITATION_RE.finditer(m.group(0)))
        return "".join(dict.fromkeys(re.findall(r"\[\d+\]", tags)))

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        if _PARTIAL_RE.fullmatch(rest):
            return ""  # an unfinished marker at the very end is not text
        return _CITE_RUN_RE.sub(self._sub_run, rest)

    def order(self) -> list[int]:
        """Original source numbers in the order they are now numbered."""
        return [n for n, _ in sorted(self.mapping.items(), key=lambda kv: kv[1])]


def support_score(claim: str, source: str) -> float:
    """Share of the claim's content bigrams (and Latin words) found in the source; numbers must all appear.
    The source is read as its reader sees it (an extractive quote of `1\\.8.4` says 1.8.4)."""
    c = content_bigrams(claim)
    if not c:
        return 1.0
    source = unescape_markdown(source)
    s = content_bigrams(source)
    nums = set(_NUM_RE.findall(strip_citations(claim)))
    src_norm = "".join(source.split())
    if any(n not in src_norm for n in nums):
        return 0.0
    return len(c & s) / len(c)


@dataclass
class Claim:
    text: str
    citations: list[int]
    supported: bool
    score: float


def check_claims(answer: str, sources: dict[int, str], threshold: float = 0.5) -> list[Claim]:
    """Every sentence that cites something is checked against the sources it cites.

    Sentences without citations are claims too, unless they are short connective text.
    """
    claims = []
    for sent in split_sentences(answer):
        nums = [n for n in dict.fromkeys(cited_numbers(sent))]
        body = strip_citations(sent).strip()
        if len(content_bigrams(body)) < 3 and not nums and not _NUM_RE.search(body):
            continue  # short connective text, nothing claimed
        if not content_bigrams(body):
            continue
        if not nums:
            claims.append(Claim(body, [], False, 0.0))
            continue
        score = max((support_score(body, sources[n]) for n in nums if n in sources), default=0.0)
        claims.append(Claim(body, nums, score >= threshold, round(score, 3)))
    return claims


def groundedness(claims: Sequence[Claim | dict], citations: Sequence[dict]) -> str:
    """Verdict on a model answer from its checked claims: "yes" (every claim supported and citing a listed
    source), "partly" (some are), "no" (none is; also when the answer makes no claim at all, e.g. an echo
    of the prompt reduced to nothing, or only invalid citation numbers)."""
    listed = {c["n"] for c in citations}

    def grounded(c: Claim | dict) -> bool:
        get = c.get if isinstance(c, dict) else lambda k: getattr(c, k)
        return bool(get("supported")) and any(n in listed for n in get("citations") or ())

    ok = [grounded(c) for c in claims]
    if ok and all(ok):
        return "yes"
    return "partly" if any(ok) else "no"
