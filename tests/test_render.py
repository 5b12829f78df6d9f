"""The sources panel's pure parts: cards per post, safe Markdown, marks, badges, starting questions."""

from __future__ import annotations

import re

from rag.answer_text import strip_note
from rag.render import (apply_marks, format_sources_html, group_sources, mode_badge, public_url, render_markdown,
                        render_passage, starter_questions)


def src(n: int, post: str, ord_: int, text: str = "本文。", title: str | None = None, url: str | None = None) -> dict:
    return {"n": n, "post_id": post, "title": title or f"title {post}", "date": "2021-06-30", "url": url,
            "chunk_id": f"{post}#{ord_}", "text": text, "score": 1.0 / n, "tags": ["t"]}


def answer(sources, n_cited, mode="extractive", claims=()):
    return {"mode": mode, "sources": sources, "claims": list(claims),
            "citations": [{"n": s["n"], "supported": True} for s in sources[:n_cited]]}


def test_group_sources_one_card_per_post_passages_in_reading_order():
    sources = [src(1, "a", 5), src(2, "b", 0), src(3, "a", 2), src(4, "a", 9), src(5, "c", 1), src(6, "b", 3)]
    cited, other = group_sources(sources, n_cited=3)
    assert [c["post_id"] for c in cited] == ["a", "b"]          # by first number
    assert [s["n"] for s in cited[0]["passages"]] == [3, 1]      # post a: #2 before #5
    assert [c["post_id"] for c in other] == ["a", "c", "b"]
    assert [s["n"] for s in other[0]["passages"]] == [4]


def test_sources_html_cards_and_other_passages_line():
    sources = [src(1, "a", 5), src(2, "b", 0), src(3, "a", 2), src(4, "c", 1)]
    out = format_sources_html(answer(sources, 3), "ja")
    assert out.count('class="rag-src rag-card rag-cited"') == 2
    assert out.count("title a") == 1 and out.count("title b") == 1
    assert out.count('<details class="rag-others">') == 1 and "その他の箇所（1件）" in out
    assert out.index('data-n="3"') < out.index('data-n="1"')  # reading order inside the card
    en = format_sources_html(answer(sources, 3), "en")
    assert "<h3>Sources</h3>" in en and "Other passages (1)" in en


def test_nothing_cited_shows_every_card_without_folding():
    out = format_sources_html(answer([src(1, "a", 0), src(2, "b", 0)], 0, mode="refused"), "en")
    assert "rag-others" not in out and out.count("rag-card") == 2 and "Nearest passages" in out


def test_script_in_a_post_renders_inert():
    post = ('<script>alert(1)</script>\n<img src=x onerror="alert(2)">\n'
            '[x](javascript:alert(3)) **<b>bold</b>**\n```\n<script>in code</script>\n```')
    out = render_passage(post)
    assert "<script" not in out and "<img" not in out and "<b>" not in out and "javascript:" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "&lt;script&gt;in code&lt;/script&gt;" in out
    assert "<strong>&lt;b&gt;bold&lt;/b&gt;</strong>" in out
    card = format_sources_html(answer([src(1, "a", 0, text=post, title="<script>t</script>",
                                           url="javascript:alert(4)")], 1))
    assert "<script" not in card and 'href="javascript' not in card


def test_markdown_subset():
    out = render_markdown("## 結果\n\n- 一つ目\n- 二つ目\n\n1. 手順\n\n```sql\nSELECT 1;\n```\n\n`code` と [記事](https://blog.example/p)")
    assert "<h5>結果</h5>" in out
    assert "<ul><li>一つ目</li><li>二つ目</li></ul>" in out and "<ol><li>手順</li></ol>" in out
    assert '<pre><code class="language-sql">SELECT 1;\n</code></pre>' in out and "<code>code</code>" in out
    assert '<a href="https://blog.example/p" target="_blank" rel="noopener noreferrer nofollow">記事</a>' in out
    assert "##" not in out and "```" not in out


def test_hostile_markup_stays_text():
    """Whatever a post holds, the only tags are the ones Markdown makes, with no event handlers, and
    the only links are http(s) ones (markdown-it's own link check is off: `_safe_links` decides)."""
    post = ('<div onclick="alert(1)">block html</div>\n\n'
            'inline <span onmouseover=alert(2)>x</span> and <a href="javascript:alert(3)">raw link</a>\n\n'
            '[a](JAVASCRIPT:alert(4)) [b]( javascript:alert(5)) [c](&#106;avascript:alert(6)) '
            '[d](data:text/html;base64,PHNjcmlwdD4=) [e](vbscript:x) [f](/admin/delete) <javascript:alert(7)>\n\n'
            '![tracker](https://evil.example/pixel.png) [ok](https://blog.example/p "t\\"><script>")\n\n'
            '```"><script>alert(8)</script>\ncode\n```')
    out = render_markdown(post)
    tags = re.findall(r"<(/?[a-z0-9]+)([^>]*)>", out)
    assert {name.lstrip("/") for name, _ in tags} <= {"p", "a", "br", "pre", "code"}
    assert not [attrs for _, attrs in tags if re.search(r"\son\w+\s*=", attrs)]
    hrefs = re.findall(r'href="([^"]*)"', out)
    assert hrefs == ["https://evil.example/pixel.png", "https://blog.example/p"]   # an image: a link, never loaded
    assert "&lt;div onclick=&quot;alert(1)&quot;&gt;block html&lt;/div&gt;" in out
    assert "<img" not in out and "<script" not in out
    for label in ("a", "b", "c", "d", "e", "f"):     # a refused link leaves its text, not its URL
        assert f"{label}</a>" not in out and f"[{label}]" not in out
    assert "alert(4)" not in out and "/admin/delete" not in out
    assert 'class="language-&quot;&gt;&lt;script&gt;alert(8)&lt;/script&gt;"' in out


def test_commonmark_blocks_tables_and_nesting():
    out = render_markdown("- 外\n  - 内\n\n| 項目 | 値 |\n|---|--:|\n| p95 | 85ms |\n\n> 引用\n\n---\n\n"
                          "一行目\n二行目 **強調** ~~削除~~")
    assert "<ul><li>外\n<ul><li>内</li></ul></li></ul>" in out
    assert '<table><thead><tr><th>項目</th><th style="text-align:right">値</th></tr></thead>' in out
    assert '<tbody><tr><td>p95</td><td style="text-align:right">85ms</td></tr></tbody></table>' in out
    assert "<blockquote><p>引用</p></blockquote><hr>" in out
    assert "<p>一行目<br>\n二行目 <strong>強調</strong> <s>削除</s></p>" in out   # a post's line breaks stay


def _well_nested(fragment: str) -> bool:
    """Every end tag closes the innermost open element, and a <mark> holds text and inline tags only."""
    stack: list[str] = []
    for close, name in re.findall(r"<(/?)([a-z0-9]+)[^>]*>", fragment):
        if name in ("br", "hr"):
            continue
        if close:
            if not stack or stack.pop() != name:
                return False
        else:
            if "mark" in stack and name not in ("a", "code", "strong", "em", "s"):
                return False
            stack.append(name)
    return not stack


def test_marks_survive_block_markers_fences_and_tables():
    o, c = "\ue000", "\ue001"
    cases = {
        f"{o}- 項目{c}\n- 次": "<ul><li><mark>項目</mark></li><li>次</li></ul>",
        f"{o}## 見出し{c}": "<h5><mark>見出し</mark></h5>",
        f"> {o}引用{c}": "<blockquote><p><mark>引用</mark></p></blockquote>",
        f"{o}```sql\nSELECT 1;{c}\n```": '<pre><code class="language-sql"><mark>SELECT 1;</mark>\n</code></pre>',
        f"```\n{o}x = 1{c}\n```{c}\n\n後": "<pre><code><mark>x = 1</mark>\n</code></pre><p>後</p>",
        f"| a | b |\n|---|---|\n{o}| 1 | 2 |{c}\n| 3 | 4 |":
            "<tbody><tr><td><mark>1</mark></td><td><mark>2</mark></td></tr><tr><td>3</td><td>4</td></tr></tbody>",
        f"{o}前の段落。\n\n- 一{c}\n- 二": "<p><mark>前の段落。</mark></p><ul><li><mark>一</mark></li><li>二</li></ul>",
        f"見出し{o}\n---{c}\n\n本文": "<h5>見出し</h5><p>本文</p>",   # the underline still makes a heading
    }
    for src, expected in cases.items():
        out = apply_marks(render_markdown(src))
        assert expected in out, (src, out)
        assert _well_nested(out), out
        assert "\ue000" not in out and "\ue001" not in out


def test_supporting_sentence_marked_inside_markdown_and_well_nested():
    out = render_passage("## 結果\n\n- p95は320msから85msに下がった。\n- ディスクは減った。", ["p95は85msに下がった"])
    assert "<li><mark>p95は320msから85msに下がった。</mark></li>" in out
    assert "ディスク" in out and out.count("<mark>") == 1
    # a mark across tags is closed before and reopened after each one
    assert apply_marks("\ue000a<b>b</b>c\ue001") == "<mark>a</mark><b><mark>b</mark></b><mark>c</mark>"
    assert apply_marks("\ue000open") == "<mark>open</mark>"


def test_sentinels_in_a_post_do_not_make_marks():
    assert "<mark>" not in render_passage("a\ue000b\ue001c")


def test_public_url():
    assert public_url("https://blog.example/p/") == "https://blog.example/p/"
    assert public_url("/2021/06/p/") is None
    assert public_url("/2021/06/p/", "https://blog.example/") == "https://blog.example/2021/06/p/"
    assert public_url("javascript:alert(1)", "https://blog.example") is None
    assert public_url("//evil.example/x", "https://blog.example") is None


def test_badge_and_note():
    badge = mode_badge("extractive", "ja")
    assert re.search(r"<summary>抽出</summary>", badge) and "rag-mode-why" in badge
    assert "<summary>extractive</summary>" in mode_badge("extractive", "en")
    assert mode_badge(None, "en") == ""
    assert strip_note("（抽出回答：…）\n\n本文[1]。", ["(Extractive…)", "（抽出回答：…）"]) == "本文[1]。"
    assert strip_note("本文[1]。", ["（抽出回答：…）"]) == "本文[1]。"


def test_starter_questions_from_the_newest_titles():
    posts = [{"title": "古い記事", "date": "2019-01-01"}, {"title": "新しい  記事", "date": "2024-05-01"},
             {"title": "", "date": "2025-01-01"}, {"title": "中間", "date": "2021-01-01"}]
    assert starter_questions(posts, "ja", 2) == ["「新しい 記事」について教えて", "「中間」について教えて"]
    assert starter_questions(posts, "en", 1) == ["What does the archive say about “新しい 記事”?"]
    assert starter_questions([], "en") == []


def test_cards_leave_out_the_answerers_front_matter_line():
    """The assembled source opens with a 〔title | date: …〕 line for the answerer; the card already shows them."""
    from rag.render import format_sources_html

    text = "〔PG の話 | date: 2021-06-30 | author: 田中 | tags: pg〕\n本文の一文です。"
    ans = {"mode": "extractive", "citations": [{"n": 1, "supported": True}], "claims": [],
           "sources": [{"n": 1, "post_id": "p", "title": "PG の話", "date": "2021-06-30", "url": None,
                        "chunk_id": "p#0", "text": text, "tags": ["pg"]}]}
    html = format_sources_html(ans, "ja")
    assert "本文の一文です。" in html and "author: 田中" not in html
