"""The floors of the house (docs/architecture.md, "Floors"): imports only run downwards, and
no module imports itself back through others. Read from the source with ast, so an import
inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

from cluster.config import REPO_ROOT

# Lowest first. A module may import its own floor and the floors below it, with two exceptions:
# training and serving stand side by side and never import each other, except that serving
# uses the model's forward pass, the tokenizer, the index readers and the score fusion (so
# evaluation ranks exactly as serving does).
FLOORS = {
    "cluster": 0,  # base: settings, stores, processes, the Ray connection, metric definitions
    "training": 1,
    "deployments": 1,  # serving
    "learning": 2,  # the learning loop, above training and serving
    "twotower": 3,  # the operator's entry points: CLI, local stack, simulator
    "monitoring": 3,  # the bench and the stack's Prometheus
    "ui": 3,  # the website: talks to the API over HTTP
}
SERVING_MAY_USE = {"training.model", "training.text", "training.index", "training.fusion"}
EXPERIMENTS = "experiments"  # may import anything; the product never imports it


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    found = {}
    for package in [*FLOORS, EXPERIMENTS]:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules ``path`` imports (``from a import b`` counts a.b if that is one)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in modules else node.module)
    return {n for n in names if n.split(".")[0] in modules or n in modules}


def graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: imports_of(path, modules) & modules.keys() for name, path in modules.items()}


def upward(source: str, target: str) -> bool:
    top_s, top_t = source.split(".")[0], target.split(".")[0]
    if top_t == EXPERIMENTS:
        return top_s != EXPERIMENTS
    if top_s == EXPERIMENTS or top_s == top_t:
        return False
    if {top_s, top_t} == {"training", "deployments"}:
        return not (top_s == "deployments" and target in SERVING_MAY_USE)
    return FLOORS[top_t] > FLOORS[top_s]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each once (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_imports_only_run_downwards():
    bad = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if upward(source, target)
    )
    assert bad == []


def test_no_import_cycles():
    # A package's __init__ re-exporting its own modules is not a cycle of behaviour.
    edges = {
        source: {t for t in targets if not source.startswith(t + ".")}
        for source, targets in graph().items()
    }
    assert cycles(edges) == []


def test_the_checks_catch_what_they_look_for():
    assert upward("cluster.config", "training.model")
    assert upward("training.pipeline", "deployments.app")
    assert upward("deployments.app", "training.pipeline")
    assert not upward("deployments.shard", "training.index")
    assert upward("twotower.cli", "experiments.oracle") and not upward("learning.job", "cluster")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
