"""No import cycles between the modules of ``diffcodec``, nor between those of its command line
(``cli/``, installed as ``diffcodec_cli``).

The source is read with ``ast``; nothing is imported. There is an edge A -> B for every import
statement in A that names B, at module level or inside a function, ``if TYPE_CHECKING`` imports
included: an import moved into a function is still a dependency (it only hides a cycle, and a
reader then has to find it to know what depends on what). ``from P import name`` names the submodule
``P.name`` when there is one, else ``P`` (a package's ``__init__``). The ``__init__`` of the packages
an import passes through is not counted: ``diffcodec/__init__.py`` gathers the API and
``coding/__init__.py`` imports every coder to register it; such a package sits above what it
gathers. (Python does run them on the way, so load order still matters there: the container
imports the coder registry, whose package imports every coder, so no coder imports the container at
module level.)
A cycle fails the test with its modules listed.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"diffcodec": ROOT / "diffcodec", "diffcodec_cli": ROOT / "cli"}


def modules() -> dict[str, Path]:
    """Dotted name -> source file of every module of the packages (a package is its __init__)."""
    out = {}
    for pkg, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [pkg, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(name: str, mods: dict[str, Path]) -> set[str]:
    """The modules of ``mods`` that module ``name``'s import statements name (anywhere in it)."""
    tree = ast.parse(mods[name].read_text(), str(mods[name]))
    here = name if mods[name].name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here.split(".")
            base = base[:len(base) - (node.level - 1)]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        for a in node.names:
            sub = f"{src}.{a.name}"
            out.add(sub if sub in mods else src)
    return {m for m in out if m in mods}


def graph() -> dict[str, set[str]]:
    """Module -> the modules it imports."""
    mods = modules()
    return {name: imports_of(name, mods) - {name} for name in mods}


def cycles(edges: dict[str, set[str]]) -> list[tuple[list[str], set[str]]]:
    """Each strongly connected component of more than one module (Tarjan), as (a shortest cycle
    through its first module, all its modules)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    out = []
    for comp in sorted(comps, key=min):
        start = min(comp)
        prev, frontier = {start: None}, [start]
        while not any(start in edges[v] for v in frontier):     # breadth first, inside comp
            nxt = []
            for v in frontier:
                for w in sorted(edges[v] & comp):
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [next(v for v in frontier if start in edges[v])]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])
        out.append(([*reversed(path), start], comp))
    return out


def _report(found) -> str:
    return "\n".join(" -> ".join(path) + (f"  (the knot: {', '.join(sorted(comp))})" if len(comp) > len(path) - 1
                                           else "") for path, comp in found)


def test_the_walk_sees_the_packages():
    mods = modules()
    assert {"diffcodec", "diffcodec.container.format", "diffcodec.coding.progressive",
            "diffcodec.training.store", "diffcodec_cli", "diffcodec_cli.common"} <= set(mods)
    deps = graph()
    assert "diffcodec.container.format" in deps["diffcodec.training.store"]
    assert "diffcodec.core.masking" in deps["diffcodec.training.store"]        # inside a function
    assert "diffcodec.coding.registry" in deps["diffcodec.container.format"]   # from ..coding import registry
    assert "diffcodec.coding" not in deps["diffcodec.container.format"]
    assert "diffcodec.nets" in deps["diffcodec.training.store"]                # from ..nets import UNet
    assert "diffcodec_cli.common" in deps["diffcodec_cli.commands_codec"]      # from .common import ...
    assert "diffcodec.api" in deps["diffcodec"] and "diffcodec" not in deps["diffcodec.api"]


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [(["a", "b", "c", "a"], {"a", "b", "c"})]
    assert cycles({"a": {"b", "c"}, "b": {"a"}, "c": {"b"}}) == [(["a", "b", "a"], {"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["diffcodec", "diffcodec_cli"])
def test_no_import_cycles(package):
    found = [(p, c) for p, c in cycles(graph()) if p[0].split(".")[0] == package]
    if found:
        pytest.fail("import cycles:\n" + _report(found), pytrace=False)
