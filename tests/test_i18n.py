"""Which language the reader's page speaks."""

import pytest

from rag.config import load_settings
from rag.i18n import STATIC_KEYS, TEXTS, gradio_i18n, resolve_language, t


def test_browser_language_chooses_unless_forced():
    assert resolve_language("auto", "ja-JP,ja;q=0.9,en;q=0.8") == "ja"
    assert resolve_language("auto", "en-US,en;q=0.9,ja;q=0.8") == "en"
    assert resolve_language("auto", "en;q=0.5, ja;q=0.9") == "ja"
    assert resolve_language("auto", "fr-FR") == "en" and resolve_language("auto", None) == "en"
    assert resolve_language("ja", "en-US") == "ja" and resolve_language("en", "ja-JP") == "en"
    with pytest.raises(ValueError, match="ui_language"):
        resolve_language("de", "ja")


def test_tables_complete_and_forced_i18n():
    assert set(TEXTS["ja"]) == set(TEXTS["en"])
    assert t("ja", "other_passages", n=3) == "その他の箇所（3件）" and t("en", "sources") == "Sources"
    forced = gradio_i18n("ja").translations_dict
    assert forced["en"]["ask"] == forced["ja"]["ask"] == "質問する"
    auto = gradio_i18n("auto").translations_dict
    assert auto["en"]["ask"] == "Ask" and set(auto["ja"]) == set(STATIC_KEYS)


def test_ui_language_setting(tmp_path):
    assert load_settings(env={"RAG_UI_LANGUAGE": "ja"}).ui_language == "ja"
    with pytest.raises(ValueError, match="ui_language"):
        load_settings(env={"RAG_UI_LANGUAGE": "fr"})


def test_editors_timeline_in_japanese():
    from rag.app import timeline_markdown
    from rag.retrieval import Hit

    hits = [Hit(id=1, chunk_id="p#0", post_id="p", title="記事", date=None, url=None, text="本文。", score=0.5,
                tags=["t"])]
    md = timeline_markdown("索引", hits, "ja")
    assert md.startswith("# アーカイブが「索引」について書いてきたこと")
    assert "1件の記事から1か所" in md and "## 日付なし — 記事" in md and "記事：p" in md and "タグ：t" in md
    assert timeline_markdown("索引", [], "ja").splitlines()[2] == "該当する箇所は見つかりませんでした。"
    assert "No passages found." in timeline_markdown("x", [], "en")


def test_chat_handler_writes_in_the_browser_language_unless_forced(retriever, settings, tmp_path):
    """The server-side messages (badge, sources panel) follow Accept-Language, and ui_language overrides it."""
    from types import SimpleNamespace

    from rag.app import chat_handlers
    from rag.feedback import FeedbackStore
    from rag.generation import Assistant

    question = "注文履歴APIのp95レイテンシはいくつに下がった？"
    store = FeedbackStore(tmp_path / "feedback.sqlite")

    def final(ui_language: str, accept: str):
        respond, _ = chat_handlers(Assistant(settings, retriever), store, settings.replace(ui_language=ui_language))
        out = list(respond(question, [], [], [], [], "", "", SimpleNamespace(headers={"accept-language": accept})))
        messages, sources, _, _ = out[-1]
        return messages[-1]["content"], sources

    answer, sources = final("auto", "ja-JP,ja;q=0.9")
    assert "<summary>抽出</summary>" in answer and "<h3>出典</h3>" in sources
    assert "チャット用の言語モデルが設定されていない" not in answer.split("</details>", 1)[1]  # the note is the badge's
    answer, sources = final("auto", "en-US,en;q=0.9")
    assert "<summary>extractive</summary>" in answer and "<h3>Sources</h3>" in sources
    answer, sources = final("ja", "en-US,en;q=0.9")
    assert "<summary>抽出</summary>" in answer and "<h3>出典</h3>" in sources
