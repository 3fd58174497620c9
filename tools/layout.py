"""The code's shape rules, measured: import cycles between our modules (imports inside functions and under
TYPE_CHECKING count), module length and function length. `python tools/layout.py` prints every breach."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


@dataclass
class Module:
    name: str  # dotted, e.g. utils.checkpoints.keys
    path: Path
    tree: ast.Module


def modules(root: Path = ROOT, package: str = "utils") -> dict[str, Module]:
    """Every module of `package` (webui.py beside it included), by dotted name."""
    found = {}
    paths = sorted((root / package).rglob("*.py"))
    for path in [*paths, root / "webui.py"]:
        if not path.is_file():
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), path, ast.parse(path.read_text(), str(path)))
    return found


def _resolve(name: str, known: dict[str, Module]) -> str | None:
    """The longest known module that `name` (a module or a name inside one) lies in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: Module, known: dict[str, Module]) -> set[str]:
    """Our modules that `module` imports anywhere in its body."""
    out = set()
    for node in ast.walk(module.tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.name.split(".")
                if module.path.name != "__init__.py":
                    pkg = pkg[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module.name:
                out.add(target)
    return out


def cycles(known: dict[str, Module]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    graph = {name: imports(m, known) for name, m in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return groups


def long_modules(known: dict[str, Module], limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    out = []
    for m in known.values():
        lines = len(m.path.read_text().splitlines())
        if lines > limit:
            out.append((m.name, lines))
    return out


def long_functions(known: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """Outermost functions (nested ones count toward them) longer than `limit` lines, decorators excluded."""
    out = []
    for m in known.values():
        for node in _outermost_functions(m.tree):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                out.append((f"{m.name}.{node.name} (line {node.lineno})", lines))
    return out


def _outermost_functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append(node)
        elif isinstance(node, ast.ClassDef | ast.If | ast.Try | ast.With):
            found += _outermost_functions(node)
    return found


def main() -> int:
    known = modules()
    problems = [f"import cycle: {' <-> '.join(g)}" for g in cycles(known)]
    problems += [f"module over {MAX_MODULE_LINES} lines: {n} ({c})" for n, c in long_modules(known)]
    problems += [f"function over {MAX_FUNCTION_LINES} lines: {n} ({c})" for n, c in long_functions(known)]
    print("\n".join(problems) or "layout ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
