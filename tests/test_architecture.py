"""The floor plan, checked: the runtime never imports build-time code, and no module
imports itself back, lazy (function-level) imports included.

Walks the source tree as it installs (``ra_sdk/`` with ``kernels/``, ``train/`` and
``export/`` mapped to ``ra_sdk.kernels``, ``ra_sdk.train``, ``ra_sdk.export``; setup.py's
package_dir) with the ast module: every ``import`` statement anywhere in a file counts,
``if TYPE_CHECKING:`` blocks too. Run it as a script for the report:

    python tests/test_architecture.py
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: installed package -> source folder (setup.py's package_dir)
LAYOUT = {"ra_sdk": ROOT / "ra_sdk", "ra_sdk.kernels": ROOT / "kernels", "ra_sdk.train": ROOT / "train", "ra_sdk.export": ROOT / "export"}
BUILD_TIME = ("ra_sdk.train", "ra_sdk.export")
#: the one exception to "runtime never imports train/ or export/": the CLI commands that
#: exist to call them (DESIGN.md section 1)
CLI_MODULE = "ra_sdk.cli.model"
CLI_DOORS = {"train_cmd", "evaluate_cmd", "export_cmd", "build_cmd"}


def modules() -> dict[str, Path]:
    """Installed module name -> source file."""
    out: dict[str, Path] = {}
    for pkg, folder in LAYOUT.items():
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("")
            if pkg == "ra_sdk" and rel.parts and rel.parts[0] in ("kernels", "train", "export"):
                continue  # symlinks a staging script may have left; the mapping above wins
            parts = [p for p in rel.parts if p != "__init__"]
            if any(p.startswith(".") or p == "tests" for p in parts):
                continue
            out[".".join([pkg, *parts])] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """(imported module, enclosing function or "", line) for every ra_sdk import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str, int]] = []

    def resolve(mod: str | None, level: int) -> str:
        if level == 0:
            return mod or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, mod] if mod else base)

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and not func else func
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.startswith("ra_sdk"):
                        found.append((_owner(a.name, known), f, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                target = resolve(child.module, child.level)
                if target.startswith("ra_sdk"):
                    for a in child.names:
                        sub = f"{target}.{a.name}"
                        found.append((sub if sub in known else _owner(target, known), f, child.lineno))
            visit(child, f)

    visit(tree, "")
    return found


def _owner(mod: str, known: set[str]) -> str:
    while mod and mod not in known:
        mod = mod.rpartition(".")[0]
    return mod


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """The import graph and the violations of the runtime/build-time wall."""
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = defaultdict(set)
    violations = []
    for name, path in sorted(mods.items()):
        runtime = not name.startswith(BUILD_TIME)
        for target, func, line in imports(name, path, known):
            if target != name:
                edges[name].add(target)
            if runtime and target.startswith(BUILD_TIME) and not (name == CLI_MODULE and func in CLI_DOORS):
                violations.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target}" + (f" (in {func})" if func else ""))
    return edges, violations


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
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

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            strong(v)
    return out


def test_the_runtime_never_imports_train_or_export():
    _, violations = graph()
    assert not violations, "\n".join(violations)


def test_no_import_cycles_lazy_ones_included():
    edges, _ = graph()
    assert sum(len(v) for v in edges.values()) > 100  # the walk saw the tree
    assert not cycles(edges), cycles(edges)


def test_the_walk_sees_lazy_imports_and_the_cli_doors():
    """The checker is not vacuous: it finds a known function-level import, and the CLI's
    permitted imports of build-time code are seen (and excused) where they are."""
    mods = modules()
    found = imports(CLI_MODULE, mods[CLI_MODULE], set(mods))
    assert any(t.startswith("ra_sdk.train") and f == "train_cmd" for t, f, _ in found)
    found = imports("ra_sdk.cli.screen", mods["ra_sdk.cli.screen"], set(mods))
    assert any(t == "ra_sdk.run" and f == "screen_cmd" for t, f, _ in found)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def main() -> None:
    edges, violations = graph()
    n_edges = sum(len(v) for v in edges.values())
    print(f"{len(modules())} modules, {n_edges} import edges (function-level and TYPE_CHECKING imports included)")
    print(f"runtime -> train/export outside the CLI doors ({CLI_MODULE}: {sorted(CLI_DOORS)}): {len(violations)}")
    for v in violations:
        print("  " + v)
    cyc = cycles(edges)
    print(f"import cycles: {len(cyc)}")
    for c in cyc:
        print("  " + " -> ".join(c))


if __name__ == "__main__":
    main()
