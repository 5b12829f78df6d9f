"""Training questions for the answer-or-refuse decision that no reported figure is scored on.

From JaQuAD's dev questions *outside* the evaluation set (eval-questions.jsonl):

- `pool-dev.jsonl`: 400 answerable questions and every unanswerable one, against the full JaQuAD
  index;
- `half-posts/` and `pool-half.jsonl`: the posts of even-numbered articles only, and 250 questions
  about the odd-numbered ones (made unanswerable by leaving their article out: near-topic
  negatives) with 150 about the kept ones.

    python eval/answerability_pools.py JAQUAD_DIR OUT_DIR [--seed 28]
    rag ingest OUT_DIR/half-posts --index OUT_DIR/idx-half
    rag eval OUT_DIR/pool-dev.jsonl --index JAQUAD_INDEX --out OUT_DIR/out-dev
    rag eval OUT_DIR/pool-half.jsonl --index OUT_DIR/idx-half --out OUT_DIR/out-half
    python eval/fit_answerability.py --pool OUT_DIR/out-dev OUT_DIR/out-half --sets NAME=EVAL_OUT ...
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path


def as_eval(q: dict, answerable: bool) -> dict:
    return {"id": q["id"], "question": q["question"], "answers": q["answers"] if answerable else [],
            "gold_posts": [q["gold_article_id"]] if answerable else [], "answerable": answerable}


def write(path: Path, questions: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jaquad", type=Path, help="folder with posts/, questions_all.jsonl, eval-questions.jsonl")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=28)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    scored = {json.loads(line)["id"] for line in open(args.jaquad / "eval-questions.jsonl", encoding="utf-8")}
    outside = [q for line in open(args.jaquad / "questions_all.jsonl", encoding="utf-8")
               if (q := json.loads(line))["id"] not in scored]
    answerable = [q for q in outside if q["answerable"]]
    dev = rng.sample(answerable, 400) + [q for q in outside if not q["answerable"]]
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "pool-dev.jsonl", [as_eval(q, q["answerable"]) for q in dev])

    half = args.out / "half-posts"
    half.mkdir(exist_ok=True)
    kept = set()
    for post in sorted((args.jaquad / "posts").glob("de-*.md")):
        if int(post.stem[3:6]) % 2 == 0:
            shutil.copy(post, half / post.name)
            kept.add(post.stem)
    rest = [q for q in answerable if q not in dev]
    gone = [q for q in rest if q["gold_article_id"] not in kept]
    held = [q for q in rest if q["gold_article_id"] in kept]
    pool = rng.sample(gone, 250) + rng.sample(held, 150)
    write(args.out / "pool-half.jsonl", [as_eval(q, q["gold_article_id"] in kept) for q in pool])
    print(f"{len(dev)} dev questions; {len(kept)} of the posts kept, {len(pool)} questions against them")


if __name__ == "__main__":
    main()
