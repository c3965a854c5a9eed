"""The core's modules import one way: no circles, mm/ below everything, each layer only
from the layers under it (docs/architecture.md, "Layers").

The graph is read from the source (ast), not from what an import happens to execute:
every ``import`` and ``from ... import`` counts, at module level, inside a function,
or under ``if TYPE_CHECKING:``, because a circle that only type checkers or a rarely
taken branch follow is still a circle a reader has to untangle.  An edge goes to the
module imported (``from pagemig.mm import pages`` is an edge to ``pagemig.mm.pages``);
a package's ``__init__`` being run on the way is not an edge.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

CORE = Path(__file__).resolve().parent.parent / "core"
PACKAGE = "pagemig"

#: What mm/ may import besides itself: the simulated kernel needs nothing of the simulator.
MM_THIRD_PARTY = {"numpy", "attrs", "structlog"}

#: The layers, lowest first; a module may import its own layer and the ones before it.
#: A module is in the layer of the longest prefix that names it (``pagemig`` names the
#: package's ``__init__`` only).  ``pagemig.api`` and ``pagemig.outputs`` are placed
#: before they exist, so that they land in their layer when they do.  Kept in the order
#: docs/architecture.md draws them.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kernel", ("pagemig.mm",)),
    ("host", ("pagemig", "pagemig.hookspecs", "pagemig.logging", "pagemig.driver", "pagemig.plugins",
              "pagemig.compaction_policy", "pagemig.outputs")),
    ("snapshot", ("pagemig.snapshot",)),
    ("vocabulary", ("pagemig.sim.units", "pagemig.sim.schema", "pagemig.sim.result", "pagemig.sim.commands",
                    "pagemig.sim.scenario", "pagemig.workload")),
    ("api", ("pagemig.api",)),
    ("workloads", ("pagemig.workloads",)),
    ("run", ("pagemig.sim",)),
    ("report", ("pagemig.report",)),
    ("oracle", ("pagemig.oracle",)),
    ("testing", ("pagemig.testing",)),
    ("cli", ("pagemig.cli",)),
)


@attrs.frozen
class Edge:
    src: str
    dst: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}  ({self.path.relative_to(CORE.parent)}:{self.line})"


def modules(root: Path = CORE) -> dict[str, Path]:
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, or the package that defines it as a name."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import of the package in ``module``'s source,
    wherever it stands; other imports as (top-level name, line) with a leading ``!``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = _target(name, known)
                if target is not None and target != module:
                    yield target, node.lineno
            else:
                yield "!" + name.split(".")[0], node.lineno


def graph(root: Path = CORE) -> tuple[dict[str, list[Edge]], list[Edge]]:
    """The package's import graph, and the imports of anything outside it."""
    known = modules(root)
    edges: dict[str, list[Edge]] = {m: [] for m in known}
    outside: list[Edge] = []
    for module, path in known.items():
        seen: set[str] = set()
        for target, line in sorted(imports(module, path, known), key=lambda t: t[1]):
            if target in seen:  # the first import of a module stands for all of them
                continue
            seen.add(target)
            edge = Edge(module, target.lstrip("!"), path, line)
            (outside if target.startswith("!") else edges[module]).append(edge)
    return edges, outside


def cycles(edges: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One circle through each strongly connected component (Tarjan), as its edges."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in edges[v]:
            if e.dst not in index:
                visit(e.dst)
                low[v] = min(low[v], low[e.dst])
            elif e.dst in on_stack:
                low[v] = min(low[v], index[e.dst])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    out = []
    for comp in components:
        start = min(comp)
        # breadth-first from start back to start, inside the component: the shortest circle
        came: dict[str, Edge] = {}
        frontier = [start]
        found: Edge | None = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for e in edges[v]:
                    if e.dst == start:
                        found = e
                        break
                    if e.dst in comp and e.dst not in came:
                        came[e.dst] = e
                        nxt.append(e.dst)
                if found:
                    break
            frontier = nxt
        assert found is not None
        circle = [found]
        while circle[0].src != start:
            circle.insert(0, came[circle[0].src])
        out.append(circle)
    return out


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            covers = module == p or (p != PACKAGE and module.startswith(p + "."))  # the root: itself only
            if covers and (best is None or len(p) > best[0]):
                best = (len(p), rank)
    return None if best is None else best[1]


EDGES, OUTSIDE = graph()


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A hand-built package: a module-level, a function-local, a TYPE_CHECKING and a relative
    import each make an edge, and the circle they close is found."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pagemig.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pagemig.a\n")
    edges, outside = graph(tmp_path)
    assert {(e.src, e.dst) for es in edges.values() for e in es} == {
        ("pagemig.a", "pagemig.sub.b"), ("pagemig.sub.b", "pagemig.sub.c"), ("pagemig.sub.c", "pagemig.a")}
    assert [(e.src, e.dst) for e in outside] == [("pagemig.sub.c", "typing")]
    [circle] = cycles(edges)
    assert [e.src for e in circle] == ["pagemig.a", "pagemig.sub.b", "pagemig.sub.c"]


def test_no_import_circles() -> None:
    found = cycles(EDGES)
    text = "\n\n".join("\n".join(f"  {e}" for e in c) for c in found)
    assert not found, f"import circles in core/pagemig:\n{text}"


def test_mm_imports_nothing_above_it() -> None:
    bad = [e for es in EDGES.values() for e in es
           if e.src.startswith("pagemig.mm") and not (e.dst == "pagemig.mm" or e.dst.startswith("pagemig.mm."))]
    bad += [e for e in OUTSIDE if e.src.startswith("pagemig.mm")
            and e.dst not in sys.stdlib_module_names and e.dst not in MM_THIRD_PARTY and e.dst != "__future__"]
    assert not bad, "mm/ imports outside itself:\n" + "\n".join(f"  {e}" for e in bad)


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in EDGES if layer_of(m) is None)
    assert not missing, f"place these modules in a layer (LAYERS here and docs/architecture.md): {missing}"


def test_imports_go_down_the_layers() -> None:
    up = [e for es in EDGES.values() for e in es
          if (a := layer_of(e.src)) is not None and (b := layer_of(e.dst)) is not None and b > a]
    names = [name for name, _ in LAYERS]
    assert not up, "imports that run up the layers:\n" + "\n".join(
        f"  {e}   [{names[layer_of(e.src) or 0]} -> {names[layer_of(e.dst) or 0]}]" for e in up)


@pytest.mark.parametrize("name", [name for name, _ in LAYERS])
def test_layers_are_named_in_the_architecture_doc(name: str) -> None:
    doc = (CORE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"**{name}**" in doc


def test_every_kernel_module_is_in_the_architecture_table() -> None:
    """docs/architecture.md's module -> kernel file table is kept current."""
    doc = (CORE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = sorted(p.name for p in (CORE / PACKAGE / "mm").glob("*.py")
                     if p.name != "__init__.py" and f"| `{p.name}` |" not in doc)
    assert not missing, f"add these mm/ modules to the table in docs/architecture.md: {missing}"
