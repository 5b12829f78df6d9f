"""The cross reader: adapters on the bundled e5 weights (identity at start, merged exactly), the pair
layout, the model file (bundled, absent, broken, off), the bundled model reading the answer and
refusing a missing fact, the hook in the assistant, and the training script on a hand-made set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag import cross_reader as cr
from rag import extractive as ex

PG_Q = "PostgreSQLのインデックスを見直したとき、p95はどれくらい下がった？"
PG_SOURCES = [
    "注文履歴の API が遅いという問い合わせが増えたので、PostgreSQL 13 のインデックスを見直しました。"
    "対象のテーブルは約4,800万行あります。",
    "## 結果\n注文履歴 API の p95 レイテンシは 320ms から 85ms に下がりました。ディスク使用量も約14GB減りました。",
]
# the same passages do not say who did it, nor which autovacuum setting was used
MISSING_QS = ["PostgreSQLのインデックス記事では autovacuum_vacuum_scale_factor をいくつに設定した？"]


@pytest.fixture(scope="module")
def bundled():
    r = ex.load_reader(None, "")
    assert r is not None and r.cross is not None, "the bundled rag/models/cross_reader.npz is missing"
    return r


def _encoder():
    from rag.e5 import E5Tokenizer, Q4File, WordEmbeddings, default_model_path
    from rag.fast_e5 import build_encoder

    f = Q4File(default_model_path())
    return f, E5Tokenizer(f), WordEmbeddings(f), build_encoder(f, "fp32")


def test_adapters_start_as_the_bundled_encoder_and_merge_exactly():
    import torch

    f, tok, wemb, enc = _encoder()
    rows = [cr.pair_ids(tok, PG_Q, s) for s in PG_SOURCES]
    w, m = cr.batch_inputs(wemb, tok.unk, rows)
    with torch.inference_mode():
        plain = enc(w, m).numpy()
    params = cr.add_adapters(enc, [10, 11], rank=4)
    assert sorted(params) == sorted(f"l{i}.{n}.{ab}" for i in (10, 11) for n in cr.MODULES for ab in "AB")
    with torch.inference_mode():
        assert np.allclose(enc(w, m).numpy(), plain, atol=1e-6)   # B = 0: nothing changes
        g = torch.Generator().manual_seed(1)
        for k, p in params.items():
            if k.endswith(".B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        adapted = enc(w, m).numpy()
    assert not np.allclose(adapted, plain, atol=1e-3)
    fresh = _encoder()[3]
    cr.merge_adapters(fresh, {k: v.detach().numpy() for k, v in params.items()})
    with torch.inference_mode():
        assert np.allclose(fresh(w, m).numpy(), adapted, atol=1e-4)


def test_pair_layout_and_truncation():
    f, tok, _, _ = _encoder()
    ids = cr.pair_ids(tok, "誰?", "田中です。")
    q, s = tok.content_ids("query: 誰?"), tok.content_ids("passage: 田中です。")
    assert ids == [tok.bos, *q, tok.eos, tok.eos, *s, tok.eos]
    long = cr.pair_ids(tok, "質問" * 200, "文" * 500)
    assert len(long) == cr.MAX_Q_TOKENS + cr.MAX_S_TOKENS + 4


def test_model_file_absent_broken_and_off(tmp_path, bundled):
    assert cr.load_cross_reader(tmp_path / "none.npz") is None
    assert ex.load_reader(None, str(tmp_path / "none.npz")).cross is None
    assert ex.load_reader(None, "off").cross is None
    (tmp_path / "broken.npz").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="broken.npz"):
        ex.load_reader(None, str(tmp_path / "broken.npz"))
    m = bundled.cross.meta
    assert m["script"] == "eval/train_cross_reader.py" and "JaQuAD" in m["training_data"]
    assert 0.0 < bundled.cross.refuse_below < 1.0


def test_bundled_model_leads_with_the_answer_and_scores_a_missing_fact_low(bundled):
    text, p, _ = ex.read(PG_Q, PG_SOURCES, None, bundled)
    assert "85ms" in text.split("\n")[0].replace(" ", "") and p >= bundled.cross.refuse_below
    for q in MISSING_QS:
        p_missing = ex.read(q, PG_SOURCES, None, bundled).p
        assert p_missing < bundled.cross.refuse_below, q


def test_a_list_item_is_read_with_its_lists_introduction(bundled):
    # 「* 会場: …」 alone does not say which event; after 「松江Ruby会議07 を…開催します」 it does
    # (read alone it scored 0.528 against 0.526 for the registration sentence; with it, 0.72)
    text = ("日本Rubyの会が後援する地域Ruby会議の1つである松江Ruby会議07の参加登録が開始されました。\n\n"
            "松江Ruby会議07 を次のとおり開催します。\n\n* 日時: 2015年10月24日(土)\n* 会場: 松江テルサ４F\n"
            "* 参加費: 無料\n\n参加登録は公式サイトからどうぞ。")
    ranked = ex.rank_sentences("松江Ruby会議07 の会場はどこですか？", [text], None, bundled)
    assert "松江テルサ" in ranked[0][1]
    assert ranked[0][2] - ranked[1][2] > 0.1, ranked[:2]


def test_reread_keeps_the_rest_below_the_reread_sentences(bundled):
    cands = ex.candidates(PG_SOURCES)
    p = np.full(len(cands), 0.99)   # the rest scored high by the linear reader ...
    p[:2] = 0.2                     # ... but the order says the first two were its best: they stay first
    order = list(range(len(cands)))
    cross = cr.CrossReader(bundled.cross.weights, bundled.cross.stack, 2, 0.5, {}, bundled.cross._load_model())
    new_order, scores = ex.reread(PG_Q, cands, order, p, cross)
    assert sorted(new_order[:2]) == [0, 1] and new_order[2:] == order[2:]
    assert max(scores[new_order[2:]]) <= min(scores[new_order[:2]])


def test_assistant_refuses_a_missing_fact_without_an_endpoint(retriever, settings):
    from rag.generation import Assistant

    a = Assistant(settings.replace(extractive_min_p=-1.0), retriever)   # the model's own threshold
    assert a.reader is not None and a.reader.cross is not None
    assert a.min_answer_p() == a.reader.cross.refuse_below
    ans = a.ask(PG_Q)
    assert ans.mode == "extractive" and "85ms" in ans.answer.replace(" ", "")
    assert ans.evidence["answer_p"] >= a.min_answer_p()
    ans = a.ask(MISSING_QS[0])
    assert ans.mode == "refused" and ans.refusal == "not_stated" and ans.sources
    never = Assistant(settings, retriever)   # default 0: the cross reader ranks, never refuses
    assert never.min_answer_p() == 0.0 and never.ask(MISSING_QS[0]).mode == "extractive"
    off = Assistant(settings.replace(extractive_cross="off"), retriever)
    assert off.reader.cross is None and off.ask(MISSING_QS[0]).mode == "extractive"


def test_a_follow_up_is_read_as_typed_not_as_the_glued_rewrite(retriever, settings):
    """Without an endpoint the follow-up is rewritten as "previous question + follow-up" for
    retrieval; the cross reader must answer the follow-up, not the previous question again."""
    from rag.generation import Assistant

    a = Assistant(settings, retriever)
    q = "注文履歴APIのp95レイテンシはいくつに下がった？"
    first = a.ask(q)
    follow = a.ask("ディスク使用量はどれくらい減った？", history=[(q, first.answer)])
    assert follow.standalone_question.startswith(q)   # the rule's rewrite, as retrieval used it
    lead = follow.answer.split("\n\n", 1)[1].split("\n")[0]
    assert "14GB" in lead, follow.answer


@pytest.mark.slow
def test_training_script_fits_a_loadable_cross_reader(tmp_path):
    """eval/train_cross_reader.py end to end on a hand-made SQuAD-format set (the real one is ../shared)."""
    import subprocess
    import sys

    articles = []
    for j in range(12):
        paras = []
        for i in range(3):
            k = j * 3 + i
            ctx = (f"第{k}号機の開発は順調だった。第{k}号機は{2000 + k}年{k % 12 + 1}月に完成した。"
                   f"設計者はタナカ{k}である。部品は{100 + k}個ある。")
            paras.append({"context": ctx, "qas": [
                {"id": f"q{k}a", "question": f"第{k}号機が完成したのはいつ?",
                 "answers": [{"text": f"{2000 + k}年{k % 12 + 1}月", "answer_start": ctx.index(f"{2000 + k}年")}]}]})
        articles.append({"title": f"t{j}", "paragraphs": paras})
    (tmp_path / "jaquad_train_0000.json").write_text(json.dumps({"data": articles}, ensure_ascii=False),
                                                     encoding="utf-8")
    out = tmp_path / "cross.npz"
    root = ex.DEFAULT_MODEL.parents[2]
    run = subprocess.run([sys.executable, str(root / "eval" / "train_cross_reader.py"), "--train", str(tmp_path),
                          "--skip-articles", "0", "--questions", "12", "--held-questions", "3", "--layers", "1",
                          "--fact-missing", "6", "--fact-missing-kind", "value",
                          "--out", str(out)], capture_output=True, text=True, cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    r = ex.load_reader(None, str(out))
    assert r.cross is not None and r.cross.meta["script"] == "eval/train_cross_reader.py"
    # the other passages date other machines: answer-removed pools that still state a date
    assert "6 of them fact-missing pools" in r.cross.meta["training_data"]
    assert r.cross.meta["held_out_fact_missing_value_questions"] > 0
    assert not out.with_suffix(".unscored.npz").exists()   # the pre-scoring copy is gone once scored
    assert r.cross.top == 8 and set(r.cross.weights) >= {"l11.qkv.A", "l11.fo.B", "head.w", "head.b"}
    text, p, _ = ex.read("第3号機が完成したのはいつ?", ["第3号機の開発は順調だった。第3号機は2003年4月に完成した。"], None, r)
    assert text and 0.0 <= p <= 1.0
