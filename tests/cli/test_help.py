"""Every flag of every command has a help line, and the training flags are defined once for ``train`` and ``tune``."""

from __future__ import annotations

import argparse

from densenet_ray.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: str = "densenet-ray"):  # noqa: ANN202 - a generator
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, f"{path} {name}")


def test_every_flag_has_a_help_line() -> None:
    missing = [
        f"{path} {action.option_strings[0]}"
        for path, parser in _commands(build_parser())
        for action in parser._actions
        if action.option_strings and action.dest != "help" and not (action.help or "").strip()
    ]
    assert missing == []


def test_train_and_tune_share_the_training_flags() -> None:
    commands = dict(_commands(build_parser()))

    def flags(path: str) -> dict[str, argparse.Action]:
        return {option: action for action in commands[path]._actions for option in action.option_strings}

    train, tune = flags("densenet-ray train cifar"), flags("densenet-ray tune wide")
    for flag in ("--lr", "--batch-size", "--precision", "--memory-efficient", "--loader-workers", "--no-augment"):
        assert (train[flag].help, train[flag].type, train[flag].dest) == (
            tune[flag].help,
            tune[flag].type,
            tune[flag].dest,
        )
    assert tune["--workers-per-trial"].dest == "workers" and "--name" in tune and "--local" in train


def test_the_parser_imports_neither_torch_nor_ray_so_help_is_instant() -> None:
    """``densenet-ray --help`` took 3.6 s when building the parser imported PyTorch (for the export formats, the
    checkpoint choices and the model registry); each command imports what it needs when it runs."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from densenet_ray.cli import build_parser\n"
        "build_parser()\n"
        "assert not {'torch', 'torchvision', 'ray'} & set(sys.modules), sorted(sys.modules)\n"
        "import densenet_ray.models as models\n"
        "assert 'torch' not in sys.modules and models.list_models()[0] == 'densenet40_k12'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_evaluate_precision_is_checked_by_the_option_it_names(capsys) -> None:
    """``evaluate --precision`` lists the training option's choices and a bad one is that option's one line (exit 1),
    refused before any checkpoint is read."""
    from densenet_ray.cli import main

    action = next(a for a in dict(_commands(build_parser()))["densenet-ray evaluate"]._actions if a.dest == "precision")
    assert action.metavar == "{auto,fp32,bf16,fp16}"
    assert main(["evaluate", "/no/such/run", "--precision", "fp8"]) == 1
    assert capsys.readouterr().err.strip() == "error: --precision 'fp8' is not one of: auto, fp32, bf16, fp16"
