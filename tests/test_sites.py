"""Jekyll and Hugo sites read as their generators build them (rag/sites.py), with hand-computed URLs."""

import datetime as dt
from pathlib import Path

import pytest

from rag.corpus import PostExcluded, iter_post_files, read_post
from rag.sites import (Site, detect_site, hugo_path, is_candidate, jekyll_path, jekyll_template, parse_site_date,
                       site_post, slugify, strip_markup)

SITES = Path(__file__).parent / "sites"
JEKYLL = SITES / "jekyll"
HUGO = SITES / "hugo"
DAY = dt.date(2024, 2, 9)  # a Friday, ISO week 6, day 40 of the year
CATS = ["Ruby", "News"]


@pytest.mark.parametrize("style, expected", [
    ("date", "/ruby/news/2024/02/09/My-Post.html"),
    (None, "/ruby/news/2024/02/09/My-Post.html"),  # Jekyll's default style is "date"
    ("pretty", "/ruby/news/2024/02/09/My-Post/"),
    ("ordinal", "/ruby/news/2024/040/My-Post.html"),
    ("weekdate", "/ruby/news/2024/W06/Fri/My-Post.html"),
    ("none", "/ruby/news/My-Post.html"),
    ("/:year/:i_month/:i_day/:slug/", "/2024/2/9/my-post/"),
    ("/:categories/:short_year/:short_month/:title:output_ext", "/ruby/news/24/Feb/My-Post.html"),
    ("/blog/:title", "/blog/My-Post"),
])
def test_jekyll_permalink_styles(style, expected):
    assert jekyll_path(jekyll_template(style), DAY, "My Post", CATS) == expected


def test_jekyll_empty_categories_take_their_slash_and_names_are_encoded():
    assert jekyll_path(jekyll_template("date"), DAY, "My Post", []) == "/2024/02/09/My-Post.html"
    # categories are lower-cased and deduplicated, not slugified; non-ASCII titles are percent-encoded
    assert jekyll_path(jekyll_template("pretty"), DAY, "ルビー", ["Release Notes", "release notes"]) == \
        "/release%20notes/2024/02/09/%E3%83%AB%E3%83%93%E3%83%BC/"


def test_slugify_modes():
    assert slugify("Hello, World! 2.0") == "hello-world-2-0"
    assert slugify("Hello, World! 2.0", "pretty", cased=True) == "Hello,-World!-2.0"
    assert slugify("snake_case") == "snake-case"
    assert slugify("日本語 の タイトル") == "日本語-の-タイトル"


def test_dates_with_time_and_zone():
    tokyo = detect_site(JEKYLL).timezone
    # YAML leaves this as a string; Jekyll reads it and moves it to the site's time zone
    assert parse_site_date("2024-02-29 23:30:00 +0000", tokyo).isoformat() == "2024-03-01T08:30:00+09:00"
    assert parse_site_date("2024-02-29 23:30:00 +0000", None).isoformat() == "2024-02-29T23:30:00+00:00"
    assert parse_site_date("2024-02-29 23:30", tokyo).isoformat() == "2024-02-29T23:30:00+09:00"
    assert parse_site_date(dt.date(2024, 1, 2), tokyo) == dt.date(2024, 1, 2)
    assert parse_site_date("last tuesday", tokyo) is None


def _jekyll_posts():
    site = detect_site(JEKYLL)
    posts, excluded = {}, {}
    for path, _ in iter_post_files(JEKYLL):
        rel = path.relative_to(JEKYLL).as_posix()
        if not is_candidate(site, rel):
            continue
        try:
            p = read_post(path, JEKYLL, site=site)
            posts[p.post_id] = p
        except PostExcluded as exc:
            excluded[rel] = (str(exc), exc.redirect)
    return posts, excluded


def test_jekyll_site_posts_dates_categories_urls():
    site = detect_site(JEKYLL)
    assert (site.kind, site.base_url) == ("jekyll", "https://blog.example.jp/tech")
    posts, excluded = _jekyll_posts()
    got = {pid: (p.date, p.url, p.categories) for pid, p in posts.items()}
    assert got == {
        # date from the file name, pretty style, no categories
        "_posts/2019-05-21-TechnicalDebt": ("2019-05-21", "https://blog.example.jp/tech/2019/05/21/TechnicalDebt/", []),
        # front-matter date wins, moved to Asia/Tokyo (next day); folder categories, then front matter's
        "ja/news/_posts/2024-03-01-release": (
            "2024-03-01T08:30:00+09:00", "https://blog.example.jp/tech/ja/news/release%20notes/2024/03/01/release/",
            ["ja", "news", "Release Notes"]),
        "_posts/2020-01-02-liquid": ("2020-01-02", "https://blog.example.jp/tech/2020/01/02/liquid/", []),
        # the post's own permalink wins
        "_posts/2021-07-04-own-permalink": ("2021-07-04", "https://blog.example.jp/tech/articles/2021/own-permalink",
                                            []),
        # front matter defaults scoped to en/
        "en/_posts/2023-12-24-christmas": ("2023-12-24", "https://blog.example.jp/tech/en/2023/christmas.html", ["en"]),
    }
    assert excluded == {
        "_drafts/idea.md": ("draft (in _drafts/)", None),
        "_posts/2022-01-01-unpublished.md": ("published: false", None),
        "_posts/2018-01-01-old-url.md": ("redirect to https://blog.example.jp/tech/2019/05/21/TechnicalDebt/",
                                         "https://blog.example.jp/tech/2019/05/21/TechnicalDebt/"),
        "_posts/notes.md": ("not a post file name (Jekyll reads only _posts/YYYY-MM-DD-title.ext)", None),
    }


def test_jekyll_text_as_a_reader_sees_it():
    posts, _ = _jekyll_posts()
    debt = posts["_posts/2019-05-21-TechnicalDebt"].body
    assert "include" not in debt and "返済します" in debt
    release = posts["ja/news/_posts/2024-03-01-release"].body
    for gone in ("{%", "{{", "SIZE", "TODO", "{:", "<>", "release.url"):
        assert gone not in release
    assert "キャッシュの刷新" in release
    liquid = posts["_posts/2020-01-02-liquid"].body
    assert "{{ page.title }}" in liquid  # {% raw %} shows its content literally
    assert "下書き" not in liquid and "site.title" not in liquid
    assert "<!-- コードの中のコメントは残す -->" in liquid and "{: .keep}" in liquid  # code blocks untouched


def test_future_posts_need_future_true():
    site = detect_site(JEKYLL)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert site_post(site, "_posts/2024-03-01-x.md", {}, "text", now=now).excluded.startswith("dated in the future")
    assert site_post(site, "_posts/2023-03-01-x.md", {}, "text", now=now).excluded is None
    no_zone = Site("jekyll", JEKYLL, "_config.yml", {})  # no timezone: wall-clock dates
    assert site_post(no_zone, "_posts/2024-03-01-x.md", {}, "text", now=now).excluded.startswith("dated in")
    future_ok = Site("jekyll", JEKYLL, "_config.yml", {"future": True})
    assert site_post(future_ok, "_posts/2024-03-01-x.md", {}, "text", now=now).excluded is None


def test_redirect_from_stub_without_text_is_a_redirect_but_a_real_post_is_kept():
    site = detect_site(JEKYLL)
    assert site_post(site, "_posts/2020-01-01-a.md", {"redirect_from": ["/old/"]}, "\n{% comment %}x{% endcomment %}\n").redirect
    sp = site_post(site, "_posts/2020-01-01-a.md", {"redirect_from": ["/old/"]}, "本文があります。")
    assert sp.redirect is None and sp.url == "https://blog.example.jp/tech/2020/01/01/a/"


def test_pages_layouts_and_output_are_not_posts():
    site = detect_site(JEKYLL)
    for rel in ("about.md", "_site/index.md", "_site/_posts/2020-01-01-a.md", "notes/_posts/2020-01-01-a.md",
                "_layouts/post.md"):
        assert not is_candidate(site, rel), rel
    assert is_candidate(site, "a/b/c/_posts/2020-01-01-a.md")


def test_hugo_permalink_patterns():
    d = dt.date(2024, 5, 6)
    assert hugo_path("/:year/:month/:day/:slug/", d, "First Post", None, "first", ["posts"]) == "/2024/05/06/first-post/"
    assert hugo_path("/:sections/:filename/", d, "T", None, "first", ["posts", "go"]) == "/posts/go/first/"
    assert hugo_path("/:section/:yearday-:monthname/:slugorfilename/", d, "T", "S", "first", ["posts"]) == \
        "/posts/127-may/S/"
    assert hugo_path("/:title/", d, "Go 1.22: What's New", None, "f", ["posts"]) == "/go-1.22-whats-new/"


def test_hugo_site_posts_dates_urls_and_toml_front_matter():
    site = detect_site(HUGO)
    assert (site.kind, site.config_file, site.base_url) == ("hugo", "hugo.toml", "https://example.org/blog")
    posts, excluded = {}, {}
    for path, _ in iter_post_files(HUGO):
        rel = path.relative_to(HUGO).as_posix()
        if not is_candidate(site, rel):
            continue
        try:
            p = read_post(path, HUGO, site=site)
            posts[p.post_id] = (p.date, p.url, p.categories, p.title)
        except PostExcluded as exc:
            excluded[rel] = str(exc)
    assert posts == {
        "content/posts/first-post": ("2024-05-06T10:00:00+09:00", "https://example.org/blog/2024/05/first-post/",
                                     ["Notes"], "First Post"),
        "content/posts/custom-slug": ("2024-01-02", "https://example.org/blog/2024/01/my-slug/", [], "スラッグのある記事"),
        "content/posts/bundle/index": ("2023-03-04T05:06:07+00:00", "https://example.org/blog/2023/03/page-bundle/",
                                       [], "Page bundle"),
        "content/notes/About-Us": (None, "https://example.org/blog/about-us/", [], "私たちについて"),
        "content/notes/Shortcodes": (None, "https://example.org/blog/notes/shortcodes/", [], "メモ"),
    }
    assert excluded == {"content/posts/draft.md": "draft: true"}


def test_hugo_shortcodes_removed_inner_text_kept():
    body = strip_markup('最初の記事です。{{< figure src="/img/a.png" >}}\n{{% notice info %}}中の文章。{{% /notice %}}\n'
                        '{{</* comment */>}}\n<!-- hidden -->\n', "hugo")
    assert body.strip() == "最初の記事です。\n中の文章。"


def test_plain_folder_keeps_liquid_like_text_but_drops_comments():
    # no generator: {{ }} may be a template example in a post about Vue or Jinja
    assert strip_markup("{{ name }} を表示 <!-- x -->\n{: .c}\n", None).strip() == "{{ name }} を表示"


def test_comments_in_code_blocks_are_code_even_in_a_block_that_shows_a_fence():
    body = "<!-- x -->本文\n````md\n```\n<!-- 例 -->\n```\n````\n<!-- y -->後"
    assert strip_markup(body, None) == "本文\n````md\n```\n<!-- 例 -->\n```\n````\n後"


def test_not_a_site():
    assert detect_site(Path(__file__).parent.parent / "examples" / "posts") is None


def test_rubyja_post_url_and_date(shared_dir):
    root = shared_dir / "bench" / "rubyja" / "site"
    site = detect_site(root)
    post = read_post(root / "ja/news/_posts/2026-06-30-ruby-3-4-10-released.md", root, site=site)
    assert post.post_id == "ja/news/_posts/2026-06-30-ruby-3-4-10-released"
    assert post.url == "https://www.ruby-lang.org/ja/news/2026/06/30/ruby-3-4-10-released/"
    assert is_candidate(site, "ja/news/_posts/2026-06-30-ruby-3-4-10-released.md")
    assert post.date == "2026-06-30T12:00:00+00:00"  # its front matter: 2026-06-30 12:00:00 +0000
    assert "{{" not in post.body and "{%" not in post.body


def test_ingest_a_jekyll_site_report_links_and_unpublishing(tmp_path, embedder):
    import csv
    import io
    import shutil

    from rag.app import format_sources_html, timeline_csv, timeline_markdown
    from rag.config import Settings
    from rag.index import IndexReader
    from rag.ingest import ingest
    from rag.retrieval import Filters, Retriever

    site = tmp_path / "site"
    shutil.copytree(JEKYLL, site)
    idx = tmp_path / "idx"
    s = Settings(index_dir=str(idx))
    rep = ingest(site, idx, s, embedder)
    assert (rep.site, rep.posts_seen, rep.posts_added, rep.skipped) == ("jekyll", 9, 5, [])
    assert rep.redirects == [{"path": "_posts/2018-01-01-old-url.md",
                              "redirect_to": "https://blog.example.jp/tech/2019/05/21/TechnicalDebt/"}]
    assert sorted(e["path"] for e in rep.excluded) == ["_drafts/idea.md", "_posts/2022-01-01-unpublished.md",
                                                       "_posts/notes.md"]

    url = "https://blog.example.jp/tech/ja/news/release%20notes/2024/03/01/release/"
    retriever = Retriever(IndexReader(idx), embedder, s)
    hits = retriever.search("バージョン 2.0 の主な変更点は？", 3, "hybrid", Filters(since="2024-03-01"))
    assert hits[0].post_id == "ja/news/_posts/2024-03-01-release" and hits[0].url == url
    assert hits[0].as_dict(1)["url"] == url
    assert f"<{url}>" in timeline_markdown("変更点", hits)
    row = next(csv.DictReader(io.StringIO(timeline_csv(hits))))
    assert row["url"] == url and row["date"] == "2024-03-01"
    source = {"n": 1, "title": hits[0].title, "url": hits[0].url, "text": hits[0].text}
    assert f'<a href="{url}" target="_blank"' in format_sources_html({"mode": "answer", "sources": [source],
                                                                      "citations": [{"n": 1}]})

    # a post that becomes unpublished leaves the index (it is not an error that keeps the old version)
    p = site / "_posts/2019-05-21-TechnicalDebt.md"
    p.write_text(p.read_text(encoding="utf-8").replace("layout: post", "published: false"), encoding="utf-8")
    rep2 = ingest(site, idx, s, embedder)
    assert rep2.posts_removed == 1 and rep2.skipped == []
    assert IndexReader(idx).post("_posts/2019-05-21-TechnicalDebt") is None


def test_rag_show_json_of_a_site_post(tmp_path, embedder, capsys):
    import json

    from rag.cli import main
    from rag.config import Settings
    from rag.ingest import ingest

    idx = tmp_path / "idx"
    ingest(JEKYLL, idx, Settings(index_dir=str(idx)), embedder)
    assert main(["show", "_posts/2021-07-04-own-permalink", "--index", str(idx), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["date"], shown["url"]) == ("2021-07-04", "https://blog.example.jp/tech/articles/2021/own-permalink")
