"""The documentation site's generated pages are current and complete: every command and flag from the parser, every
declared training option, every exported API name, every registered model with its exact count and every field of
the run's records; and the pictures' captures draw what the driver and the dashboard draw."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONTENT = DOCS / "content"


def docs_module(name: str) -> ModuleType:
    """``docs/<name>.py``, which is a script beside the pages, not part of the package."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_every_generated_page_is_current() -> None:
    """A flag, option, model, record field or API name changed without ``make docs`` fails here (and in CI's
    ``docs/generate.py --check``)."""
    stale = [path.name for path, text in docs_module("generate").generated_pages().items() if path.read_text() != text]
    assert not stale, f"stale generated pages: {stale}; run `make docs`"


def test_the_commands_page_has_every_flag_of_every_command() -> None:
    from densenet_ray.cli import build_parser
    from densenet_ray.cli.reference import commands

    page = (CONTENT / "reference" / "commands.md").read_text()
    for path, parser in commands(build_parser()):
        group = any(isinstance(action, argparse._SubParsersAction) for action in parser._actions)
        assert group or f"`{path}`" in page, path  # a group's subcommands carry its flags
        for action in parser._actions:
            for flag in set(action.option_strings) - {"-h", "--help"}:
                assert f"`{flag}`" in page, f"{path} {flag}"


def test_the_options_page_has_every_declared_option_with_its_flags_key_and_help() -> None:
    """Each option's row names exactly the flags the parser takes (``--no-augment``, never an ``--augment`` that
    does not exist)."""
    from densenet_ray.cli.train_options import option_flags
    from densenet_ray.train.config.options import training_options

    page = (CONTENT / "reference" / "options.md").read_text()
    for option in training_options():
        row = next((line for line in page.splitlines() if f"`{option.group}.{option.key}`" in line), "")
        flags = [flag for flag, _ in option_flags(option)]
        assert row.startswith("| " + ", ".join(f"`{flag}`" for flag in flags) + " |"), (option.name, flags, row)
        assert option.declaration.help.split("(")[0][:40] in row, option.name


def test_the_api_page_documents_every_name_the_package_exports() -> None:
    import densenet_ray

    page = (CONTENT / "reference" / "api.md").read_text()
    assert set(densenet_ray._EXPORTS) | {"__version__"} == set(densenet_ray.__all__)
    for name, module in densenet_ray._EXPORTS.items():
        assert f"::: {module}.{name}\n" in page, name


def test_the_models_page_has_every_registered_model_with_its_exact_parameter_count() -> None:
    from densenet_ray.models.profile import profile_model
    from densenet_ray.models.registry import list_models

    page = (CONTENT / "models.md").read_text()
    for name in list_models():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {profile_model(name).params:,} |" in row, name
    assert "| `densenet_bc100_k12` | 5.92 | 4.51 | 24.15 | 22.27 | 1.76 | paper Table 2 |" in page


def test_the_files_page_has_every_field_of_every_record() -> None:
    from densenet_ray.data.format.manifest import Manifest, ShardInfo
    from densenet_ray.train.run import record_shapes

    page = (CONTENT / "reference" / "files.md").read_text()
    shapes = [Manifest, ShardInfo] + [
        getattr(record_shapes, name) for name in dir(record_shapes) if name.endswith("Record")
    ]
    for shape in shapes:
        for field in dataclasses.fields(shape):
            assert re.search(rf"^\| `{field.name}` \|", page, re.MULTILINE), f"{shape.__name__}.{field.name}"


def test_every_field_of_every_record_has_a_meaning_of_its_own() -> None:
    """No field's meaning is empty, and no meaning holds another field's (a docstring's entries run together)."""
    from densenet_ray.data.format.manifest import Manifest, ShardInfo
    from densenet_ray.train.run import record_shapes

    generate = docs_module("generate")
    shapes = [Manifest, ShardInfo] + [
        getattr(record_shapes, name) for name in dir(record_shapes) if name.endswith("Record")
    ]
    for shape in shapes:
        notes = generate._field_notes(shape)
        names = [field.name for field in dataclasses.fields(shape)]
        for name in names:
            assert notes[name], f"{shape.__name__}.{name} has no meaning on the files page"
            others = [other for other in names if other != name and re.search(rf"\b{other}: ", notes[name])]
            assert not others, f"{shape.__name__}.{name}'s meaning holds {others}'s"


def test_the_terminal_picture_draws_the_epoch_lines_and_the_drivers_own_bar() -> None:
    from densenet_ray.train.run.directory import ProgressRecord

    pictures = docs_module("pictures")
    lines = ["started on 2 worker(s) at the start of epoch 1"]
    lines.append("epoch 2 [7/50]: loss 2.1, 150.0 img/s, epoch ETA 0.1 min")
    lines.append("epoch 1/6: loss 2.3876, test error 90.00 % (best 90.00 %), 185.4 img/s, run ETA 0.2 min")
    report = ProgressRecord(epoch=2, batch=25, batches=50, loss=2.1638, images_per_s=172.6, eta_seconds=6.0, time=0)
    text = pictures.terminal_capture(lines, report).export_text()
    assert "started on 2 worker(s)" in text and "epoch 1/6: loss 2.3876" in text
    assert "[7/50]" not in text  # in a terminal the in-epoch lines are the bar
    assert re.search(r"epoch 2 [━╺╸]+ +25/50 batches  172\.6 img/s  loss 2\.1638 epoch ETA 0:06", text), text


@pytest.mark.parametrize("run", ["run-from-9912cdd"])
def test_the_dashboard_picture_shows_a_saved_run_from_storage(run: str) -> None:
    runs = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
    console = docs_module("pictures").dashboard_capture([str(runs)])
    text = console.export_text()
    assert "Training runs" in text and run in text
    assert "<svg" in console.export_svg(title="densenet-ray dashboard")


REPOSITORY = DOCS.parent
READ_BY_USERS = [REPOSITORY / "README.md", REPOSITORY / "CHANGELOG.md", *sorted(CONTENT.rglob("*.md"))]

# (pattern, why a user's page may not say it): paths outside the repository and words only the team knows
TEAM_WORDS = [
    (r"\.\./shared", "a path outside the repository"),
    (r"(?i)\bwaves?\b", "the team's name for a stretch of work"),
    (r"(?i)\bseed's\b", "the project's origin, as the team calls it (a random seed is fine; `--seed` too)"),
    (r"\b(RAY|DENSENET|DATA|STYLE)\.md\b", "an internal note the user does not have"),
]


def _page_name(page: Path) -> str:
    return str(page.relative_to(REPOSITORY))


@pytest.mark.parametrize("page", READ_BY_USERS, ids=_page_name)
def test_no_page_names_a_path_outside_the_repository_or_a_word_only_the_team_knows(page: Path) -> None:
    found = [
        f"{_page_name(page)}:{number}: {match.group(0)!r} ({why})"
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for pattern, why in TEAM_WORDS
        for match in re.finditer(pattern, line)
    ]
    assert not found, "\n".join(found)


LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S")
FENCE = re.compile(r"^\s*(```|~~~)")
# lines a list may follow directly: a heading, a table row, HTML or a comment, an included snippet, an admonition
BLOCK_LINE = re.compile(r"^\s*(?:#|\||<|--8<--|!!!|\?\?\?)")


def lists_without_a_blank_line_before(text: str) -> list[int]:
    """The line numbers of list items that directly follow a paragraph's line, outside code fences: Python-Markdown
    (MkDocs) reads them as the paragraph's text, so the list renders as one run-on paragraph."""
    found, fence, in_list, paragraph = [], None, False, False
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence is not None or opened:
            if fence is None:
                fence = opened.group(1)
            elif line.strip().startswith(fence):
                fence = None
            in_list = paragraph = False
            continue
        if not line.strip():
            in_list = paragraph = False
        elif LIST_ITEM.match(line):
            if paragraph:
                found.append(number)
            in_list, paragraph = True, False
        elif not in_list:  # a list item's continuation lines belong to the list
            paragraph = not BLOCK_LINE.match(line)
    return found


def test_the_list_check_finds_a_list_glued_to_its_paragraph_and_nothing_else() -> None:
    text = "Intro:\n- a\n- b\n\nFine:\n\n- a\n  more of a\n- b\n\n```text\nx\n- not a list\n```\n## H\n- c\n1. d\n"
    assert lists_without_a_blank_line_before(text) == [2]
    assert lists_without_a_blank_line_before("Steps:\n1. one\n2. two\n") == [2]


@pytest.mark.parametrize("page", READ_BY_USERS, ids=_page_name)
def test_every_list_has_a_blank_line_before_it(page: Path) -> None:
    found = lists_without_a_blank_line_before(page.read_text())
    assert not found, f"{_page_name(page)}: a list right after a paragraph line (add a blank line) at line(s) {found}"


def _printed_messages() -> list[re.Pattern[str]]:
    """Every string the package can print, as a pattern: an f-string's fields match anything (f-strings with
    little text of their own, such as ``f"{name}: {value}"``, would match any line and are left out)."""
    patterns = []
    for path in sorted((REPOSITORY / "densenet_ray").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                texts = [v.value for v in node.values if isinstance(v, ast.Constant)]
                if sum(len(text) for text in texts) < 20:
                    continue
                parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".*" for v in node.values]
                patterns.append(re.compile("".join(parts), re.DOTALL))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 20:
                patterns.append(re.compile(re.escape(node.value)))
    return patterns


def test_the_troubleshooting_page_quotes_each_error_as_the_code_prints_it() -> None:
    """Every ``error:`` line the page shows is one the package prints (its fields filled in), so a reworded
    message fails here until the page follows."""
    page = (CONTENT / "guides" / "troubleshooting.md").read_text()
    quoted = [
        line.removeprefix("error: ")
        for block in re.findall(r"```text\n(.*?)```", page, re.DOTALL)
        for line in block.splitlines()
        if line.startswith("error: ")
    ]
    assert len(quoted) >= 10, quoted
    patterns = _printed_messages()
    unknown = [line for line in quoted if not any(pattern.fullmatch(line) for pattern in patterns)]
    assert not unknown, "\n".join(unknown)
