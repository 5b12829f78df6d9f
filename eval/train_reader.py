"""Fit the extractive answerer's reader (rag/models/reader.json) on JaQuAD train: a sentence ranker and a span scorer.

Training data: ../shared/bench/jaquad-train (JaQuAD v0.1.0 train split, CC BY-SA 3.0, Skelter Labs;
691 Wikipedia articles, 31,748 questions). Never scored on: `rag eval` and eval/extractive_eval.py
score on ../shared/bench/jaquad (the dev split, no article shared) and ../shared/bench/rubyja.

Each question gets the pool the answerer sees at run time: the sentences of three passages, the
gold paragraph and the article's other paragraphs that best match the question (bigram BM25-like
idf overlap), ranked by that match. A sentence is positive when it contains a gold answer
(normalized as in `rag eval`). The model sees rag.extractive.FEATURES; articles are
split 90/10 to report held-out top-1 accuracy (the share of pools whose best sentence holds the
answer). The shipped ranker is a logistic regression on the first 80 articles (3,209 questions,
about two minutes here): a 32-unit network (--hidden 32) did as well on held-out train articles
(0.678 vs 0.684) and worse on the blog set; 60 or 100 articles gave the same JaQuAD dev figure.

The span scorer sees the gold sentence of each typed question (いつ, 誰, いくつ, バージョン, ...) and
its candidate spans (MeCab noun phrases, quoted terms, date/number/version patterns); a span is
positive when it contains a gold answer and is at most twice its length (+4 characters). The
probability a span needs before the answer leads with it is the lowest one at which held-out
spans are right at least --span-precision of the time. CPU only: a few minutes on 2 cores.

    python eval/train_reader.py [--train ../shared/bench/jaquad-train] [--out rag/models/reader.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.evaluation import contains_answer  # noqa: E402
from rag.extractive import (FEATURES, SPAN_FEATURES, Candidate, LinearModel, Reader, features,  # noqa: E402
                            passage_sentences, question_type, span_candidates, span_features)
from rag.text import bigram_tokens, normalize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_articles(train_dir: Path) -> list[dict]:
    files = sorted(glob.glob(str(train_dir / "jaquad_train_*.json")))
    if not files:
        raise SystemExit(f"no jaquad_train_*.json in {train_dir}")
    out = []
    for f in files:
        out.extend(json.loads(Path(f).read_text(encoding="utf-8"))["data"])
    return out


def make_idf(articles: list[dict]):
    df: Counter = Counter()
    n = 0
    for a in articles:
        for p in a["paragraphs"]:
            df.update(set(bigram_tokens(p["context"])))
            n += 1
    top = math.log(1 + (n + 0.5) / 0.5)
    table = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
    return lambda t: table.get(t, top)


def pools(articles: list[dict], idf, passages: int = 3):
    """(question, candidates, labels) per question, the gold paragraph always in the pool."""
    for a in articles:
        paras = [p["context"] for p in a["paragraphs"]]
        para_terms = [set(bigram_tokens(p)) for p in paras]
        sents = [passage_sentences(p) for p in paras]
        for gi, p in enumerate(a["paragraphs"]):
            for qa in p["qas"]:
                q = qa["question"]
                answers = [x["text"] for x in qa["answers"]]
                w = {t: idf(t) for t in set(bigram_tokens(q))}
                match = [sum(v for t, v in w.items() if t in ts) for ts in para_terms]
                order = sorted(range(len(paras)), key=lambda i: -match[i])[:passages]
                if gi not in order:
                    order[-1] = gi
                cands, labels = [], []
                for n, pi in enumerate(order, start=1):
                    for i, s in enumerate(sents[pi]):
                        cands.append(Candidate(n, i, s))
                        labels.append(int(contains_answer(s, answers)))
                if cands and any(labels):
                    yield q, cands, labels


def build(articles, idf):
    X, y, group = [], [], []
    for g, (q, cands, labels) in enumerate(pools(articles, idf)):
        X.append(features(q, cands, idf))
        y.extend(labels)
        group.extend([g] * len(labels))
    return np.vstack(X), np.asarray(y), np.asarray(group)


def span_data(articles):
    """Span rows of the gold sentence of every typed question."""
    X, y, group = [], [], []
    g = 0
    for a in articles:
        for p in a["paragraphs"]:
            sents = passage_sentences(p["context"])
            for qa in p["qas"]:
                q = qa["question"]
                if question_type(q) in ("", "reason"):
                    continue
                answers = [x["text"] for x in qa["answers"]]
                gold = next((s for s in sents if contains_answer(s, answers)), None)
                if gold is None:
                    continue
                spans = span_candidates(q, gold)
                labels = [int(contains_answer(sp.text, answers) and any(
                    len(normalize(sp.text)) <= 2 * len(normalize(a_)) + 4 for a_ in answers))
                    for sp in spans]
                if not spans:
                    continue
                X.append(span_features(q, gold, spans))
                y.extend(labels)
                group.extend([g] * len(spans))
                g += 1
    return np.vstack(X), np.asarray(y), np.asarray(group)


def top1(scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    return float(np.mean(best_labels(scores, y, group)[1]))


def best_labels(scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best score, its label) per group."""
    order = np.lexsort((-scores, group))
    first = np.ones(len(order), bool)
    first[1:] = group[order][1:] != group[order][:-1]
    idx = order[first]
    return scores[idx], y[idx]


def fit(X: np.ndarray, y: np.ndarray, names, C: float, hidden: int = 0) -> LinearModel:
    """Logistic regression, or (hidden > 0) a one-hidden-layer ReLU network (sklearn MLPClassifier,
    early stopping on 10% of the rows, fixed seed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    mean, scale = X.mean(0), X.std(0)
    scale[scale == 0] = 1.0
    Z = (X - mean) / scale
    if hidden:
        mlp = MLPClassifier((hidden,), max_iter=60, random_state=0, early_stopping=True).fit(Z, y)
        (W1, W2), (b1, b2) = mlp.coefs_, mlp.intercepts_
        return LinearModel(tuple(names), mean, scale, W2[:, 0], float(b2[0]), (W1, b1))
    lr = LogisticRegression(C=C, max_iter=3000).fit(Z, y)
    return LinearModel(tuple(names), mean, scale, lr.coef_[0], float(lr.intercept_[0]))


def threshold_for(scores: np.ndarray, labels: np.ndarray, precision: float) -> float:
    """Lowest score at which the spans scoring at least that are right `precision` of the time."""
    order = np.argsort(-scores)
    prec = np.cumsum(labels[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(prec >= precision)
    return float(scores[order][ok[-1]]) if ok.size else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default=str(ROOT.parent / "shared" / "bench" / "jaquad-train"))
    ap.add_argument("--out", default=str(ROOT / "rag" / "models" / "reader.json"))
    ap.add_argument("--articles", type=int, default=80, help="use only the first N articles (default 80; 0 = all)")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regressions")
    ap.add_argument("--hidden", type=int, default=0,
                    help="hidden units of a one-layer network as sentence ranker (default 0 = logistic regression)")
    ap.add_argument("--span-precision", type=float, default=0.8,
                    help="held-out precision a span needs to lead the answer (default 0.8)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    articles = load_articles(Path(args.train))
    if args.articles:
        articles = articles[:args.articles]
    idf = make_idf(articles)
    rng = np.random.default_rng(0)
    held = set(rng.choice(len(articles), size=max(1, len(articles) // 10), replace=False).tolist())
    fit_articles = [a for i, a in enumerate(articles) if i not in held]
    test_articles = [a for i, a in enumerate(articles) if i in held]
    X, y, g = build(fit_articles, idf)
    Xt, yt, gt = build(test_articles, idf)
    S, sy, sg = span_data(fit_articles)
    St, syt, sgt = span_data(test_articles)
    t_feat = time.perf_counter() - t0

    sent = fit(X, y, FEATURES, args.C, args.hidden)
    held_top1 = top1(sent.predict(Xt), yt, gt)
    baseline = top1(Xt[:, FEATURES.index("cov")] + 1e-6 * Xt[:, FEATURES.index("passage_inv_rank")], yt, gt)
    span = fit(S, sy, SPAN_FEATURES, args.C)
    best_p, best_y = best_labels(span.predict(St), syt, sgt)
    thr = threshold_for(best_p, best_y, args.span_precision)
    span_top1 = float(best_y.mean())
    span_rate = float((best_p >= thr).mean())
    # the shipped models are refitted on every article
    sent = fit(np.vstack([X, Xt]), np.concatenate([y, yt]), FEATURES, args.C, args.hidden)
    span = fit(np.vstack([S, St]), np.concatenate([sy, syt]), SPAN_FEATURES, args.C)
    secs = time.perf_counter() - t0
    meta = {"training_data": "JaQuAD v0.1.0 train split (Skelter Labs, CC BY-SA 3.0), "
                             f"{len(articles)} articles, {len(set(g)) + len(set(gt))} questions "
                             f"({len(set(sg)) + len(set(sgt))} typed ones for spans)",
            "script": "eval/train_reader.py", "model": (f"sentences: MLP {len(FEATURES)}-{args.hidden}-1" if args.hidden else
                      f"sentences: logistic regression C={args.C}") + f"; spans: logistic regression C={args.C}",
            "sentence_rows": int(len(y) + len(yt)), "span_rows": int(len(sy) + len(syt)),
            "held_out_sentence_top1": round(held_top1, 4),
            "held_out_sentence_top1_coverage_only": round(baseline, 4),
            "held_out_span_top1": round(span_top1, 4),
            "span_threshold_precision": args.span_precision, "held_out_span_lead_rate": round(span_rate, 4),
            "train_seconds": round(secs, 1)}
    Reader(sent, span, thr, meta).save(args.out)
    print(json.dumps({**meta, "span_threshold": round(thr, 4), "features_seconds": round(t_feat, 1),
                      "out": args.out, "bytes": os.path.getsize(args.out)}, ensure_ascii=False, indent=1))
    if sent.hidden is None:
        for name, c in sorted(zip(FEATURES, sent.coef), key=lambda x: -abs(x[1]))[:10]:
            print(f"  sentence {name:18s} {c:+.3f}")
    for name, c in sorted(zip(SPAN_FEATURES, span.coef), key=lambda x: -abs(x[1]))[:10]:
        print(f"  span     {name:18s} {c:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
