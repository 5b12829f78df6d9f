"""The interface's words in Japanese and English, and which of the two a reader gets.

Static labels go to the browser through Gradio's `gr.I18n` (the browser's language picks the
table); the messages the app writes at run time (sources, refusals, errors, empty states) are
looked up here with the language resolved from the request's `Accept-Language`. `ui_language`
(`auto`, `ja`, `en`) forces both to one language.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("ja", "en")
UI_LANGUAGE_CHOICES = ("auto", "ja", "en")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        # static labels (gr.I18n)
        "app_title": "Archive assistant",
        "app_intro": "## Archive assistant\nAnswers come from the blog's archive; each [n] points to a numbered source.",
        "tab_ask": "Ask the archive",
        "tab_editors": "Editors: what does the archive say about…",
        "chat_label": "Conversation",
        "chat_placeholder": "Ask a question about the archive, or start from one of these:",
        "question_placeholder": "Ask about the archive… (Enter to send)",
        "ask": "Ask",
        "filters": "Filters",
        "tags": "Tags",
        "categories": "Categories",
        "since": "Since (YYYY-MM-DD)",
        "until": "Until (YYYY-MM-DD)",
        "new_conversation": "New conversation",
        "editors_intro": "Enter a topic or question: the relevant passages, grouped by post and ordered by date. "
                         "Works without a chat model.",
        "topic": "Topic or question",
        "search_archive": "Search the archive",
        "passages": "Passages",
        "search_mode": "Search mode",
        "md_export": "Markdown export",
        "csv_export": "CSV export",
        # run-time messages
        "sources": "Sources",
        "nearest": "Nearest passages (no answer was given)",
        "retrieved": "Retrieved passages",
        "sources_empty": "The passages an answer cites appear here, numbered like its [n].",
        "no_passages": "No passages were found.",
        "searching": "Searching the archive…",
        "other_passages": "Other passages ({n})",
        "not_cited": "not cited",
        "claim_unconfirmed": "⚠ claim not confirmed by this passage",
        "quoted_fallback": "quoted in the extractive answer",
        "no_date": "no date",
        "untitled": "untitled",
        "badge_extractive": "extractive",
        "badge_llm": "AI",
        "badge_refused": "no answer",
        "badge_error": "error",
        "explain_extractive": "No chat model is configured, so the answer quotes sentences from the most relevant "
                              "posts as they are.",
        "explain_llm": "Written by the chat model {model} from the numbered passages; check the sources.",
        "explain_refused": "The archive does not seem to cover this question, so no answer was written.",
        "explain_error": "The chat model failed; the passages found are listed under Sources.",
        "refused_head": "**No answer found in the archive.**",
        "error_head": "⚠ **The answer could not be completed**: the chat model failed. "
                      "The passages found for your question are listed under Sources.",
        "partial_answer": "**Partial answer:**",
        "unsupported_head": "⚠ **Not supported by the cited sources** (check before relying on it):",
        "not_found_in": "not found in {cites}",
        "no_citation": "no citation",
        "invalid_citations": "⚠ The model cited sources that do not exist ({cites}); those markers were removed.",
        "sorry": "⚠ Sorry, something went wrong while answering ({name}). Please try again.",
        "no_answer_returned": "the assistant returned no answer",
        "nothing_to_rate": "Nothing to rate for this message.",
        "feedback_recorded": "Thanks, your feedback was recorded.",
        "feedback_removed": "Feedback removed.",
        "feedback_failed": "Sorry, the feedback could not be stored.",
        "enter_topic": "Enter a topic or question.",
        "search_failed": "⚠ Sorry, the search failed ({name}).",
        "starter": "What does the archive say about “{title}”?",
        "tl_heading": "# What the archive says about: {topic}",
        "tl_none": "No passages found.",
        "tl_count": "{hits} passages from {posts} posts, oldest first.",
        "tl_post": "post: {post}",
        "tl_tags": "tags: {tags}",
    },
    "ja": {
        "app_title": "アーカイブ・アシスタント",
        "app_intro": "## アーカイブ・アシスタント\nブログの過去記事から答えます。[n] は番号付きの出典を指します。",
        "tab_ask": "記事に質問する",
        "tab_editors": "編集者向け：アーカイブは何を書いてきたか",
        "chat_label": "会話",
        "chat_placeholder": "アーカイブについて質問するか、次の質問から始めてください：",
        "question_placeholder": "記事について質問…（Enterで送信）",
        "ask": "質問する",
        "filters": "絞り込み",
        "tags": "タグ",
        "categories": "カテゴリー",
        "since": "開始日（YYYY-MM-DD）",
        "until": "終了日（YYYY-MM-DD）",
        "new_conversation": "新しい会話",
        "editors_intro": "トピックや質問を入力すると、関連する箇所を記事ごとにまとめ、日付順に並べます。"
                         "チャット用モデルがなくても使えます。",
        "topic": "トピックまたは質問",
        "search_archive": "アーカイブを検索",
        "passages": "箇所の数",
        "search_mode": "検索方式",
        "md_export": "Markdownで書き出し",
        "csv_export": "CSVで書き出し",
        "sources": "出典",
        "nearest": "近い箇所（回答はありません）",
        "retrieved": "見つかった箇所",
        "sources_empty": "回答が引用した箇所が、回答の [n] と同じ番号でここに表示されます。",
        "no_passages": "該当する箇所は見つかりませんでした。",
        "searching": "アーカイブを検索しています…",
        "other_passages": "その他の箇所（{n}件）",
        "not_cited": "引用なし",
        "claim_unconfirmed": "⚠ この箇所では内容を確認できません",
        "quoted_fallback": "抽出回答で引用",
        "no_date": "日付なし",
        "untitled": "無題",
        "badge_extractive": "抽出",
        "badge_llm": "AI生成",
        "badge_refused": "回答なし",
        "badge_error": "エラー",
        "explain_extractive": "チャット用の言語モデルが設定されていないため、関連する記事の文をそのまま引用しています。",
        "explain_llm": "番号付きの箇所をもとにチャットモデル {model} が書いた回答です。出典を確かめてください。",
        "explain_refused": "アーカイブにはこの質問に答える内容がないと判断したため、回答を書いていません。",
        "explain_error": "チャットモデルが失敗しました。見つかった箇所は出典に表示しています。",
        "refused_head": "**アーカイブに答えが見つかりませんでした。**",
        "error_head": "⚠ **回答を完成できませんでした**：チャットモデルが失敗しました。"
                      "質問に対して見つかった箇所は出典に表示しています。",
        "partial_answer": "**途中までの回答：**",
        "unsupported_head": "⚠ **引用元で裏付けられない内容**（頼る前に確認してください）：",
        "not_found_in": "{cites} に見当たりません",
        "no_citation": "引用なし",
        "invalid_citations": "⚠ モデルが存在しない出典を引用しました（{cites}）。その番号は取り除きました。",
        "sorry": "⚠ 申し訳ありません。回答中に問題が起きました（{name}）。もう一度お試しください。",
        "no_answer_returned": "回答が返されませんでした",
        "nothing_to_rate": "この発言は評価できません。",
        "feedback_recorded": "ありがとうございます。評価を記録しました。",
        "feedback_removed": "評価を取り消しました。",
        "feedback_failed": "申し訳ありません。評価を保存できませんでした。",
        "enter_topic": "トピックか質問を入力してください。",
        "search_failed": "⚠ 申し訳ありません。検索に失敗しました（{name}）。",
        "starter": "「{title}」について教えて",
        "tl_heading": "# アーカイブが「{topic}」について書いてきたこと",
        "tl_none": "該当する箇所は見つかりませんでした。",
        "tl_count": "{posts}件の記事から{hits}か所、古い順。",
        "tl_post": "記事：{post}",
        "tl_tags": "タグ：{tags}",
    },
}

# the labels Gradio translates in the browser (everything else is written by the server)
STATIC_KEYS = ("app_intro", "tab_ask", "tab_editors", "chat_label", "chat_placeholder", "question_placeholder",
               "ask", "filters", "tags", "categories", "since", "until", "new_conversation", "editors_intro",
               "topic", "search_archive", "passages", "search_mode", "md_export", "csv_export")


def check_ui_language(value: str) -> str:
    v = (value or "auto").strip().lower()
    if v not in UI_LANGUAGE_CHOICES:
        raise ValueError(f"setting ui_language (RAG_UI_LANGUAGE) must be one of {', '.join(UI_LANGUAGE_CHOICES)}, "
                         f"got {value!r}")
    return v


def resolve_language(setting: str, accept_language: str | None) -> str:
    """`ja` or `en`: the forced setting, else the browser's most preferred language (Japanese when it
    is Japanese, English otherwise: what the browser-side table falls back to)."""
    forced = check_ui_language(setting)
    if forced != "auto":
        return forced
    best, best_q = "", -1.0
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if tag and q > best_q:  # the first of equal weights wins
            best, best_q = tag, q
    return "ja" if best.lower().split("-")[0] == "ja" else "en"


def request_language(setting: str, request: Any) -> str:
    """The language for one Gradio request (None outside a request: the forced or English one)."""
    headers = getattr(request, "headers", None) or {}
    try:
        accept = headers.get("accept-language")
    except Exception:
        accept = None
    return resolve_language(setting, accept)


def t(lang: str, key: str, **values: Any) -> str:
    """The message `key` in `lang` (English when missing), with `{name}` fields filled in."""
    text = TEXTS.get(lang, TEXTS["en"]).get(key) or TEXTS["en"][key]
    return text.format(**values) if values else text


def gradio_i18n(setting: str):
    """The `gr.I18n` for the static labels: both tables under `auto`, else the forced one for every
    locale (a browser language without a table falls back to `en`, which then holds the forced one)."""
    import gradio as gr

    forced = check_ui_language(setting)
    tables = {lang: {k: TEXTS[lang][k] for k in STATIC_KEYS} for lang in LANGUAGES}
    if forced != "auto":
        return gr.I18n(en=tables[forced], ja=tables[forced])
    return gr.I18n(en=tables["en"], ja=tables["ja"])
