"""Web UI (Gradio 6): chat with cited answers for readers, a timeline search for editors, and an `/ask` API.

The formatting functions at the top are pure (strings in, strings out) and are what the tests check;
an answer's own text (the chat message, `/ask`'s plain text) is rag/answer_text.py's.
Every piece of text that comes from a post, a question or an answer is HTML-escaped before it goes
into HTML or Markdown (`html.escape`, and `md_escape` for Markdown): posts may contain `<script>` or
fake markup, and it must show as text.

`build_app(assistant, settings)` returns the `gr.Blocks`; `serve(...)` queues and launches it.
The `Assistant` and its `Retriever` are shared by the server's worker threads without a lock:
a search keeps no state on the instance, MeCab taggers are per thread, SQLite connections per
thread, and FAISS, BM25 and the query engines only read (tests/test_concurrency.py).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import gradio as gr

from .answer_text import api_answer_text, format_answer_markdown, md_escape, strip_note
from .config import Settings
from .corpus import clip
from .feedback import FeedbackStore
from .generation import check_question, day_label
from .i18n import gradio_i18n, request_language, t
from .mcp_tools import make_filters, register_tools
from .render import esc, format_sources_html, link_url, marked_segments, sources_message, starter_questions
from .retrieval import Hit
from .text import content_bigrams, split_segments

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 20
EDITOR_K = 20
RENDER_INTERVAL_S = 0.1  # a streaming answer is re-rendered at most this often (not once per delta)


# ------------------------------------------------------------------ highlighting

def bigrams(text: str) -> set[str]:
    """What a passage sentence and a claim are compared on: the claim check's content bigrams, so the
    highlighting marks what the check counted."""
    return content_bigrams(text)


def highlight_passage(passage: str, claims: Sequence[str], min_claim_share: float = 0.3,
                      min_sentence_share: float = 0.6) -> str:
    """The passage as escaped plain HTML, with `<mark>` around the sentences that support the claims
    (`render.marked_segments`); the sources panel renders passages as safe Markdown instead."""
    segs = split_segments(passage)
    marked = marked_segments(segs, claims, min_claim_share, min_sentence_share)
    out = []
    for i, s in enumerate(segs):
        if i in marked:
            body = s.rstrip("\n")
            out.append(f"<mark>{esc(body)}</mark>{esc(s[len(body):])}")
        else:
            out.append(esc(s))
    return "".join(out)


# ------------------------------------------------------------------ editors' timeline

def _ord(hit: Hit) -> int:
    try:
        return int(hit.chunk_id.rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return 0


def timeline_groups(hits: Iterable[Hit]) -> list[dict]:
    """Passages grouped by post; posts oldest first (undated last), passages in post order."""
    groups: dict[str, dict] = {}
    for h in hits:
        g = groups.setdefault(h.post_id, {"post_id": h.post_id, "title": h.title, "date": h.date, "url": h.url,
                                          "tags": list(h.tags), "hits": [], "best": h.score})
        g["hits"].append(h)
        g["best"] = max(g["best"], h.score)
    out = sorted(groups.values(), key=lambda g: (g["date"] is None, (g["date"] or "")[:10], g["title"] or ""))
    for g in out:
        g["hits"].sort(key=_ord)
    return out


def timeline_markdown(topic: str, hits: Sequence[Hit], lang: str = "en") -> str:
    """What the archive says about a topic, as escaped Markdown (shown in the UI and exported), in `lang`."""
    groups = timeline_groups(hits)
    lines = [t(lang, "tl_heading", topic=md_escape(topic)), ""]
    if not groups:
        lines.append(t(lang, "tl_none"))
        return "\n".join(lines) + "\n"
    lines.append(t(lang, "tl_count", hits=len(hits), posts=len(groups)))
    for g in groups:
        day = day_label(g["date"]) if g["date"] else t(lang, "no_date")
        lines += ["", f"## {esc(day)} — {md_escape(g['title'])}", ""]
        meta = [t(lang, "tl_post", post=md_escape(g['post_id']))]
        if g["url"]:
            url = link_url(g["url"])  # no spaces, quotes or angle brackets: safe inside an autolink
            meta.append(f"<{url}>" if url else f"url: {md_escape(g['url'])}")
        if g["tags"]:
            meta.append(t(lang, "tl_tags", tags=", ".join(md_escape(x) for x in g["tags"])))
        lines.append(" · ".join(meta))
        for h in g["hits"]:
            lines.append("")
            body = [md_escape(x) for x in h.text.strip().split("\n")]
            lines += ["> " + (b if b.strip() else "") for b in body]
            lines.append(f"> — {md_escape(h.chunk_id)}")
    return "\n".join(lines) + "\n"


_CSV_COLUMNS = ("date", "post_id", "title", "url", "tags", "chunk_id", "score", "text")


def _csv_cell(v: Any) -> str:
    s = "" if v is None else str(v)
    # a cell starting with a formula character runs as a formula in spreadsheets
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def timeline_csv(hits: Sequence[Hit]) -> str:
    """The timeline as CSV, one passage per row, in timeline order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_CSV_COLUMNS)
    for g in timeline_groups(hits):
        for h in g["hits"]:
            w.writerow([_csv_cell(x) for x in ((h.date or "")[:10], h.post_id, h.title, h.url or "",
                                               "; ".join(h.tags), h.chunk_id, f"{h.score:.4f}", h.text)])
    return buf.getvalue()


def prune_exports(root: Path, max_age_s: float = 3600.0, max_count: int = 200) -> None:
    """Remove export folders older than max_age_s under root (Gradio has copied them to its cache by then),
    and all but the newest max_count (automated calls must not fill the disk)."""
    cutoff = time.time() - max_age_s
    dirs = []
    for d in root.iterdir() if root.is_dir() else ():
        try:
            if d.is_dir():
                dirs.append((d.stat().st_mtime, d))
        except OSError:
            pass
    dirs.sort(reverse=True)
    for i, (mtime, d) in enumerate(dirs):
        if mtime < cutoff or i >= max_count:
            shutil.rmtree(d, ignore_errors=True)


def write_exports(topic: str, hits: Sequence[Hit], directory: str | Path | None = None,
                  lang: str = "en") -> tuple[str, str]:
    """timeline.md and timeline.csv in a new temporary folder; returns their paths."""
    d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="rag-timeline-"))
    d.mkdir(parents=True, exist_ok=True)
    md, cs = d / "timeline.md", d / "timeline.csv"
    md.write_text(timeline_markdown(topic, hits, lang), encoding="utf-8")
    cs.write_text(timeline_csv(hits), encoding="utf-8-sig")  # BOM: spreadsheets read it as UTF-8
    return str(md), str(cs)


# ------------------------------------------------------------------ server helpers

def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`user:password` (RAG_AUTH) -> ("user", "password"); empty -> None."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("RAG_AUTH must look like user:password")
    return user, password


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, auth: Any) -> str | None:
    """The warning printed when the server is reachable from other machines without a login."""
    if is_loopback(host) or auth:
        return None
    return (f"rag serve: WARNING: listening on {host} without a login: anyone who can reach this machine can use "
            "the assistant and read the archive. Set RAG_AUTH=user:password, or bind to 127.0.0.1.")


CSS = """
.rag-sources h3 { margin: 0 0 .5em 0; }
.rag-src { border-left: 3px solid var(--color-accent, #f97316); padding: .4em .7em; margin: 0 0 .8em 0;
           background: var(--block-background-fill); border-radius: 4px; }
.rag-src.rag-uncited { border-left-color: var(--border-color-primary, #ccc); opacity: .85; }
.rag-src-head { font-weight: 600; cursor: pointer; overflow-wrap: anywhere; }
.rag-n { font-family: var(--font-mono, monospace); margin-right: .3em; font-weight: normal; }
.rag-date { white-space: nowrap; font-weight: normal; color: var(--body-text-color-subdued, #666);
            margin-left: .4em; }
.rag-tag { display: inline-block; font-size: .8em; padding: 0 .45em; margin: .2em .3em 0 0; border-radius: 999px;
           background: var(--background-fill-secondary, #eee); }
.rag-flag { white-space: nowrap; font-size: .8em; font-weight: normal; margin-left: .5em; padding: 0 .4em;
            border-radius: 4px; }
.rag-flag-uncited { background: var(--background-fill-secondary, #eee); }
.rag-flag-quoted { background: #dbeafe; color: #1e3a8a; }
.rag-flag-warn { background: #fde68a; color: #78350f; }
.rag-passage { font-size: .9em; margin-top: .5em; padding-top: .3em;
               border-top: 1px dashed var(--border-color-primary, #ddd); overflow-wrap: anywhere; }
.rag-md p, .rag-md ul, .rag-md ol, .rag-md blockquote { margin: .3em 0; }
.rag-md ul, .rag-md ol { padding-left: 1.4em; }
.rag-md table { border-collapse: collapse; display: block; overflow-x: auto; max-width: 100%; }
.rag-md th, .rag-md td { border: 1px solid var(--border-color-primary, #ddd); padding: .15em .4em; }
.rag-md h4, .rag-md h5, .rag-md h6 { margin: .5em 0 .2em 0; font-size: 1em; }
.rag-md pre { overflow-x: auto; max-width: 100%; padding: .4em .6em; border-radius: 4px;
              background: var(--background-fill-secondary, #f3f4f6); white-space: pre; }
.rag-md blockquote { border-left: 3px solid var(--border-color-primary, #ddd); padding-left: .6em; }
.rag-md mark, .rag-passage mark { background: #fef08a; color: inherit; padding: 0 .1em; }
.rag-others > summary { cursor: pointer; margin: .3em 0 .6em 0; color: var(--body-text-color-subdued, #666); }
.rag-path { font-size: .8em; font-weight: normal; }
.rag-empty { color: var(--body-text-color-subdued, #666); }
.rag-mode { float: right; margin: 0 0 .3em .6em; font-size: .8em; max-width: 60%; }
.rag-mode > summary { cursor: pointer; list-style: none; padding: 0 .6em; border-radius: 999px;
                      background: var(--background-fill-secondary, #eee); white-space: nowrap; text-align: right; }
.rag-mode > summary::-webkit-details-marker { display: none; }
.rag-mode[open] { padding: .3em .5em; border: 1px solid var(--border-color-primary, #ddd); border-radius: 6px;
                  background: var(--block-background-fill); }
.rag-mode-extractive > summary { background: #dbeafe; color: #1e3a8a; }
.rag-mode-refused > summary { background: #f3f4f6; color: #374151; }
.rag-mode-error > summary { background: #fee2e2; color: #7f1d1d; }
@media (max-width: 640px) {
  #rag-intro { display: none; }
  #rag-chat { height: 52vh !important; }
  #rag-ask { white-space: nowrap; }
}
"""

# At phone width the source cards start folded to their titles (one tap opens a card); the server
# renders them open for wide screens, and CSS cannot toggle `<details open>`.
HEAD = """<script>
(() => {
  const phone = window.matchMedia("(max-width: 640px)");
  const fold = () => {
    document.querySelectorAll("#rag-sources details.rag-card:not([data-rag-seen])").forEach((d) => {
      d.dataset.ragSeen = "1";
      if (phone.matches) d.removeAttribute("open");
    });
  };
  new MutationObserver(fold).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>"""


def _theme() -> gr.themes.Base:
    # local fonts only: the server may have no internet, and neither may its readers
    return gr.themes.Default(font=["system-ui", "Hiragino Sans", "Noto Sans CJK JP", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


# ------------------------------------------------------------------ the app

def _filter_controls(tag_choices: list[str], cat_choices: list[str], i18n: Any) -> list:
    with gr.Accordion(i18n("filters"), open=False):
        with gr.Row():
            tags = gr.Dropdown(tag_choices, value=[], multiselect=True, allow_custom_value=True, label=i18n("tags"))
            cats = gr.Dropdown(cat_choices, value=[], multiselect=True, allow_custom_value=True,
                               label=i18n("categories"))
        with gr.Row():
            since = gr.Textbox(label=i18n("since"), placeholder="2020-01-01", max_lines=1)
            until = gr.Textbox(label=i18n("until"), placeholder="2024-12-31", max_lines=1)
    return [tags, cats, since, until]


def _mode_notes(assistant: Any) -> tuple[str, ...]:
    """The extractive answer's opening note in both languages: the badge says it instead."""
    prompts = getattr(assistant, "prompts", None)
    try:
        return tuple(prompts.lang("extractive", english) for english in (False, True)) if prompts else ()
    except Exception:
        return ()


def chat_handlers(assistant: Any, store: FeedbackStore, settings: Settings = Settings()):
    """The chat tab's handlers: `respond` (streams an answer) and `on_like` (stores a rating), each
    writing in the reader's language (`i18n.request_language`)."""
    keep = max(1, settings.max_history_turns)
    ui_language, site_url = _ui_language(settings), getattr(settings, "site_url", "")
    notes = _mode_notes(assistant)
    model = getattr(assistant, "model_label", "")

    def turn(question: str, answer: str = "", mode: str | None = None, result: dict | None = None) -> dict:
        # the id keys the feedback, so it survives older turns being dropped
        return {"id": uuid.uuid4().hex, "question": question, "answer": answer, "mode": mode, "result": result}

    def respond(message: str, messages: list, turns: list, tags, cats, since, until,
                request: gr.Request = None):
        lang = request_language(ui_language, request)
        # a session keeps its last `keep` turns (two chat messages each): bounded state and history
        messages = list(messages or [])[-2 * (keep - 1):] if keep > 1 else []
        turns = list(turns or [])[-(keep - 1):] if keep > 1 else []
        question = (message or "").strip()
        if not question:
            yield messages, gr.skip(), turns, gr.skip()
            return
        try:
            check_question(question, settings.max_question_chars)
        except ValueError as exc:  # too long: not searched, not echoed whole
            messages += [{"role": "user", "content": md_escape(clip(question, 300))},
                         {"role": "assistant", "content": "⚠ " + md_escape(str(exc))}]
            yield messages, sources_message(lang, "sources_empty"), turns + [turn(clip(question, 300))], gr.skip()
            return
        messages += [{"role": "user", "content": md_escape(question)}, {"role": "assistant", "content": "…"}]
        yield messages, sources_message(lang, "searching"), turns, ""
        try:
            filters = make_filters(tags, cats, since, until)
            history = [(t["question"], t["answer"]) for t in turns if t.get("mode") not in (None, "error")]
            text, final, shown = "", None, time.monotonic()
            for kind, payload in assistant.stream(question, history, filters=filters):
                if kind == "delta":
                    text += payload
                    if time.monotonic() - shown >= RENDER_INTERVAL_S:  # re-rendering per delta is quadratic
                        partial = md_escape(strip_note(text, notes))
                        messages = messages[:-1] + [{"role": "assistant", "content": partial + " ▌"}]
                        shown = time.monotonic()
                        yield messages, gr.skip(), turns, gr.skip()
                else:
                    final = payload
            if final is None:
                raise RuntimeError("the assistant returned no answer")
            if final.mode == "error":
                log.warning("chat endpoint error: %s", final.error)
            content = format_answer_markdown(final, lang, notes, model)
            messages = messages[:-1] + [{"role": "assistant", "content": content}]
            turns = turns + [turn(question, final.answer, final.mode, final.as_json())]
            yield messages, format_sources_html(final, lang, site_url), turns, gr.skip()
        except ValueError as exc:  # a filter the reader typed
            messages = messages[:-1] + [{"role": "assistant", "content": "⚠ " + md_escape(str(exc))}]
            turns = turns + [turn(question)]
            yield messages, sources_message(lang, "sources_empty"), turns, gr.skip()
        except Exception as exc:  # never a stack trace in the page; the server keeps serving
            log.exception("answering %r failed", clip(question))
            sorry = t(lang, "sorry", name=esc(type(exc).__name__))
            messages = messages[:-1] + [{"role": "assistant", "content": sorry}]
            turns = turns + [turn(question)]
            yield messages, sources_message(lang, "sources_empty"), turns, gr.skip()

    def on_like(turns: list, feedback_ids: dict, data: gr.LikeData, request: gr.Request = None):
        lang = request_language(ui_language, request)
        feedback_ids = dict(feedback_ids or {})
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        i = int(index) // 2
        if not turns or i >= len(turns) or not turns[i].get("result"):
            return feedback_ids, t(lang, "nothing_to_rate")
        key = str(turns[i].get("id", i))
        try:
            if data.liked in (True, False):
                if key in feedback_ids:
                    store.set_rating(feedback_ids[key], data.liked)
                else:
                    feedback_ids[key] = store.add_answer(data.liked, turns[i]["result"])
                return feedback_ids, t(lang, "feedback_recorded")
            if key in feedback_ids:  # the reader took the rating back
                store.delete(feedback_ids.pop(key))
            return feedback_ids, t(lang, "feedback_removed")
        except Exception:
            log.exception("storing feedback failed")
            return feedback_ids, t(lang, "feedback_failed")

    return respond, on_like


def timeline_handler(retriever: Any, export_root: Path, settings: Settings = Settings()):
    """The editors' tab: passages on a topic grouped by post, with Markdown and CSV exports."""

    def timeline(topic: str, k: float, mode: str, tags, cats, since, until, request: gr.Request = None):
        lang = request_language(_ui_language(settings), request)
        topic = (topic or "").strip()
        if not topic:
            return t(lang, "enter_topic"), None, None
        try:
            check_question(topic, settings.max_question_chars)
            hits = retriever.search(topic, int(k or EDITOR_K), mode or "hybrid",
                                    make_filters(tags, cats, since, until))
        except ValueError as exc:
            return "⚠ " + md_escape(str(exc)), None, None
        except Exception as exc:
            log.exception("timeline search %r failed", clip(topic))
            return t(lang, "search_failed", name=esc(type(exc).__name__)), None, None
        prune_exports(export_root)
        md_path, csv_path = write_exports(topic, hits, export_root / uuid.uuid4().hex, lang)
        return timeline_markdown(topic, hits, lang), md_path, csv_path

    return timeline


def api_handler(assistant: Any, settings: Settings = Settings()):
    """The `/ask` endpoint: plain text for scripts and the load test."""

    def ask(question: str) -> str:
        """Answer a question from the archive: the answer with [n] citations, then the numbered sources."""
        try:
            question = check_question(question, settings.max_question_chars)
        except ValueError as exc:
            return f"Error: {exc}."
        try:
            answer = assistant.ask(question)
            if answer.mode == "error":  # readers get a generic message; the detail is logged here
                log.warning("chat endpoint error: %s", answer.error)
            return api_answer_text(answer)
        except Exception as exc:
            log.exception("api ask %r failed", clip(question))
            return f"Error: something went wrong while answering ({type(exc).__name__})."

    return ask


def _chat_tab(assistant: Any, store: FeedbackStore, facets: tuple[list[str], list[str]], settings: Settings,
              i18n: Any) -> tuple[gr.Chatbot, gr.HTML]:
    ui_language = _ui_language(settings)
    respond, on_like = chat_handlers(assistant, store, settings)
    turns = gr.State([])
    feedback_ids = gr.State({})
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            chatbot = gr.Chatbot(label=i18n("chat_label"), height=460, latex_delimiters=[],
                                 feedback_options=("Like", "Dislike"), buttons=["copy"],
                                 elem_id="rag-chat", placeholder=i18n("chat_placeholder"))
            with gr.Row():
                msg = gr.Textbox(show_label=False, placeholder=i18n("question_placeholder"),
                                 max_lines=4, scale=5, min_width=160, elem_id="rag-question", autofocus=True,
                                 max_length=settings.max_question_chars)
                send = gr.Button(i18n("ask"), variant="primary", scale=1, min_width=80, elem_id="rag-ask")
            status = gr.Markdown("", elem_id="rag-feedback-status")
            chat_filters = _filter_controls(*facets, i18n)
            new_chat = gr.Button(i18n("new_conversation"), size="sm", elem_id="rag-new-chat")
        with gr.Column(scale=2, min_width=300):
            sources = gr.HTML(sources_message("en", "sources_empty"), elem_id="rag-sources")

    inputs = [msg, chatbot, turns, *chat_filters]
    outputs = [chatbot, sources, turns, msg]
    # Only /ask is an API: the UI's own handlers are private (gradio_client refuses them; see PublicAPIOnly).
    msg.submit(respond, inputs, outputs, api_visibility="private")
    send.click(respond, inputs, outputs, api_visibility="private")
    chatbot.like(on_like, [turns, feedback_ids], [feedback_ids, status], api_visibility="private")

    def pick(data: gr.SelectData):
        value = data.value
        return value.get("text", "") if isinstance(value, dict) else str(value or "")

    chatbot.example_select(pick, None, [msg], api_visibility="private").then(
        respond, inputs, outputs, api_visibility="private")

    def reset(request: gr.Request = None):
        lang = request_language(ui_language, request)
        return [], sources_message(lang, "sources_empty"), [], {}, ""

    new_chat.click(reset, None, [chatbot, sources, turns, feedback_ids, status], api_visibility="private")
    chatbot.clear(reset, None, [chatbot, sources, turns, feedback_ids, status], api_visibility="private")
    return chatbot, sources


def _editors_tab(retriever: Any, facets: tuple[list[str], list[str]], settings: Settings, i18n: Any) -> None:
    timeline = timeline_handler(retriever, Path(tempfile.mkdtemp(prefix="rag-exports-")), settings)
    gr.Markdown(i18n("editors_intro"))
    with gr.Row():
        topic = gr.Textbox(label=i18n("topic"), placeholder="PostgreSQL インデックス",
                           max_lines=2, scale=4, min_width=200, elem_id="rag-topic",
                           max_length=settings.max_question_chars)
        go = gr.Button(i18n("search_archive"), variant="primary", scale=1, elem_id="rag-timeline-go")
    with gr.Row():
        k = gr.Slider(5, 50, value=EDITOR_K, step=1, label=i18n("passages"))
        mode = gr.Radio(["hybrid", "dense", "keyword"], value="hybrid", label=i18n("search_mode"))
    editor_filters = _filter_controls(*facets, i18n)
    with gr.Row():
        md_file = gr.File(label=i18n("md_export"), interactive=False)
        csv_file = gr.File(label=i18n("csv_export"), interactive=False)
    result = gr.Markdown(latex_delimiters=[], line_breaks=True, elem_id="rag-timeline")
    t_inputs = [topic, k, mode, *editor_filters]
    go.click(timeline, t_inputs, [result, md_file, csv_file], api_visibility="private")
    topic.submit(timeline, t_inputs, [result, md_file, csv_file], api_visibility="private")


def _ui_language(settings: Settings) -> str:
    return getattr(settings, "ui_language", "auto") or "auto"


def page_loader(assistant: Any, ui_language: str = "auto"):
    """On page load: the empty sources panel and the starting questions, in the reader's language,
    from the archive as it is now (recent posts' titles)."""

    def on_load(request: gr.Request = None):
        lang = request_language(ui_language, request)
        starters = starter_questions(_recent_posts(getattr(assistant, "retriever", None)), lang)
        return gr.update(examples=[{"text": q} for q in starters] or None), sources_message(lang, "sources_empty")

    return on_load


def build_app(assistant: Any, settings: Settings, feedback: FeedbackStore | None = None) -> gr.Blocks:
    """The Gradio app: the readers' chat, the editors' timeline and the `/ask` API, all over one
    shared `assistant` (thread-safe, see the module docstring). Labels are `gr.I18n` keys: pass
    `app_i18n(settings)` to `launch(i18n=...)` (`serve` does)."""
    store = feedback or FeedbackStore.for_index(settings.index_dir)
    facets = _facets(assistant.retriever)
    i18n = app_i18n(settings)
    with gr.Blocks(title="Archive assistant · アーカイブ・アシスタント", analytics_enabled=False,
                   delete_cache=(3600, 86400)) as demo:
        gr.Markdown(i18n("app_intro"), elem_id="rag-intro")
        with gr.Tab(i18n("tab_ask"), id="ask"):
            chatbot, sources = _chat_tab(assistant, store, facets, settings, i18n)
        with gr.Tab(i18n("tab_editors"), id="editors"):
            _editors_tab(assistant.retriever, facets, settings, i18n)
        # /ask stays (queued, errors as text) but undocumented: public endpoints are MCP tools, and the
        # tools are search_archive, ask_archive and get_post (rag/mcp_tools.py)
        gr.api(api_handler(assistant, settings), api_name="ask", api_visibility="undocumented")
        register_tools(assistant, settings)
        demo.load(page_loader(assistant, _ui_language(settings)), None, [chatbot, sources],
                  api_visibility="private")
    demo.rag_i18n = i18n
    return demo


def app_i18n(settings: Settings) -> gr.I18n:
    return gradio_i18n(_ui_language(settings))


def _recent_posts(retriever: Any, limit: int = 12) -> list[dict]:
    """The newest posts (title, date), for the starting questions (a convenience: none on failure)."""
    try:
        return retriever.reader.recent_posts(limit)
    except Exception:
        log.exception("could not read the recent posts")
        return []


def _facets(retriever: Any) -> tuple[list[str], list[str]]:
    """All tags and categories in the index, for the filter choices (a convenience: none on failure)."""
    try:
        return retriever.reader.facets()
    except Exception:
        log.exception("could not read tags and categories")
        return [], []


PUBLIC_API = ("ask", "search_archive", "ask_archive", "get_post")  # the only named endpoints scripts may call
_NAMED_CALL = re.compile(r"^/gradio_api/(?:call/v2|call|run|api)/([^/]+)")


class PublicAPIOnly:
    """ASGI middleware: named calls (`/gradio_api/call/<name>`, `/run/`, `/api/`) only for PUBLIC_API.

    Gradio 6's api_visibility="private" hides a handler from the API docs and gradio_client, but a
    raw POST to /gradio_api/call/<name> still runs it; this refuses those with 404. (The browser
    reaches the UI handlers through the queue by function index; their cost is bounded instead.)
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            m = _NAMED_CALL.match(scope.get("path", ""))
            if m and m.group(1) not in PUBLIC_API:
                from starlette.responses import JSONResponse

                await JSONResponse({"error": f"no API endpoint /{m.group(1)}; the API is "
                                             + ", ".join("/" + n for n in PUBLIC_API)},
                                   status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def serve(assistant: Any, settings: Settings, host: str = "127.0.0.1", port: int = 7860,
          auth: tuple[str, str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
          prevent_thread_lock: bool = False, quiet: bool = False, feedback: FeedbackStore | None = None):
    """Build, queue and launch the app; returns the `gr.Blocks` (call `.close()` to stop it)."""
    warning = exposure_warning(host, auth)
    if warning:
        print(warning, file=sys.stderr)
    retriever = getattr(assistant, "retriever", None)
    if retriever is not None:
        retriever.warm_up()  # load the query engine and tokenizer now, not on the first question
    from starlette.middleware import Middleware

    demo = build_app(assistant, settings, feedback)
    demo.queue(default_concurrency_limit=concurrency, max_size=max(100, 10 * concurrency))
    from .openai_api import app_kwargs  # /v1/chat/completions, and the API token check for it and MCP

    kwargs = app_kwargs(assistant, settings, auth)
    kwargs["middleware"] = [Middleware(PublicAPIOnly), *kwargs.get("middleware", [])]
    demo.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=prevent_thread_lock,
                quiet=quiet, show_error=False, max_threads=max(40, 2 * concurrency), theme=_theme(), css=CSS,
                footer_links=["api"], ssr_mode=False, i18n=demo.rag_i18n, head=HEAD, mcp_server=settings.mcp,
                app_kwargs=kwargs)
    return demo
