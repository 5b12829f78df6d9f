"""The archive as tools for AI assistants: `search_archive`, `ask_archive`, `get_post`.

`register_tools(assistant, settings)` adds them to the Gradio app as public API endpoints; Gradio 6
serves every public endpoint as an MCP tool (`launch(mcp_server=True)`, the `mcp` package) at
`/gradio_api/mcp/` (streamable HTTP) and `/gradio_api/mcp/sse` (SSE). The UI's own handlers are
registered with `api_visibility="undocumented"`/`"private"`, so these three are the only tools.
Gradio builds each tool's description and JSON schema from the docstring ("Args:") and type hints.

The tools run with `queue=False`: Gradio's MCP server then calls them in-process; queued tools would
be called back over HTTP through the queue, which the UI's login would refuse. They use the same
`Assistant` (same retriever, refusals and citation checks) as the chat page.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import gradio as gr

from .answer_text import api_answer_text
from .chunking import join_chunks
from .config import Settings
from .corpus import clip
from .generation import check_question
from .retrieval import Filters, parse_day

log = logging.getLogger(__name__)

MAX_K = 50
MAX_POST_CHARS = 100_000  # a post's text in one tool result (the largest posts are ~2 MB of export errors)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1)


def make_filters(tags: Sequence[str] | None = None, categories: Sequence[str] | None = None,
                 since: str | None = None, until: str | None = None) -> Filters:
    """Search filters from what a tool call or the page's filter controls send: empty choices dropped,
    days checked (ValueError names the field)."""
    return Filters(tuple(t for t in tags or () if t), tuple(c for c in categories or () if c),
                   parse_day(since, "since"), parse_day(until, "until"))


def passage_dict(rank: int, hit: Any) -> dict:
    """One search result as a tool returns it (what the editors' timeline shows for a passage)."""
    return {"rank": rank, "post_id": hit.post_id, "title": hit.title, "date": hit.date, "url": hit.url,
            "chunk_id": hit.chunk_id, "score": round(float(hit.score), 4), "tags": list(hit.tags),
            "categories": list(getattr(hit, "categories", []) or []), "text": hit.text}


def post_dict(post: dict) -> dict:
    """A post's metadata and cleaned text (its chunks joined back, each heading and overlap once)."""
    text = join_chunks([c["text"] for c in post["chunks"]])
    out = {k: post.get(k) for k in ("post_id", "title", "date", "url", "author", "tags", "categories", "excerpt")}
    out["chunk_ids"] = [c["chunk_id"] for c in post["chunks"]]
    out["truncated"] = len(text) > MAX_POST_CHARS
    out["text"] = text[:MAX_POST_CHARS]
    return out


def make_tools(assistant: Any, settings: Settings) -> list:
    """The three tool functions, bound to one assistant. Errors a caller can fix raise `gr.Error`
    (its message reaches the MCP client); anything else is logged and reported by type only."""
    def search_archive(query: str, k: int = 10, tags: list[str] | None = None,
                       categories: list[str] | None = None, since: str = "", until: str = "") -> str:
        """Search the blog archive (Japanese and English posts) for passages about a topic or question, best first. Use it to find what the archive has said about something, then cite the post URLs; use get_post to read a whole post.

        Args:
            query: what to look for: keywords or a question, in Japanese or English.
            k: how many passages to return (1-50, default 10).
            tags: only posts with all of these tags (case-insensitive), e.g. ["PostgreSQL"].
            categories: only posts in all of these categories (case-insensitive).
            since: only posts dated on or after this day, YYYY-MM-DD (empty: no limit).
            until: only posts dated on or before this day, YYYY-MM-DD (empty: no limit).

        Returns:
            JSON: {"query", "passages": [{"rank", "post_id", "title", "date", "url", "chunk_id", "score", "tags", "categories", "text"}]}
        """
        try:
            q = check_question(query, settings.max_question_chars)
            n = int(k if k is not None else 10)
            if not 1 <= n <= MAX_K:
                raise ValueError(f"k must be between 1 and {MAX_K}, got {n}")
            filters = make_filters(tags, categories, since, until)
            hits = assistant.retriever.search(q, n, "hybrid", filters)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        except Exception as exc:
            log.exception("search_archive %r failed", clip(query or ""))
            raise gr.Error(f"the search failed ({type(exc).__name__})") from None
        return _dumps({"query": q, "passages": [passage_dict(i, h) for i, h in enumerate(hits, 1)]})

    def ask_archive(question: str) -> str:
        """Answer a question from the blog archive only, with citations. The answer marks each statement with [n]; a numbered source list (title, date, URL) follows. If the archive does not cover the question, it says so and lists the nearest passages instead of guessing.

        Args:
            question: the question, in Japanese or English (at most 2,000 characters).

        Returns:
            The answer with [n] citation markers, then "Sources:" with one line per source: [n] title (date) URL.
        """
        try:
            q = check_question(question, settings.max_question_chars)
            answer = assistant.ask(q)
            if answer.mode == "error":
                log.warning("chat endpoint error: %s", answer.error)
            return api_answer_text(answer)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        except Exception as exc:
            log.exception("ask_archive %r failed", clip(question or ""))
            raise gr.Error(f"something went wrong while answering ({type(exc).__name__})") from None

    def get_post(post_id: str) -> str:
        """Read one post of the archive: its metadata and its cleaned text. Post ids come from search_archive and ask_archive results (e.g. "2021-06-30-postgres-index").

        Args:
            post_id: the post's id (its path in the archive without the extension).

        Returns:
            JSON: {"post_id", "title", "date", "url", "author", "tags", "categories", "excerpt", "chunk_ids", "truncated", "text"}
        """
        pid = (post_id or "").strip()
        if not pid:
            raise gr.Error("post_id is empty")
        try:
            post = assistant.retriever.reader.post(pid)
        except Exception as exc:
            log.exception("get_post %r failed", clip(pid))
            raise gr.Error(f"reading the post failed ({type(exc).__name__})") from None
        if post is None:
            raise gr.Error(f"no post {pid!r} in the archive")
        return _dumps(post_dict(post))

    return [search_archive, ask_archive, get_post]


def register_tools(assistant: Any, settings: Settings) -> None:
    """Call inside the app's `gr.Blocks`: the three tools as public endpoints, and so MCP tools."""
    search_archive, ask_archive, get_post = make_tools(assistant, settings)
    gr.api(search_archive, api_name="search_archive", queue=False)
    gr.api(ask_archive, api_name="ask_archive", queue=False)
    gr.api(get_post, api_name="get_post", queue=False)
