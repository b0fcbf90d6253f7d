"""``densenet-ray train``'s option handling in one process (no Ray): a YAML value of the wrong type, an unknown
key, and a bug that is not a user mistake keeping its traceback."""

from __future__ import annotations

import pytest

from densenet_ray.cli import main


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('depth: "forty"\n', "error: depth: 'forty' in --config {path} must be an integer"),
        ("epoks: 3\n", "error: unknown option(s) in --config {path}: epoks"),
        ("- 1\n- 2\n", "error: --config {path} must hold a mapping of option: value"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path, capsys, text: str, message: str) -> None:
    path = _config(tmp_path, text)
    assert main(["train", "cifar", "--config", path, "--data", str(tmp_path)]) == 1
    assert capsys.readouterr().err == message.format(path=path) + "\n"


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch) -> None:
    from densenet_ray.train.config import resolved

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug, not a user mistake")

    monkeypatch.setattr(resolved, "resolve", broken)
    with pytest.raises(ValueError, match="a bug, not a user mistake"):
        main(["train", "cifar", "--data", str(tmp_path)])
