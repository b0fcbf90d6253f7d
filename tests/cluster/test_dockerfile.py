"""The cluster image's Dockerfile, checked without a container runtime (there is none here): its pins are
pyproject.toml's, every file it copies exists and is in the build context, and it runs as Ray's non-root user."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def _pins() -> dict[str, str]:
    """The exact pins among pyproject.toml's dependencies (``"ray[default,train,tune]==2.60.0"`` as ray: 2.60.0)."""
    text = (ROOT / "pyproject.toml").read_text()
    dependencies = text.split("dependencies = [", 1)[1].split("]\n", 1)[0]
    return dict(re.findall(r'"([a-z]+)(?:\[[^\]]*\])?==([^"]+)"', dependencies))


def test_the_image_pins_what_pyproject_pins() -> None:
    pins = _pins()
    instructions = _instructions()
    (base,) = [argument for keyword, argument in instructions if keyword == "FROM"]
    assert base == f"rayproject/ray:{pins['ray']}-py311-gpu"
    installs = " ".join(argument for keyword, argument in instructions if keyword == "RUN")
    assert f'"torch=={pins["torch"]}"' in installs and f'"torchvision=={pins["torchvision"]}"' in installs
    assert f"ray.__version__ == '{pins['ray']}'" in installs


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {line.removeprefix("!").rstrip("/") for line in ignored if line.startswith("!")}
    assert "*" in ignored  # everything else stays out: venvs, runs, wheels, local files
    copies = [argument for keyword, argument in _instructions() if keyword == "COPY"]
    sources = [source for copy in copies for source in copy.split()[:-1] if not source.startswith("--")]
    assert sources and all((ROOT / source).exists() for source in sources), sources
    assert set(sources) <= kept


def test_no_credentials_and_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"AWS_(ACCESS|SECRET|SESSION)|WANDB_API_KEY|TOKEN", text)
    users = [argument for keyword, argument in _instructions() if keyword == "USER"]
    assert users and users[-1] == "ray"
