"""The package's import graph: no cycles, and every import points down the layers.

Imports inside functions count as much as those at the top: a lazy import hides a cycle from
Python's import machinery, not from the design (the web app and its MCP tools once imported each
other that way). Only the source is read (ast), nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

RAG = Path(__file__).resolve().parents[1] / "rag"

# Who may import whom: a module imports from its own layer or a lower one, never a higher one.
# A new module has to be placed here (test_every_module_has_a_layer).
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"__init__", "config", "text", "http"}),
    ("leaves", {"corpus", "sites", "cpu", "e5", "i18n", "refusal", "feedback", "llm"}),
    ("engines", {"chunking", "keyword", "fast_e5", "remote_embedding", "cross_reader"}),
    ("reading", {"embedding", "index", "question", "metadata"}),
    ("search", {"retrieval", "ingest", "extractive"}),
    ("answering", {"context", "citations", "generation", "evaluation"}),
    ("presentation", {"render", "answer_text"}),
    ("doors", {"api", "mcp_tools", "openai_api"}),
    ("servers", {"app", "live"}),
    ("command line", {"cli"}),
]
LAYER = {module: level for level, (_, modules) in enumerate(LAYERS) for module in modules}


def imports_in(source: str, modules: set[str]) -> dict[str, int]:
    """The rag modules a source file imports, anywhere in it, each with the line of its first import:
    `from . import x`, `from .x import y`, `from rag import x`, `from rag.x import y`, `import rag.x`."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                path = node.module
            elif node.level == 0 and node.module and node.module.split(".")[0] == "rag":
                path = node.module.partition(".")[2] or None
            else:
                continue
            names = [path.split(".")[0]] if path else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("rag.")]
        for name in names:
            if name in modules and (name not in found or node.lineno < found[name]):
                found[name] = node.lineno
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line} over rag/*.py."""
    files = {p.stem: p for p in sorted(RAG.glob("*.py"))}
    return {name: imports_in(p.read_text(encoding="utf-8"), set(files) - {name}) for name, p in files.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search; a back edge closes a cycle)."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join([cycle[0]] + [f"{b} (rag/{a}.py:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])])


def test_the_walker_sees_every_form_of_import_at_any_depth():
    source = """
from . import text, nothere
from .config import Settings
import rag.index as idx
from rag.corpus import Post
from rag import keyword
import os

def later():
    from .app import serve
    import rag.cli

class K:
    def method(self):
        from .mcp_tools import make_tools
"""
    modules = {"text", "config", "index", "corpus", "keyword", "app", "cli", "mcp_tools", "retrieval"}
    assert imports_in(source, modules) == {"text": 2, "config": 3, "index": 4, "corpus": 5, "keyword": 6,
                                           "app": 10, "cli": 11, "mcp_tools": 15}


def test_find_cycle_names_the_modules_in_order():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert describe(["a", "b", "c", "a"], graph) == "a -> b (rag/a.py:1) -> c (rag/b.py:2) -> a (rag/c.py:3)"
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2, "b": 3}}) is None


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + describe(cycle, graph)


def test_every_module_has_a_layer():
    modules = set(import_graph())
    assert not modules - set(LAYER), f"place these modules in LAYERS: {sorted(modules - set(LAYER))}"
    assert not set(LAYER) - modules, f"LAYERS names modules that do not exist: {sorted(set(LAYER) - modules)}"


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = [f"rag/{a}.py:{line}: {a} ({LAYERS[LAYER[a]][0]}) imports {b} ({LAYERS[LAYER[b]][0]})"
              for a, deps in sorted(graph.items()) for b, line in sorted(deps.items())
              if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
