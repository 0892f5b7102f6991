"""The import graph of nightrec's own modules: layers, arrows pointing up, circles, private
imports across modules. Static (ast), so it reads any checkout without importing it.

    python benchmarks/import_graph.py [ROOT] [--markdown]

Layers, bottom up: ground (settings, schema, store, errors, time, locks, constants, progress)
< stage tasks (tasks/<stage>/...) < flows < CLI (flows/cli.py, flows/*_cli.py, flows/console.py
is console helpers for the CLI). An arrow up is an import from a lower layer to a higher one.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGES = ("tasks", "flows", "deployments")
GROUND = {
    "tasks.settings",
    "tasks.schema",
    "tasks.store",
    "tasks.errors",
    "tasks.timeutil",
    "tasks.locks",
    "tasks.constants",
    "tasks.progress",
    "tasks.safety.faults",
}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    if module in GROUND:
        return 0
    if module.startswith("tasks."):
        return 1
    if (
        module.startswith("deployments")
        or module in ("flows.cli", "flows.console")
        or (module.endswith("_cli"))
    ):
        return 3
    return 2


def imports(root: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """module -> [(imported module, names)], own modules only (lazy imports included)."""
    modules = {module_name(root, p): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, list[tuple[str, list[str]]]] = {}
    for name, path in modules.items():
        edges = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                target = node.module
                names = [a.name for a in node.names]
                if target.split(".")[0] in PACKAGES:
                    # `from flows import cli` imports the module flows.cli
                    for n in names:
                        if f"{target}.{n}" in modules:
                            edges.append((f"{target}.{n}", []))
                            names = [x for x in names if x != n]
                    if target in modules:
                        edges.append((target, names))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES and alias.name in modules:
                        edges.append((alias.name, []))
        seen: dict[str, list[str]] = {}
        for target, names in edges:
            if target != name:
                seen.setdefault(target, []).extend(names)
        graph[name] = list(seen.items())
    return graph


def stage_of(module: str) -> str:
    """tasks.rank.neural.train -> tasks.rank; flows.cli -> flows.cli (each flow its own)."""
    if module in GROUND:
        return "ground"
    parts = module.split(".")
    return ".".join(parts[:2])


def stage_graph(graph: dict[str, list[tuple[str, list[str]]]]) -> dict[str, list]:
    stages: dict[str, set[str]] = {}
    for module, edges in graph.items():
        for target, _ in edges:
            if stage_of(target) != stage_of(module):
                stages.setdefault(stage_of(module), set()).add(stage_of(target))
    return {s: [(t, []) for t in sorted(ts)] for s, ts in stages.items()}


def cycles(graph: dict[str, list[tuple[str, list[str]]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parents[1], type=Path)
    args = parser.parse_args()
    graph = imports(args.root)
    up = sorted((m, t) for m, edges in graph.items() for t, _ in edges if layer(t) > layer(m))
    private = sorted(
        (m, t, n)
        for m, edges in graph.items()
        for t, names in edges
        for n in names
        if n.startswith("_") and not n.startswith("__")
    )
    circles = cycles(graph)
    print(f"modules: {len(graph)}, edges: {sum(len(e) for e in graph.values())}")
    print(f"arrows up: {len(up)}")
    for m, t in up:
        print(f"  {m} (layer {layer(m)}) -> {t} (layer {layer(t)})")
    print(f"circles: {len(circles)}")
    for c in circles:
        print(f"  {' <-> '.join(c)}")
    stage_circles = cycles(stage_graph(graph))
    print(f"circles between stage packages: {len(stage_circles)}")
    for c in stage_circles:
        print(f"  {' <-> '.join(c)}")
    print(f"private imports across modules: {len(private)}")
    for m, t, n in private:
        print(f"  {m} imports {t}.{n}")


if __name__ == "__main__":
    main()
