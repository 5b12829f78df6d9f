"""End to end in a real browser: `rag serve` as a subprocess, driven by headless Chromium through Playwright.

Needs Debian's /usr/bin/chromium (scripts/install-browser.sh); skipped without it.
Leaves screenshots in test-artifacts/: chat.png, editor.png (English walk-through), desktop-ja.png,
desktop-en.png, phone-ja.png (the reader's page in each language and at phone size).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import main as rag_main
from rag.feedback import FeedbackStore
from tests.app_server import free_port, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
QUESTION = "注文履歴APIのp95レイテンシはいくつに下がった？"
PG_TITLE = "PostgreSQLのインデックスを見直してp95レイテンシを4分の1にした"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (run scripts/install-browser.sh)")]


@pytest.fixture
def server(sample_index: Path, tmp_path: Path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    index = tmp_path / "index"  # a copy: the server writes feedback.sqlite into its index directory
    shutil.copytree(sample_index, index)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}  # extractive, no login
    env.update(PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(index), "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc, log, timeout=60.0)
        yield url, index
    finally:
        stop(proc)


def test_chat_sources_feedback_and_editor_tab(server, capsys):
    from playwright.sync_api import expect, sync_playwright

    url, index = server
    ARTIFACTS.mkdir(exist_ok=True)
    chat_png, editor_png = ARTIFACTS / "chat.png", ARTIFACTS / "editor.png"
    page_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(url)

            # ask: a streamed answer citing [1], the sources panel with the post and the highlighted passage
            question = page.locator("#rag-question textarea")
            question.fill(QUESTION)
            page.locator("#rag-ask").click()
            chat, sources = page.locator("#rag-chat"), page.locator("#rag-sources")
            expect(sources.locator(".rag-src").first).to_contain_text(PG_TITLE, timeout=30_000)
            expect(chat).to_contain_text("[1]")
            expect(chat).to_contain_text("85ms")
            expect(chat).not_to_contain_text("▌")
            expect(sources.locator(".rag-src.rag-cited mark").first).to_contain_text("85ms")
            expect(sources).to_contain_text("not cited")
            expect(page.locator("#rag-question textarea")).to_have_value("")
            page.screenshot(path=str(chat_png), full_page=True)

            # thumbs up: stored with the question, the answer and the sources
            chat.locator("button[aria-label='Like']").last.click()
            expect(page.locator("#rag-feedback-status")).to_contain_text("feedback was recorded", timeout=10_000)
            rows = FeedbackStore.for_index(index).list()
            assert len(rows) == 1 and rows[0]["rating"] == "up" and rows[0]["question"] == QUESTION
            assert "85ms" in rows[0]["answer"] and rows[0]["sources"][0]["title"] == PG_TITLE

            # a follow-up question: the conversation goes on, the history reaches the assistant
            question.fill("ディスク使用量はどれくらい減った？")
            question.press("Enter")
            expect(chat.locator("[data-testid='bot']")).to_have_count(2, timeout=30_000)
            expect(chat.locator("[data-testid='user']")).to_have_count(2)
            expect(chat.locator("[data-testid='bot']").last).to_contain_text("14GB")
            expect(chat.locator("[data-testid='bot']").last).to_contain_text("[1]")
            expect(chat).not_to_contain_text("▌")

            # markup in a question shows as text and runs nothing; an off-topic question is refused
            xss = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">火星の首都はどこ？'
            question.fill(xss)
            page.locator("#rag-ask").click()
            expect(chat.locator("[data-testid='bot']")).to_have_count(3, timeout=30_000)
            expect(chat.locator("[data-testid='user']").last).to_contain_text(xss)
            expect(chat.locator("[data-testid='bot']").last).to_contain_text("No answer found in the archive")
            expect(sources).to_contain_text("Nearest passages")
            assert page.evaluate("window.__xss") is None

            page.get_by_role("button", name="New conversation").click()
            expect(chat.locator("[data-testid='bot']")).to_have_count(0, timeout=10_000)
            expect(sources).to_contain_text("appear here")

            # editors: a topic in, passages grouped by post and ordered by date, exports offered
            page.get_by_role("tab", name=re.compile("Editors")).click()
            page.locator("#rag-topic textarea").fill("PostgreSQL インデックス")
            page.locator("#rag-timeline-go").click()
            timeline = page.locator("#rag-timeline")
            expect(timeline).to_contain_text(f"2021-06-30 — {PG_TITLE}", timeout=30_000)
            heads = timeline.locator("h2").all_inner_texts()
            dates = [h[:10] for h in heads if re.match(r"\d{4}-\d{2}-\d{2}", h)]
            assert len(heads) >= 2 and dates == sorted(dates)
            csv_row = page.get_by_role("row", name=re.compile(r"timeline\.csv"))
            expect(csv_row).to_be_visible()
            expect(page.get_by_role("row", name=re.compile(r"timeline\.md"))).to_be_visible()
            csv_text = page.request.get(csv_row.get_by_role("link").get_attribute("href")).text()
            assert csv_text.lstrip("\ufeff").startswith("date,post_id,title,url,tags,chunk_id,score,text")
            page.screenshot(path=str(editor_png), full_page=True)
        finally:
            browser.close()
    assert not page_errors, page_errors

    with capsys.disabled():
        print(f"\nscreenshots: {chat_png} {editor_png}")
    assert rag_main(["feedback", "export", "--index", str(index), "--json"]) == 0
    exported = capsys.readouterr().out.splitlines()
    assert len(exported) == 1 and '"gold_posts": ["2021-06-30-postgres-index"]' in exported[0]


def _open(browser, url: str, errors: list[str], width: int, height: int, locale: str, **options):
    """A fresh browser context (its own language and size) with the app loaded; page errors collected."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, locale=locale, **options)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return ctx, page


def _ask(page, question: str) -> None:
    page.locator("#rag-question textarea").fill(question)
    page.locator("#rag-ask").click()


def test_reader_page_in_japanese_english_and_on_a_phone(server):
    """Labels follow the browser's language; a Japanese answer's sources are one card per post; the mode
    is a badge; starting questions come from the archive; at 390x844 the answer's first line shows
    without scrolling and nothing scrolls sideways."""
    from playwright.sync_api import expect, sync_playwright

    from rag.index import IndexReader

    url, index = server
    reader = IndexReader(index)
    newest = reader.recent_posts(1)[0]["title"]
    reader.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shots = {name: ARTIFACTS / f"{name}.png" for name in ("desktop-ja", "desktop-en", "phone-ja")}
    page_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # desktop, Japanese
            ctx, page = _open(browser, url, page_errors, 1400, 1000, "ja-JP")
            expect(page.get_by_role("tab", name="記事に質問する")).to_be_visible(timeout=30_000)
            expect(page.locator("#rag-ask")).to_have_text("質問する")
            expect(page.locator("#rag-sources")).to_contain_text("出典")
            chat, sources = page.locator("#rag-chat"), page.locator("#rag-sources")
            # starting questions from the archive's newest posts (not hard-coded: the newest title)
            expect(chat.get_by_role("button", name=re.compile("Select example 1"))).to_contain_text(
                f"「{newest}」について教えて", timeout=30_000)
            _ask(page, QUESTION)
            cards = sources.locator(".rag-card.rag-cited")
            expect(cards.first).to_contain_text(PG_TITLE, timeout=30_000)
            expect(chat).not_to_contain_text("▌")
            expect(chat.locator(".rag-mode summary").last).to_have_text("抽出")
            # the extractive note is no longer a paragraph of the answer: one click on the badge shows it
            why = chat.locator(".rag-mode-why").last
            expect(why).to_be_hidden()
            assert "言語モデルが設定されていない" not in chat.locator("[data-testid='bot'] p").first.inner_text()
            chat.locator(".rag-mode summary").last.click()
            expect(why).to_be_visible()
            expect(why).to_contain_text("言語モデルが設定されていない")
            titles = cards.locator(".rag-src-head").all_inner_texts()
            assert sum(PG_TITLE in x for x in titles) == 1, titles  # one card per post
            for group in (".rag-sources > .rag-card", ".rag-others > .rag-card"):  # a post once per group
                names = sources.locator(f"{group} .rag-src-head :is(a, .rag-title)").all_text_contents()
                assert names and len(names) == len(set(names)), (group, names)
            expect(cards.first.locator("mark").first).to_contain_text("85ms")
            expect(sources.locator(".rag-others > summary")).to_contain_text("その他の箇所")
            assert cards.first.locator("h4, h5, h6, li, pre, p").count() >= 1  # Markdown rendered
            expect(sources).not_to_contain_text("## ")
            page.screenshot(path=str(shots["desktop-ja"]), full_page=True)
            ctx.close()

            # desktop, English
            ctx, page = _open(browser, url, page_errors, 1400, 1000, "en-US")
            expect(page.get_by_role("tab", name="Ask the archive")).to_be_visible(timeout=30_000)
            expect(page.locator("#rag-ask")).to_have_text("Ask")
            starter = page.locator("#rag-chat").get_by_role("button", name=re.compile("Select example 1"))
            expect(starter).to_contain_text(f"What does the archive say about “{newest}”?")
            starter.click()  # a starting question is asked at once and answered from the archive
            expect(page.locator("#rag-chat [data-testid='bot']")).to_have_count(1, timeout=30_000)
            expect(page.locator("#rag-chat .rag-mode summary")).to_have_text("extractive", timeout=30_000)
            page.locator("#rag-new-chat").click()
            expect(page.locator("#rag-chat [data-testid='bot']")).to_have_count(0, timeout=10_000)
            _ask(page, QUESTION)
            sources = page.locator("#rag-sources")
            expect(sources.locator(".rag-card").first).to_contain_text(PG_TITLE, timeout=30_000)
            expect(page.locator("#rag-chat .rag-mode summary").last).to_have_text("extractive")
            expect(sources.locator("h3")).to_have_text("Sources")
            expect(sources.locator(".rag-others > summary")).to_contain_text("Other passages")
            page.screenshot(path=str(shots["desktop-en"]), full_page=True)
            ctx.close()

            # phone, Japanese
            ctx, page = _open(browser, url, page_errors, 390, 844, "ja-JP", is_mobile=True, has_touch=True,
                              device_scale_factor=2)
            expect(page.locator("#rag-ask")).to_have_text("質問する", timeout=30_000)
            _ask(page, QUESTION)
            sources = page.locator("#rag-sources")
            card = sources.locator(".rag-card.rag-cited").first
            expect(card).to_contain_text(PG_TITLE, timeout=30_000)
            bot = page.locator("#rag-chat [data-testid='bot']").last
            expect(bot).to_contain_text("85ms")
            expect(page.locator("#rag-chat")).not_to_contain_text("▌")
            page.evaluate("window.scrollTo(0, 0)")
            # the answer's first line is on screen without scrolling
            first = bot.locator("p").first.bounding_box()
            assert first is not None and 0 <= first["y"] and first["y"] + 20 <= 844, first
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
                page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            # sources follow the answer, folded to their titles; one tap opens the cited passage
            assert sources.bounding_box()["y"] > bot.bounding_box()["y"]
            assert card.get_attribute("open") is None
            expect(card.locator(".rag-passage").first).to_be_hidden()
            page.screenshot(path=str(shots["phone-ja"]), full_page=True)
            card.locator("summary").tap()
            expect(card.locator(".rag-passage mark").first).to_be_visible()
            expect(card.locator("mark").first).to_contain_text("85ms")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "phone-ja-open.png"), full_page=True)
            ctx.close()
        finally:
            browser.close()
    assert not page_errors, page_errors
    print("\nscreenshots:", *shots.values())
