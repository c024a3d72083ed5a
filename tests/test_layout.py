"""The package layout: no import cycle anywhere, no module over 700 lines without a stated reason.

The cycle rule: a module depends on another when it imports it *at module level* -- a top-level ``import`` /
``from ... import`` statement, including ones nested in module-level ``if`` / ``try`` / ``with`` blocks, but not
those under ``if TYPE_CHECKING:`` (never executed) and not those inside a function or class body (lazy imports run
only when called, after every module has finished importing). ``from pkg import name`` depends on ``pkg.name``
when that is a module of the project, on ``pkg`` otherwise; relative imports are resolved against the importing
module's package. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so those are dependencies
too -- except the importer's own enclosing packages, which Python has always started importing before the importer
runs (``a/__init__`` importing ``a.m``, and ``a.m`` importing ``a.n``, is no cycle; ``a.m`` importing a name from
``a`` itself is an edge to ``a``). Only modules of the project's packages count; a cycle among them fails the test,
named module by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("clip_core", "clip_pt", "clip_tf", "clip_flax", "conformance", "bench")
MAX_LINES = 700
REASON = "over 700 lines because"


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of :data:`PACKAGES` under ``root``."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module):
    """Import statements executed when the module is imported (see the module docstring)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending += node.body
            pending += node.orelse
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            pending += node.body + getattr(node, "orelse", [])


def _with_parents(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the packages importing it runs, less the importer's own enclosing packages."""
    parts = target.split(".")
    enclosing = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    found = {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in enclosing}
    return {name for name in found | {target} if name in modules}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets |= _with_parents(alias.name, name, modules)
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # a submodule, or a name defined in the package ``base`` itself
                submodule = f"{base}.{alias.name}"
                targets |= _with_parents(submodule if submodule in modules else base, name, modules)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None`` (depth-first search, colouring the modules)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle():
    modules = project_modules()
    assert {"clip_core.checkpoints", "clip_core.formats.registry", "conformance.forward"} <= set(modules)
    graph = import_graph(modules)
    assert "clip_core.formats.registry" in graph["clip_core.formats.openai"]  # the walk sees real edges
    assert {"clip_core.formats.registry", "clip_core.formats.openai"} <= graph["clip_core.checkpoints"]
    assert "conformance.forward" in graph["conformance"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    """The same walk over a small tree with a cycle through a relative import, a parent package and a
    ``from pkg import submodule``; lazy and TYPE_CHECKING imports are not edges."""
    pkg = tmp_path / "clip_core"
    (pkg / "sub").mkdir(parents=True)
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from clip_core.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import clip_core.a\n"
                                      "def f():\n    import clip_core.a\nfrom . import c\n")
    (pkg / "sub" / "c.py").write_text("try:\n    from ..a import x\nexcept ImportError:\n    pass\n")
    graph = import_graph(project_modules(tmp_path))
    assert graph["clip_core.sub.b"] == {"clip_core.sub.c"}  # its own packages: already importing
    assert graph["clip_core.a"] == {"clip_core.sub", "clip_core.sub.b"}
    assert find_cycle(graph) == ["clip_core.a", "clip_core.sub.b", "clip_core.sub.c", "clip_core.a"]
    (pkg / "sub" / "c.py").write_text("def g():\n    from ..a import x\n")
    assert find_cycle(import_graph(project_modules(tmp_path))) is None
    # a package importing its submodule, which takes a name from the package itself: a real cycle
    (pkg / "sub" / "__init__.py").write_text("from .c import g\nVALUE = 1\n")
    (pkg / "sub" / "c.py").write_text("from clip_core.sub import VALUE\n")
    assert find_cycle(import_graph(project_modules(tmp_path))) == ["clip_core.sub", "clip_core.sub.c", "clip_core.sub"]


def test_the_old_import_paths_still_work():
    from clip_core import checkpoints, openai
    from clip_core.formats import _common, pytorch, registry

    for name in ("CheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError", "UnsupportedCheckpointError"):
        assert getattr(checkpoints, name) is getattr(_common, name)
    for name in checkpoints.__all__ + ["_READERS", "_progress", "_NoProgress", "FLAX_MAX_CHUNK_SIZE",
                                       "TF_MODEL_NAMES", "OPEN_CLIP_NAMES", "KERAS_VERSION"]:
        assert hasattr(checkpoints, name), name
    for name in openai.__all__ + ["ScriptObject"]:
        assert hasattr(openai, name), name
    assert checkpoints._READERS is registry.READERS and openai.read_torch_zip is pytorch.read_torch_zip


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package):
    too_long = []
    for name, path in project_modules().items():
        if not name.startswith(package):
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + (not text.endswith("\n") and bool(text))
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and REASON not in " ".join(docstring.split()):
            too_long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not too_long, (f"modules over {MAX_LINES} lines without '{REASON} ...' in their docstring: "
                          + ", ".join(too_long))

