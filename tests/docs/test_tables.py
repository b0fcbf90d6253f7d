"""Every table of benchmark figures in the documentation is read here from the JSON the benchmark wrote
(``benchmarks/results/``). Where the benchmark script prints the table (``--markdown``), its own function renders it
from the JSON, no benchmark re-run: the page holds that table verbatim, or, where the page words a row or a column its
own way, the same cells row by row. A table no script prints is built here from the JSON's values, written as the
page writes them. The figures quoted in prose are checked in ``test_figures.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPTS = REPOSITORY / "benchmarks"
RESULTS = SCRIPTS / "results"
BENCHMARKS = "docs/content/benchmarks.md"

Rows = list[list[str]]


def script(name: str) -> ModuleType:
    """``benchmarks/<name>.py``, a script that imports its neighbours by their bare names, as it does when run."""
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(SCRIPTS / f"{name}.py"):
        return sys.modules[name]
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def results(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def rendered(name: str, json_file: str) -> str:
    """What ``benchmarks/<name>.py --markdown`` prints for ``json_file``."""
    return script(name).markdown(results(json_file))


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split("|")]


def tables(text: str) -> list[Rows]:
    """The markdown tables in ``text``, each as its rows of cells, header first, the ``|---|`` line left out."""
    found: list[Rows] = []
    current: Rows = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                current.append(cells(line))
        elif current:
            found.append(current)
            current = []
    return found


def page_table(page: str, after: str) -> Rows:
    """The first table on ``page`` after the text ``after``."""
    text = (REPOSITORY / page).read_text()
    assert after in text, f"{page} no longer says {after!r}"
    return tables(text[text.index(after) :])[0]


def plain(cell: str) -> str:
    """A cell without its bold."""
    return cell.replace("**", "").strip()


def script_rows(
    markdown: str, first_header: str, labels: dict[str, str], columns: tuple[int, ...], write: Callable = str
) -> Rows:
    """The rows of the script's table whose first header cell is ``first_header``, in the page's words: ``labels``
    maps the page's row label to the script's, ``columns`` picks the script's cells for the page's columns after the
    label and ``write`` turns a script cell into the page's form."""
    (table,) = [table for table in tables(markdown) if table[0][0] == first_header]
    by_label = {row[0]: row for row in table[1:]}
    return [
        [page_label, *(write(by_label[label][column]) for column in columns)] for page_label, label in labels.items()
    ]


@dataclass(frozen=True)
class Table:
    """A page's table, found as the first after the text ``after``; ``rows`` gives its body as it should read, and
    ``header`` the header where its words hold figures too. ``columns`` are the page's columns compared (all when
    empty): a column of flags or words the page adds to is left out."""

    name: str
    page: str
    after: str
    rows: Callable[[], Rows]
    columns: tuple[int, ...] = ()
    header: Callable[[], list[str]] | None = field(default=None)


def _pick(row: list[str], columns: tuple[int, ...]) -> list[str]:
    return [row[column] for column in columns] if columns else row


# The speed tables: the script labels a row by its configuration's name; the page spells the configuration out.
SPEED_LABELS = {
    "speed-cpu.json": {
        "torchvision fp32, NCHW, eager": "torchvision fp32",
        "ours `--precision fp32 --no-channels-last --no-compile`": "ours fp32",
        "torchvision best: bf16 autocast, channels_last, compiled": "torchvision best",
        "ours default (auto here: bf16 autocast, channels_last, compiled)": "ours default",
        "ours default, `--memory-efficient`": "ours default, memory-efficient",
    },
    "speed-cpu-amx.json": {
        "torchvision fp32, NCHW, eager": "torchvision fp32",
        "ours `--precision fp32 --no-channels-last --no-compile`": "ours fp32",
        "torchvision best: bf16 autocast, channels_last, compiled": "torchvision best",
        "ours default": "ours default",
        "ours default, `--memory-efficient`": "ours default, memory-efficient",
    },
    "speed-cpu-avx2.json": {
        "torchvision fp32, NCHW, eager": "torchvision fp32",
        "ours fp32, NCHW, eager": "ours fp32",
        "ours fp32, channels_last, eager (what `auto` now picks on such a CPU)": "ours fp32 channels_last eager",
        "ours fp32, NCHW, compiled": "ours fp32 NCHW compiled",
        "torchvision fp32, channels_last, compiled": "torchvision best",
        "ours fp32, channels_last, compiled": "ours default",
        "ours fp32, channels_last, compiled, `--memory-efficient`": "ours default, memory-efficient",
    },
}
SPEED_AFTER = {
    "speed-cpu.json": "`make bench-speed` runs",
    "speed-cpu-amx.json": "**On an Intel Xeon with AMX-BF16**",
    "speed-cpu-avx2.json": "**Without native bf16**",
}
DEMO_AFTER = {
    "demo-speed-cpu.json": "**The demo's job**",
    "demo-speed-cpu-amx.json": "The same command on an Intel Xeon",
}
DEMO_LABELS = {"fp32, as before `--precision`": "fp32 (before)", "default": "default"}
EPOCHS_LABELS = {
    "local samples/s": "local samples/s",
    "S3 samples/s (moto on 127.0.0.1)": "s3 samples/s",
    "S3 bytes per epoch": "s3 bytes per epoch",
    "3 ranks x 2: S3 bytes per epoch, all ranks": "3 x 2: s3 bytes per epoch",
    "3 ranks x 2: batch class entropy, bits (uniform permutation of the same labels)": (
        "3 x 2: batch class entropy, bits (uniform permutation)"
    ),
}


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def learning_by_precision() -> Rows:
    runs = results("learning-cpu.json")["learning_by_precision"]
    auto, fp32 = runs["auto"]["curve"], runs["fp32"]["curve"]
    return [
        [str(a["epoch"]), _percent(a["test_error"]), _percent(f["test_error"]), f"{a['images_per_s']:.1f}"]
        + [f"{f['images_per_s']:.1f}"]
        for a, f in zip(auto, fp32, strict=True)
    ]


def learning_by_recipe() -> Rows:
    recipes = results("learning-recipes-cpu-amx.json")["learning_by_recipe"]
    ema_0999 = results("learning-ema0999-cpu-amx.json")["learning"]["curve"]
    smoothed_curve = recipes["--label-smoothing 0.1"]["curve"]
    curves = zip(recipes[""]["curve"], recipes["--ema"]["curve"], ema_0999, smoothed_curve, strict=True)
    return [
        [str(plain_run["epoch"]), _percent(plain_run["test_error"]), _percent(ema["test_error"])]
        + [_percent(ema["ema_test_error"]), _percent(short["ema_test_error"]), _percent(smoothed["test_error"])]
        for plain_run, ema, short, smoothed in curves
    ]


def batch_inference() -> Rows:
    data = results("batch-inference-cpu.json")
    labels = {
        f"one-process `predict` on the shard files ({data['torch_threads']} PyTorch threads)": "one process",
        "`predict --out`, Ray Data, 1 actor": "batch, 1 actor(s)",
        "`predict --out`, Ray Data, 2 actors": "batch, 2 actor(s)",
    }
    return [
        [label, f"{data['images_per_s'][key]:.1f}", f"{data['ratio_vs_one_process'][key]:.2f}x"]
        for label, key in labels.items()
    ]


def preemption() -> Rows:
    step = results("preemption-check-cpu.json")["median_step_seconds"]
    labels = {"no checks": "plain", "the watch (every ~2 s)": "watched", "a check after every step": "every step"}
    return [[label, f"{step[key]:.3f}"] for label, key in labels.items()]


def transfer_header() -> list[str]:
    data = results("transfer-cpu.json")
    task = data["task"]["classes"]
    images = len(task) * data["task"]["images_per_class"]
    return [
        f"transfer: {images} images of {len(task)} CIFAR-10 classes ({', '.join(task)}), "
        f"{data['budget']['epochs']} epochs",
        "final test error",
        "best",
    ]


def own_data_header() -> list[str]:
    data = results("own-data-cpu.json")
    return [
        f"input pipeline, {data['images']:,} own {data['image_size']}-pixel JPEGs, batch {data['batch_size']}, "
        f"{data['loader_workers']} loader processes",
        "images/s",
        "ratio",
    ]


TABLES = [
    *[
        Table(
            f"performance {json_file}",
            BENCHMARKS,
            SPEED_AFTER[json_file],
            lambda json_file=json_file: script_rows(
                rendered("speed", json_file), "configuration", SPEED_LABELS[json_file], (1, 2, 3, 4)
            ),
        )
        for json_file in SPEED_LABELS
    ],
    *[
        Table(
            f"demo job {json_file}",
            BENCHMARKS,
            after,
            lambda json_file=json_file: script_rows(
                rendered("train", json_file), "variant", DEMO_LABELS, (1, 2, 3), lambda cell: cell.replace(", ", " / ")
            ),
            columns=(0, 2, 3),  # the flags column adds words of its own
        )
        for json_file, after in DEMO_AFTER.items()
    ],
    Table(
        "exact epochs",
        BENCHMARKS,
        "## Exact epochs",
        lambda: script_rows(
            rendered("epochs", "epochs-cpu-amx.json"), "measure (1 x 2 unless named)", EPOCHS_LABELS, (1, 2, 3)
        ),
    ),
    Table(
        "transfer",
        BENCHMARKS,
        "## Your own images",
        lambda: script_rows(
            rendered("transfer", "transfer-cpu.json"),
            "run",
            {
                "fine-tuned from a run pretrained on the 5 other classes (5,000 images, 15 epochs: 29.7 % there)": (
                    "fine-tuned"
                ),
                "the same model and budget from scratch": "from scratch",
            },
            (1, 2),
        ),
        header=transfer_header,
    ),
    Table(
        "own-data input pipeline",
        BENCHMARKS,
        "(`python benchmarks/transfer.py`",
        lambda: script_rows(
            rendered("own_data", "own-data-cpu.json"),
            "pipeline",
            {
                "densenet-ray shards (`train images`: `torchvision.io` decoding)": "densenet-ray",
                "torchvision `ImageFolder` + `DataLoader` (its default PIL loader)": "torchvision",
                "torchvision `ImageFolder` + `DataLoader`, a `torchvision.io` loader": (
                    "torchvision, torchvision.io loader"
                ),
            },
            (1, 2),
        ),
        header=own_data_header,
    ),
    Table("learning check by precision", BENCHMARKS, "--precision fp32` (same schedule", learning_by_precision),
    Table("learning check by recipe", BENCHMARKS, "## Recipes: the learning check", learning_by_recipe),
    Table("preemption checks", BENCHMARKS, "## Preemption checks", preemption),
    Table("batch inference", BENCHMARKS, "## Batch inference", batch_inference),
]

# Tables the page holds exactly as the script prints them: the script, its JSON, the text the page quotes from the
# printout (the whole printout, or the first table of it).
VERBATIM = [
    ("model", "model-cpu.json", lambda markdown: markdown),
    ("data", "data-cpu.json", lambda markdown: markdown),
    ("train", "train-cpu.json", lambda markdown: markdown.split("\n\n")[1]),
]


@pytest.mark.parametrize("table", TABLES, ids=lambda table: table.name)
def test_each_benchmark_table_holds_what_its_json_holds(table: Table) -> None:
    found = page_table(table.page, table.after)
    body = [_pick([plain(cell) for cell in row], table.columns) for row in found[1:]]
    assert body == [_pick(row, table.columns) for row in table.rows()], f"{table.page}: the {table.name} table"
    if table.header is not None:
        assert found[0] == table.header(), f"{table.page}: the {table.name} table's header"


@pytest.mark.parametrize(("name", "json_file", "quoted"), VERBATIM, ids=[row[1] for row in VERBATIM])
def test_the_page_holds_the_scripts_own_table(name: str, json_file: str, quoted: Callable[[str], str]) -> None:
    expected = quoted(rendered(name, json_file))
    assert expected.count("\n|") >= 2, expected
    assert expected in (REPOSITORY / BENCHMARKS).read_text(), f"{BENCHMARKS} should hold {name}.py's table:\n{expected}"


WORDS = {
    "bf16": ("precision", "bf16"),
    "fp32": ("precision", "fp32"),
    "NCHW": ("channels_last", False),
    "channels_last": ("channels_last", True),
    "eager": ("compile", False),
    "compiled": ("compile", True),
}


@pytest.mark.parametrize("json_file", SPEED_LABELS)
def test_the_performance_tables_name_the_configuration_each_row_measured(json_file: str) -> None:
    """A page label that spells out a precision, memory format or compile says what the JSON's row ran."""
    configurations = {row["label"]: row for row in results(json_file)["results"]}
    for page_label, label in SPEED_LABELS[json_file].items():
        configuration = configurations[label]
        words = re.findall(r"[\w-]+", page_label.split("(what")[0].split("(auto here: ")[-1])
        for word in words:
            if word in WORDS:
                key, value = WORDS[word]
                assert configuration[key] == value, f"{json_file}: {page_label!r} but {label!r} ran {key}={value}"
        assert configuration["memory_efficient"] == ("--memory-efficient" in page_label), page_label


def test_a_table_that_differs_from_its_json_fails() -> None:
    """The check reads the cells: the same table with one figure changed no longer matches."""
    (table,) = [table for table in TABLES if table.name == "preemption checks"]
    rows = table.rows()
    rows[0][1] = "0.331"
    found = page_table(table.page, table.after)
    assert [[plain(cell) for cell in row] for row in found[1:]] != rows
    assert [[plain(cell) for cell in row] for row in found[1:]] == table.rows()
