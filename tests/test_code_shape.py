"""The package's shape, checked so it stays so: no import circle between its files, no two folders importing each
other, no function over 60 lines (the hand-written autograd ``backward`` excepted), no method over 40 lines, no class
over 120 lines, no file over 400 lines, nothing defined after a module's ``if __name__ == "__main__":`` block, and no
comment pointing outside the repository."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "densenet_ray"
MAX_FUNCTION_LINES = 60
MAX_METHOD_LINES = 40
MAX_CLASS_LINES = 120
MAX_FILE_LINES = 400
# A custom autograd Function's backward is one computation written out by hand; splitting it hides the math.
LONG_FUNCTION_ALLOWED = {("models/efficient.py", "backward")}
# Classes over the limit until they are split; an entry that no longer is over it must go (the test says so).
LONG_CLASS_ALLOWED = {("dashboard/poll.py", "Poller"), ("data/storage/s3reader.py", "ResumableS3Reader")}
# Folders that import each other until they are untangled; likewise, an entry no longer found must go.
MUTUAL_FOLDERS_ALLOWED: set[tuple[str, str]] = set()


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


def _folders(module: str) -> list[str]:
    """The subpackages ``module`` lies in, outermost first (a package's ``__init__`` lies in the package itself); the
    package's top-level modules lie in none."""
    parts = module.split(".")
    inside = parts if (PACKAGE.parent.joinpath(*parts) / "__init__.py").exists() else parts[:-1]
    return [".".join(inside[:end]) for end in range(2, len(inside) + 1)]


def _nested(one: str, other: str) -> bool:
    return one == other or one.startswith(other + ".") or other.startswith(one + ".")


def mutual_folders(graph: dict[str, set[str]], folders: Callable[[str], list[str]] = _folders) -> list[tuple[str, str]]:
    """Every pair of folders, neither inside the other, where a module in each (or in a folder inside it) imports a
    module in the other. A folder and one inside it are one unit and may import each other."""
    edges = {
        (mine, theirs)
        for source, targets in graph.items()
        for target in targets
        for mine in folders(source)
        for theirs in folders(target)
        if not _nested(mine, theirs)
    }
    return sorted((one, other) for one, other in edges if one < other and (other, one) in edges)


def test_the_folder_check_finds_folders_importing_each_other() -> None:
    def folders(module: str) -> list[str]:
        parts = module.split(".")[:-1]
        return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]

    graph = {"a.x.one": {"b.two"}, "b.two": {"a.y.three"}, "a.x.four": {"a.y.three"}, "a.y.three": {"a.x.four"}}
    assert mutual_folders(graph, folders) == [("a", "b"), ("a.x", "a.y")]
    assert mutual_folders({"a.one": {"a.b.two"}, "a.b.two": {"a.one"}, "c.d": {"a.one"}}, folders) == []


def test_no_two_folders_import_each_other() -> None:
    found = set(mutual_folders(import_graph()))
    assert found - MUTUAL_FOLDERS_ALLOWED == set(), "folders that import each other"
    assert MUTUAL_FOLDERS_ALLOWED - found == set(), "untangled: remove them from MUTUAL_FOLDERS_ALLOWED"


def _length(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return (node.end_lineno or node.lineno) - start + 1


def _long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = _length(node)
                if length > MAX_FUNCTION_LINES and (relative, node.name) not in LONG_FUNCTION_ALLOWED:
                    found.append(f"{relative}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_60_lines() -> None:
    assert _long_functions() == []


def long_classes_and_methods(tree: ast.AST, relative: str) -> tuple[list[str], list[str]]:
    """The classes of ``tree`` over :data:`MAX_CLASS_LINES` and the methods (functions in a class body) over
    :data:`MAX_METHOD_LINES`, as ``relative:line Name (N lines)``, the allowed ones left out."""
    classes, methods = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        if _length(node) > MAX_CLASS_LINES and (relative, node.name) not in LONG_CLASS_ALLOWED:
            classes.append(f"{relative}:{node.lineno} {node.name} ({_length(node)} lines)")
        methods += [
            f"{relative}:{item.lineno} {node.name}.{item.name} ({_length(item)} lines)"
            for item in node.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            and _length(item) > MAX_METHOD_LINES
            and (relative, item.name) not in LONG_FUNCTION_ALLOWED
        ]
    return classes, methods


def _method(name: str, lines: int) -> str:
    return f"    def {name}(self):\n" + "".join(f"        x = {i}\n" for i in range(lines - 1))


def test_the_class_check_finds_a_long_class_and_a_long_method() -> None:
    def a_class(name: str, last_method_lines: int) -> str:
        # its line, methods of 40 and 41 lines, twelve of 2 lines (each with a blank line after), and the last one
        methods = _method("fits", 40) + _method("long", 41) + (_method("short", 2) + "\n") * 12
        return f"class {name}:\n" + methods + _method("last", last_method_lines) + "\n\n"

    tree = ast.parse(a_class("Fits", 2) + a_class("Long", 3))
    classes, methods = long_classes_and_methods(tree, "shape.py")
    assert classes == ["shape.py:123 Long (121 lines)"]  # Fits has 120
    assert methods == ["shape.py:42 Fits.long (41 lines)", "shape.py:164 Long.long (41 lines)"]


def test_no_class_over_120_lines_and_no_method_over_40() -> None:
    classes, methods = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        found = long_classes_and_methods(ast.parse(path.read_text()), relative)
        classes += found[0]
        methods += found[1]
    assert classes == [] and methods == []
    still_long = {
        (path, name)
        for path, name in LONG_CLASS_ALLOWED
        for node in ast.walk(ast.parse((PACKAGE / path).read_text()))
        if isinstance(node, ast.ClassDef) and node.name == name and _length(node) > MAX_CLASS_LINES
    }
    assert still_long == LONG_CLASS_ALLOWED, "no longer over the limit: remove them from LONG_CLASS_ALLOWED"


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
