"""Evaluation: metrics as plain functions and dicts, in the style of sentence-transformers' evaluators.

A retrieved passage is relevant when it comes from a gold post and contains one of the gold
answers after normalization (NFKC, width, case, whitespace); post-level relevance needs only
the gold post. Japanese needs no word splitting for these checks: containment and
character-level F1 work on characters.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

KS = (1, 3, 5, 10)
QUESTION_KEYS = {"id", "question", "answers", "gold_posts", "answerable"}


def normalize_answer(s: str) -> str:
    """NFKC (folds full/half width), lower case, whitespace removed."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", s)).lower()


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    t = normalize_answer(text)
    return any(normalize_answer(a) and normalize_answer(a) in t for a in answers)


def relevance(post_ids: Sequence[str], texts: Sequence[str], gold_posts: Sequence[str], answers: Sequence[str],
              post_level: bool = False) -> list[int]:
    gold = set(gold_posts)
    return [int(p in gold and (post_level or contains_answer(t, answers))) for p, t in zip(post_ids, texts)]


def hit_at_k(rels: Sequence[int], k: int) -> float:
    return float(any(rels[:k]))


def reciprocal_rank(rels: Sequence[int], k: int = 10) -> float:
    for i, r in enumerate(rels[:k], start=1):
        if r:
            return 1.0 / i
    return 0.0


def ndcg_at_k(rels: Sequence[int], k: int = 10) -> float:
    """Binary nDCG; the ideal list puts every relevant item found in the top k first (at least one)."""
    dcg = sum(r / math.log2(i + 1) for i, r in enumerate(rels[:k], start=1))
    n_rel = max(1, sum(1 for r in rels[:k] if r))
    idcg = sum(1 / math.log2(i + 1) for i in range(1, n_rel + 1))
    return dcg / idcg


def retrieval_metrics(all_rels: Sequence[Sequence[int]], ks: Iterable[int] = KS) -> dict[str, float]:
    """Mean hit@k, MRR@10 and nDCG@10 over questions (each a list of 0/1 by rank)."""
    n = len(all_rels)
    if n == 0:
        return {**{f"hit@{k}": 0.0 for k in ks}, "mrr@10": 0.0, "ndcg@10": 0.0}
    out = {f"hit@{k}": sum(hit_at_k(r, k) for r in all_rels) / n for k in ks}
    out["mrr@10"] = sum(reciprocal_rank(r, 10) for r in all_rels) / n
    out["ndcg@10"] = sum(ndcg_at_k(r, 10) for r in all_rels) / n
    return out


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 (bag of characters after normalization), the usual measure for Japanese QA."""
    p, g = Counter(normalize_answer(prediction)), Counter(normalize_answer(gold))
    common = sum((p & g).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def load_questions(path: str | Path) -> list[dict]:
    """Read a JSONL question set, naming the line of any malformed entry."""
    out = []
    p = Path(path)
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{n}: invalid JSON: {exc.msg}") from None
        missing = QUESTION_KEYS - set(q)
        if missing:
            raise ValueError(f"{p}:{n}: missing keys {sorted(missing)}")
        if not isinstance(q["answers"], list) or not isinstance(q["gold_posts"], list):
            raise ValueError(f"{p}:{n}: 'answers' and 'gold_posts' must be lists")
        out.append(q)
    return out
