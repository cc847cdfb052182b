"""Layers point one way: the world is an instrument that names no method and no evaluation
code; shared rooms (models, faces, adapters, losses, training) know no method; the world
bench, demo and CLI find methods through the registry; no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sameface"


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the sameface modules a file imports."""
    tree = ast.parse(path.read_text())
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {n for n in out if n.startswith("sameface")}


def _files(room: str) -> list[Path]:
    return sorted((SRC / room).rglob("*.py"))


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("world", ("sameface.methods", "sameface.eval")),
        ("models", ("sameface.methods", "sameface.eval", "sameface.world")),
        ("adapters", ("sameface.methods", "sameface.eval", "sameface.world")),
        ("losses", ("sameface.methods", "sameface.eval", "sameface.world")),
        ("training", ("sameface.methods", "sameface.eval", "sameface.world")),
        ("faces", ("sameface.methods", "sameface.eval")),
    ],
)
def test_shared_rooms_name_no_method(room, forbidden):
    bad = {
        f"{p.relative_to(SRC)}: {name}"
        for p in _files(room)
        for name in _imports(p)
        if name.startswith(forbidden)
    }
    assert not bad, sorted(bad)


def test_no_import_cycles():
    """Imports inside functions count too: a cycle there is one refactor away from a crash."""
    graph = {}
    for p in sorted(SRC.rglob("*.py")):
        mod = _module(p)
        graph[mod] = {n for n in _imports(p) if n != mod}
    modules = set(graph)
    # `from .x import name` names a module `x` or a name in it: keep the modules only.
    edges = {
        m: {n if n in modules else n.rpartition(".")[0] for n in deps} & modules
        for m, deps in graph.items()
    }
    # A package's __init__ importing its own submodules is no cycle worth breaking.
    edges = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in edges.items()}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for n in edges[m]:
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    assert not cycles, cycles


def test_world_bench_and_cli_find_methods_in_the_registry(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import sameface.methods as methods
    from sameface.eval import world_bench
    from sameface.methods.spec import WorldRecipe

    recipe = WorldRecipe(
        folder="toy",
        what="toy weights",
        help="train the toy",
        description="a toy method",
        add_arguments=lambda p: p.add_argument("--toy-steps", type=int),
        run=lambda args: tmp_path,
        settings=lambda world, folder: {"adapter": str(folder)},
    )
    monkeypatch.setattr(methods, "world_recipes", lambda: {"toy": recipe})
    world = SimpleNamespace(folder=tmp_path)
    assert "sameface world toy" in world_bench.unavailable_reason(world, "toy")
    (tmp_path / "toy").mkdir()
    assert world_bench.unavailable_reason(world, "toy") is None
    assert world_bench.world_method_settings(world, ["toy"]) == {
        "toy": {"adapter": str(tmp_path / "toy")}
    }
    from sameface.cli import build_parser

    args = build_parser().parse_args(["world", "toy", "--toy-steps", "3"])
    assert args.toy_steps == 3 and args.func(args) == 0
