"""Context assembly (rag/context.py): small hand-made chunk sets, checked by hand."""

from rag.context import GAP, assemble, heading_of, join_adjacent, plan, render
from rag.retrieval import Hit


def hit(post: str, ord_: int, text: str, score: float = 1.0) -> Hit:
    return Hit(id=hash((post, ord_)) % 10_000, chunk_id=f"{post}#{ord_}", post_id=post, title=post.upper(),
               date="2024-01-01", url=None, text=text, score=score)


# post "a": five chunks of one section; consecutive chunks repeat the heading and one sentence
A = {0: "## 結果\n一文目です。二文目です。",
     1: "## 結果\n二文目です。p95 は 320ms から 85ms に下がりました。",
     2: "## 結果\n85ms に下がりました。ディスクも14GB減りました。",
     3: "## 後片付け\n不要なインデックスを消しました。",
     4: "## 後片付け\n以上です。"}


def neighbours_of(posts):
    return lambda pid, ords: {o: posts[pid][o] for o in ords if o in posts[pid]}


def test_adjacent_chunks_are_joined_without_repeating_heading_or_overlap():
    assert join_adjacent(A[0], A[1]) == "## 結果\n一文目です。二文目です。p95 は 320ms から 85ms に下がりました。"


def test_chunks_of_different_sections_keep_both_headings():
    assert join_adjacent(A[2], A[3]) == A[2] + "\n\n" + A[3]
    assert heading_of(A[3]) == "## 後片付け" and heading_of("本文だけ") == ""


def test_non_adjacent_pieces_are_separated_by_a_gap_marker():
    assert render([0, 3], A) == A[0] + GAP + A[3]


def test_plan_grows_a_hit_into_its_section_before_other_sections():
    # hit at 2: neighbours 1 (same section) and 3 (next section); budget fits only one of them
    budget = len(A[2]) + len(A[1]) + 1
    ords, used = plan([2], A, budget, max_distance=1)
    assert ords == [1, 2] and used == len(A[1]) + len(A[2])


def test_the_neighbour_holding_the_answer_reaches_the_answerer():
    # the hit is chunk 0 (the question's words), the answer (85ms) sits in chunk 1
    srcs = assemble([hit("a", 0, A[0])], neighbours_of({"a": A}), budget=6000, max_distance=1)
    assert len(srcs) == 1 and "85ms" in srcs[0].text
    assert srcs[0].chunk_ids == ["a#0", "a#1"]


def test_hits_of_one_post_become_one_source_in_reading_order():
    posts = {"a": A, "b": {0: "Bの本文です。"}}
    hits = [hit("a", 3, A[3]), hit("b", 0, "Bの本文です。"), hit("a", 0, A[0])]
    srcs = assemble(hits, neighbours_of(posts), budget=10_000, max_distance=0)
    assert [s.post_id for s in srcs] == ["a", "b"]          # best post first
    assert srcs[0].text == A[0] + GAP + A[3]                # reading order, not rank order
    assert srcs[0].chunk_id == "a#3"                          # fields of the best hit


def test_budget_is_respected_and_the_first_hit_always_fits():
    posts = {"a": A}
    srcs = assemble([hit("a", 1, A[1])], neighbours_of(posts), budget=10, max_distance=2)
    assert srcs[0].text == A[1]  # over budget alone, still given
    total = sum(len(s.text) for s in assemble([hit("a", 1, A[1])], neighbours_of(posts), budget=80))
    assert total <= 80


def test_header_line_starts_each_source():
    srcs = assemble([hit("a", 4, A[4])], neighbours_of({"a": A}), budget=6000, max_distance=0,
                    header=lambda pid: f"〔{pid} | date: 2024-01-01 | author: x | tags: -〕")
    assert srcs[0].text.split("\n")[0] == "〔a | date: 2024-01-01 | author: x | tags: -〕"
