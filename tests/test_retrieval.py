import pytest

from rag.index import IndexReader, UnusableIndex
from rag.retrieval import Filters, Retriever, near_duplicate, trigram_set, weighted_rrf


def test_weighted_rrf_hand_computed():
    fused = weighted_rrf([[1, 2, 3], [3, 4]], [1.0, 2.0], k=1)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 2)
    assert scores[3] == pytest.approx(1 / 4 + 2 / 2)
    assert scores[4] == pytest.approx(2 / 3)
    assert [d for d, _ in fused] == [3, 4, 1, 2]


def test_near_duplicate():
    a = trigram_set("PostgreSQLのインデックスを見直した結果です")
    assert near_duplicate(a, trigram_set("PostgreSQLのインデックスを見直した結果です。"), 0.9)
    assert not near_duplicate(a, trigram_set("まったく別の話題についての文章"), 0.9)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_modes_find_the_postgres_post(retriever, mode):
    hits = retriever.search("注文履歴APIのp95レイテンシはいくつからいくつに下がった？", k=5, mode=mode)
    assert hits and hits[0].post_id == "2021-06-30-postgres-index"
    assert "85ms" in hits[0].text.replace(" ", "")


def test_filters_apply_before_ranking(retriever):
    f = Filters(since="2024-01-01", until="2024-12-31")
    hits = retriever.search("インデックス", k=5, filters=f)
    assert hits and all(h.date and "2024-01-01" <= h.date[:10] <= "2024-12-31" for h in hits)
    tagged = retriever.search("レイテンシ", k=3, filters=Filters(tags=("PostgreSQL",)))
    assert tagged and all("postgresql" in [t.lower() for t in h.tags] for h in tagged)
    assert retriever.search("レイテンシ", k=3, filters=Filters(tags=("no-such-tag",))) == []


def test_results_have_no_near_identical_passages(retriever):
    hits = retriever.search("リモートワーク 会議 ルール", k=10)
    grams = [trigram_set(h.text) for h in hits]
    for i in range(len(grams)):
        for j in range(i + 1, len(grams)):
            assert not near_duplicate(grams[i], grams[j], 0.9)


def test_other_embedder_is_refused(sample_index, settings):
    class Fake:
        name = "st:other-model"
        dim = 384

    with pytest.raises(UnusableIndex, match="built with embedder"):
        Retriever(IndexReader(sample_index), Fake(), settings)


def test_parallel_legs_rank_exactly_as_serial(retriever, settings):
    from concurrent.futures import ThreadPoolExecutor

    serial = Retriever(retriever.reader, retriever.embedder, settings.replace(parallel_legs=False))
    questions = ["注文履歴APIのp95レイテンシ", "リモートワーク 会議 ルール", "What runtime does hibiki use?",
                 "形態素解析の辞書"]
    expected = {q: [(h.chunk_id, round(h.score, 6)) for h in serial.search(q, k=5)] for q in questions}
    assert retriever.settings.parallel_legs
    _, timings = serial.search_timed(questions[0], k=5)  # timings come back with the hits, not on the instance
    assert {"embed_ms", "dense_ms", "keyword_ms", "fusion_ms"} <= set(timings)
    assert not hasattr(serial, "last_timings")
    # many web threads at once share one retriever (and its keyword worker pool)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda q: (q, [(h.chunk_id, round(h.score, 6)) for h in retriever.search(q, k=5)]),
                            questions * 4))
    for q, hits in got:
        assert hits == expected[q]



def test_fused_keyword_hits_of_english_prose_are_those_the_dense_leg_found():
    from rag.retrieval import fused_keyword_hits

    kw, dense = [(7, 9.0), (3, 5.0), (8, 1.0)], [(3, 0.9), (8, 0.8), (1, 0.7)]
    assert fused_keyword_hits("Until when will the series receive fixes?", kw, dense) == [(3, 5.0), (8, 1.0)]
    assert fused_keyword_hits("いつまで修正されますか？", kw, dense) == kw          # Japanese: every hit
    assert fused_keyword_hits("YJIT", kw, dense) == kw                       # a lookup of a name
    assert fused_keyword_hits("CVE-2025-27219 Ruby", kw, dense) == kw        # or an id: two words


def test_an_english_question_is_matched_by_keyword_only_where_the_dense_leg_found_it(tmp_path, embedder, settings):
    """English words in a Japanese post are rare, so their idf is high: a post quoting "until when
    will the series receive fixes" outranked the release post the dense leg put first."""
    from rag.ingest import ingest

    from tests.conftest import write_post

    posts = tmp_path / "posts"
    write_post(posts, "2025-03-26-ruby-3-2-8.md", "Ruby 3.2.8 リリース",
               "Ruby 3.2.8 がリリースされました。Ruby 3.2 系列は 2026 年 3 月末までセキュリティに関する修正のみ行われます。")
    write_post(posts, "2024-05-01-pasta.md", "週末のパスタ",
               "週末にトマトのパスタを作りました。鍋に書いてあった英語は \"until when will the series receive security "
               "fixes? Until when? The series will receive fixes\" でした。")
    for i, (title, body) in enumerate([("カレーの作り方", "玉ねぎを炒めてカレーを作りました。"), ("庭の手入れ", "庭の草むしりをしました。"),
                                       ("Ruby 3.1.7 リリース", "Ruby 3.1.7 がリリースされました。"),
                                       ("Ruby 3.3.9 リリース", "Ruby 3.3.9 がリリースされました。"),
                                       ("Ruby 3.4.1 リリース", "Ruby 3.4.1 がリリースされました。"),
                                       ("Ruby 3.0.7 リリース", "Ruby 3.0.7 がリリースされました。")]):
        write_post(posts, f"2024-0{i + 2}-01-p{i}.md", title, body)
    ingest(posts, tmp_path / "index", settings, embedder)
    # each leg fetches 3 hits (an archive larger than the depth, as every real one is)
    r = Retriever(IndexReader(tmp_path / "index"), embedder, settings.replace(candidates=1))
    q = "Until when will the Ruby 3.2 series receive security fixes?"
    assert r.search(q, 1, "keyword")[0].post_id == "2024-05-01-pasta"
    dense = [h.post_id for h in r.search(q, 3, "dense")]
    assert dense[0] == "2025-03-26-ruby-3-2-8" and "2024-05-01-pasta" not in dense   # what the test relies on
    assert r.search(q, 1, "hybrid")[0].post_id == "2025-03-26-ruby-3-2-8"


def test_an_english_question_over_japanese_posts_weighs_the_dense_leg_more(settings):
    from rag.retrieval import fuse, fusion_weights

    en = "Which function of the os package returns the config directory?"
    s = settings.replace(crosslingual_dense_weight=0.8)
    assert fusion_weights(en, ["設定ディレクトリを返す関数です。"], s) == (0.8, pytest.approx(0.2))
    assert fusion_weights(en, ["It returns the config directory."], s) == (s.dense_weight, s.keyword_weight)
    assert fusion_weights("UserConfigDir", ["設定ディレクトリ"], s) == (s.dense_weight, s.keyword_weight)  # a lookup
    assert fusion_weights("設定ディレクトリを返す関数は？", ["設定"], s) == (s.dense_weight, s.keyword_weight)
    # score fusion, hand computed: dense 0.9 / 0.8 -> 1 / 0 after the shift; keyword 5.0 -> 1
    dense, kw = [(1, 0.9), (2, 0.8)], [(2, 5.0)]
    assert [d for d, _ in fuse("hybrid", dense, kw, s)] == [2, 1]                # 0.4 vs 0.6
    assert [d for d, _ in fuse("hybrid", dense, kw, s, (0.8, 0.2))] == [1, 2]    # 0.8 vs 0.2


def test_the_crosslingual_weight_reaches_the_hybrid_search(retriever):
    en = "How far did the p95 latency of the order history API drop?"
    dense_only = Retriever(retriever.reader, retriever.embedder, retriever.settings.replace(crosslingual_dense_weight=1.0))
    ids = lambda hits: [h.chunk_id for h in hits]   # noqa: E731
    assert ids(dense_only.search(en, k=5)) == ids(dense_only.search(en, k=5, mode="dense"))
    assert ids(retriever.search(en, k=5)) != ids(retriever.search(en, k=5, mode="dense"))
    ja = "注文履歴APIのp95レイテンシはいくつからいくつに下がった？"   # a Japanese question keeps both legs
    assert ids(dense_only.search(ja, k=5)) == ids(retriever.search(ja, k=5))
