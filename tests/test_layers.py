"""The import layers of ``lrface/``: no cycle between modules, no import from a layer above.

Read from the source (``ast``, nothing imported): every ``import lrface...`` and ``from
lrface... import`` counts, at module level, inside functions and under ``TYPE_CHECKING``
alike, so an import moved into a function cannot hide a cycle.  A *room* is a top-level
module (``lrface/api.py``) or sub-package (``lrface/faces/``); :data:`LAYERS` lists them
bottom up, and a room may import only from rooms of lower layers.  A new room must be placed
in :data:`LAYERS` (the README's layout tree draws the same floors).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrface"

#: Rooms bottom up; a room imports only rooms of lower floors.
LAYERS: list[set[str]] = [
    {"errors"},
    {"argconfig", "io"},
    {"models", "scores"},
    {"faces"},
    {"api", "batch", "datasets", "options"},
    {"distill", "search"},
    {"eval", "serve", "video"},
    {"cli"},
    {"__main__"},
]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the lrface modules it imports (anywhere in its file)."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import (use lrface.<module>)")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lrface"):
                mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod
                           for a in node.names]  # fmt: skip
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("lrface")]
            for t in targets:
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != name:
                    found.add(t)
        edges[name] = found
    return edges


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _floor(room: str) -> int:
    for i, rooms in enumerate(LAYERS):
        if room in rooms:
            return i
    raise AssertionError(f"lrface/{room}: not placed in LAYERS of tests/test_layers.py")


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return [*stack[stack.index(t) :], t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return _imports(_modules())


def test_no_module_imports_itself_back(edges: dict[str, set[str]]) -> None:
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def test_no_room_imports_from_a_floor_above_or_beside(edges: dict[str, set[str]]) -> None:
    bad = []
    for m, targets in sorted(edges.items()):
        if m == "lrface":  # the package's facade re-exports the public API
            continue
        for t in sorted(targets):
            a, b = _room(m), _room(t)
            if b and a != b and _floor(b) >= _floor(a):
                bad.append(f"{m} (floor {_floor(a)}) imports {t} (floor {_floor(b)})")
    assert not bad, "\n".join(bad)


def test_every_room_has_a_floor() -> None:
    rooms = {_room(m) for m in _modules()} - {""}
    for r in rooms:
        _floor(r)
    assert rooms == set().union(*LAYERS), "LAYERS names a room that no longer exists"


def test_the_checks_see_a_hidden_cycle(tmp_path: Path) -> None:
    """The detector works: an import inside a function closes a cycle it finds."""
    modules = {"lrface.a": tmp_path / "a.py", "lrface.b": tmp_path / "b.py"}
    modules["lrface.a"].write_text("from lrface.b import g\n")
    modules["lrface.b"].write_text("def g():\n    from lrface.a import f\n")
    assert _cycle(_imports(modules)) == ["lrface.a", "lrface.b", "lrface.a"]


def test_the_readme_tree_draws_these_floors() -> None:
    """README's "Layout" tree names every room on the floor :data:`LAYERS` gives it."""
    import re

    readme = (PACKAGE.parent / "README.md").read_text()
    drawn = {m[0].removesuffix(".py"): int(m[1])
             for m in re.findall(r"^  (\S+?)/?\s+floor (\d+)", readme, re.M)}  # fmt: skip
    wanted = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    assert drawn == wanted
