"""The layout the architecture promises, read from the code itself.

- every first-party module imports (in a fresh interpreter, one module at a time for the
  packages' roots, so an import cycle that only bites in one order shows up);
- the core (`restate/`) imports neither the flows, the interfaces nor the notices
  package, not even lazily inside a function;
- `notifications/` never imports an interface or a flow;
- no cycle among module-level imports.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("restate", "notifications", "flows", "interfaces", "sources")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """First-party modules `module` imports (resolved to the longest known module name)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = module.split(".")[: -node.level if path.name != "__init__.py" else None]
                if path.name == "__init__.py" and node.level > 1:
                    package = package[: -(node.level - 1)]
                base = ".".join([*package, base]) if base else ".".join(package)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    resolved = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            resolved.add(name)
    return resolved


def test_every_module_found() -> None:
    # Guard against the walk silently finding nothing (the checks below would then pass).
    assert {
        "restate.actions",
        "restate.events",
        "notifications.notifier",
        "interfaces.cli.commands",
    } <= set(MODULES)
    assert len(MODULES) > 50


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_each_package_root_imports_first_in_a_fresh_interpreter() -> None:
    # A cycle can hide when another module happened to be imported first; these are the
    # first imports a user's code, a flow run or the CLI makes.
    for first in (
        "restate.settings",
        "restate.actions",
        "restate.actions",
        "notifications",
        "flows",
        "interfaces.cli",
        "interfaces.slack",
    ):
        done = subprocess.run(
            [sys.executable, "-c", f"import {first}"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"import {first}: {done.stderr[-2000:]}"


def _edges(top_level_only: bool) -> dict[str, set[str]]:
    return {m: _imports(p, m, top_level_only) for m, p in MODULES.items()}


def test_core_imports_no_flow_interface_or_notice_package() -> None:
    bad = {
        (module, target)
        for module, targets in _edges(top_level_only=False).items()
        if module.startswith("restate")
        for target in targets
        if target.split(".")[0] in ("flows", "interfaces", "notifications", "sources")
    }
    assert not bad, f"the core imports an outer layer: {sorted(bad)}"


def test_notices_import_no_interface_or_flow() -> None:
    bad = {
        (module, target)
        for module, targets in _edges(top_level_only=False).items()
        if module.startswith("notifications")
        for target in targets
        if target.split(".")[0] in ("flows", "interfaces")
    }
    assert not bad, f"notifications imports an outer layer: {sorted(bad)}"


def test_no_import_cycle() -> None:
    graph = _edges(top_level_only=True)
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            # A package and the submodules its __init__ re-exports are one unit, not a cycle.
            if len({c for c in component if not any(c.startswith(o + ".") for o in component)}) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_cycle_and_a_forbidden_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules above must be able to fail: feed them a planted cycle and a planted import.
    planted = {
        "restate.a": tmp_path / "a.py",
        "restate.b": tmp_path / "b.py",
    }
    planted["restate.a"].write_text("from restate import b\n\ndef f():\n    from flows import restatement\n")
    planted["restate.b"].write_text("import restate.a\n")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {**MODULES, **planted})
    assert "restate.b" in _imports(planted["restate.a"], "restate.a", top_level_only=True)
    assert "flows.restatement" in _imports(planted["restate.a"], "restate.a", top_level_only=False)
    assert "flows.restatement" not in _imports(planted["restate.a"], "restate.a", top_level_only=True)
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()
    with pytest.raises(AssertionError, match="outer layer"):
        test_core_imports_no_flow_interface_or_notice_package()
