"""The package's shape, checked so it stays so: no import circle between its files, no function over 60 lines (the
hand-written autograd ``backward`` excepted), no file over 400 lines, nothing defined after a module's ``if __name__
== "__main__":`` block, and no comment pointing outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "densenet_ray"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400
# A custom autograd Function's backward is one computation written out by hand; splitting it hides the math.
LONG_FUNCTION_ALLOWED = {("models/efficient.py", "backward")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every package module ``path`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_package_files() -> None:
    # A package's __init__ re-exporting its submodules is not a circle of files: submodules never import it back.
    graph = import_graph()
    assert find_cycles(graph) == []


def _long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES and (relative, node.name) not in LONG_FUNCTION_ALLOWED:
                    found.append(f"{relative}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_60_lines() -> None:
    assert _long_functions() == []


def test_no_file_over_400_lines() -> None:
    long_files = [
        f"{path.relative_to(PACKAGE)} ({count})"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (count := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert long_files == []


OUTSIDE_REFERENCE = re.compile(r"\b(RAY|DATA|DENSENET|STYLE)\.md\b|\b(the|this|that) [a-z-]+ issue\b|\bissue \d+\b")


def test_no_reference_to_documents_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if OUTSIDE_REFERENCE.search(line)
    ]
    assert found == []


def _is_main_block(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(value, ast.Constant) and value.value == "__main__" for value in test.comparators)
    )


def _after_main_block(source: str) -> list[int]:
    """Lines of the top-level statements after ``if __name__ == "__main__":``: run as ``python -m``, the block runs
    before they exist, so what it calls there is not defined yet (a NameError only the path that reaches it shows)."""
    body = ast.parse(source).body
    starts = [index for index, node in enumerate(body) if _is_main_block(node)]
    return [node.lineno for node in body[starts[0] + 1 :]] if starts else []


def test_the_main_block_check_finds_a_definition_after_it() -> None:
    source = 'import sys\n\nif __name__ == "__main__":\n    sys.exit(main())\n\n\ndef main():\n    return 0\n'
    assert _after_main_block(source) == [7]
    assert _after_main_block('def main():\n    return 0\n\n\nif __name__ == "__main__":\n    main()\n') == []


def test_nothing_is_defined_after_a_main_block() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in _after_main_block(path.read_text())
    ]
    assert found == []
