"""The package's import graph, read from the source: no import cycle inside ``c2bridge`` and no private name
imported across modules.

Every import statement counts, at module level or inside a function (a function-level import that closes a cycle
only hides it), except those under ``if TYPE_CHECKING:``. ``from pkg import name`` is an edge to ``pkg.name``
when that is a module, else to ``pkg``. Importing ``a.b.c`` also runs the ``__init__`` of ``a.b``: an edge too,
except to the importer's own enclosing packages (they are already importing). So a package may import its
submodules, but a submodule may not import its package back, and no package's ``__init__`` may lead back to a
module that imports from that package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import c2bridge

SRC = Path(c2bridge.__file__).resolve().parent
ROOT = SRC.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST):
    """Every Import/ImportFrom in the tree, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                yield from import_nodes(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from import_nodes(node)


def absolute_from(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def edges(module: str):
    """(imported c2bridge module, names taken from it, line) for each import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "c2bridge":
                    yield alias.name, [], node.lineno
            continue
        source = absolute_from(module, node)
        if source.split(".")[0] != "c2bridge":
            continue
        plain = []
        for alias in node.names:
            if f"{source}.{alias.name}" in MODULES:
                yield f"{source}.{alias.name}", [], node.lineno
            else:
                plain.append(alias.name)
        if plain:
            yield source, plain, node.lineno


def enclosing(module: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``module`` (``c2bridge`` itself excluded)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def graph() -> dict[str, set[str]]:
    g = {}
    for m in MODULES:
        targets = set()
        for target, _, _ in edges(m):
            targets.add(target)
            targets.update(p for p in enclosing(target) if p not in enclosing(m) and p != m)
        g[m] = targets - {m}
    return g


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (each holds at least one cycle)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def one_cycle(g: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a component, for the failure message."""
    start, members = component[0], set(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(g[path[-1]] & members):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return component


def test_the_walk_sees_the_package():
    g = graph()
    assert len(MODULES) > 40 and "c2bridge.adapters.base" in MODULES
    assert "c2bridge.adapters.registry" in g["c2bridge.adapters.base"]  # a module-level import
    assert "c2bridge.presets" in g["c2bridge.adapters.budget"]
    # importing c2bridge.metrics.distance runs c2bridge.metrics' __init__ (not the importer's own package's)
    assert enclosing("c2bridge.metrics.distance") == ["c2bridge.metrics"]
    assert "c2bridge.adapters" not in g["c2bridge.adapters.budget"]


def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(g) == [["a", "b", "c"]]
    assert one_cycle(g, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_c2bridge():
    g = graph()
    cycles = [" -> ".join(one_cycle(g, c)) for c in strongly_connected(g)]
    assert not cycles, "import cycles inside c2bridge:\n  " + "\n  ".join(cycles)


def private_uses(module: str):
    """``from c2bridge.x import _name`` and ``x._name`` on an imported c2bridge module, outside that module."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    bound = {}  # local name -> the c2bridge module it is bound to
    for target, names, line in edges(module):
        for name in names:
            if name.startswith("_") and not name.startswith("__") and target != module:
                yield f"{module}:{line} imports {target}.{name}"
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("c2bridge"):
                    bound[alias.asname or alias.name] = alias.name
        else:
            source = absolute_from(module, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in bound:
            owner = ".".join([bound[value.id], *chain])
            if owner in MODULES and owner != module:
                yield f"{module}:{node.lineno} uses {owner}.{node.attr}"


def test_no_private_name_imported_across_modules():
    found = [use for m in MODULES for use in private_uses(m)]
    assert not found, "private names used outside their module (make them public where they belong):\n  " + \
        "\n  ".join(found)


def test_the_private_name_check_sees_attribute_uses(tmp_path, monkeypatch):
    fake = tmp_path / "c2bridge"
    (fake / "experiments").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "experiments" / "__init__.py").write_text("")
    (fake / "experiments" / "a.py").write_text("def _split():\n    pass\n")
    (fake / "experiments" / "b.py").write_text(
        "from c2bridge.experiments import a\nfrom c2bridge.experiments.a import _split\nx = a._split\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "ROOT", tmp_path)
    modules = {module_name(p): p for p in sorted(fake.rglob("*.py"))}
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "MODULES", modules)
    assert sorted(private_uses("c2bridge.experiments.b")) == [
        "c2bridge.experiments.b:2 imports c2bridge.experiments.a._split",
        "c2bridge.experiments.b:3 uses c2bridge.experiments.a._split",
    ]
