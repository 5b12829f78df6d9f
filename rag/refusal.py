"""Refusals of two kinds, decided by small functions over scores.

- "off_archive": the archive does not cover the question at all. Decided before any answering,
  from retrieval evidence (best dense cosine, idf-weighted coverage of the question's terms by the
  top passages). With a chat endpoint this gate is loose (it only stops what is clearly off the
  archive); the model then decides the rest.
- "not_stated": the archive covers the topic but not the asked fact. With a chat endpoint the
  model replies with `MARKER`; without one, the question names an identifier (a version, a CVE
  id) that none of the sources holds, or the extractive answerer's best per-sentence answer
  score is below a threshold. Any answerer that scores sentences (the overlap scorer of
  `generation.extractive_answer`, or a learned sentence ranker) plugs in through `no_answer`.
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
    """The question's identifiers (versions, CVE ids: `metadata.key_tokens`) that the sources lack.

    A question about Ruby 3.3.10 retrieves the posts on 3.3.9 and 3.3.12; quoting them would
    answer about another release. `held`: per source, the identifiers it holds."""
    return [t for t in dict.fromkeys(identifiers) if not any(t in h for h in held)]


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
