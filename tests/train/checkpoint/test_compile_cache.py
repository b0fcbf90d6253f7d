"""Compile artifacts in the run directory: a process with an empty local cache recompiles nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from densenet_ray.train.checkpoint.compile_cache import load_compile_artifacts
from densenet_ray.train.run.directory import COMPILE_ARTIFACTS_FILE, RunDirectory

# One compiled training step of a small DenseNet-BC in a fresh process; prints what the compile found in the cache.
STEP = """
import sys, torch
from torch._dynamo.utils import counters
from densenet_ray.models import create_model
from densenet_ray.train.checkpoint.compile_cache import load_compile_artifacts, save_compile_artifacts
from densenet_ray.train.run.directory import RunDirectory
run, action = RunDirectory(sys.argv[1]), sys.argv[2]
loaded = load_compile_artifacts(run) if action == "load" else False
torch.manual_seed(0)
model = torch.compile(create_model("densenet_bc100_k12", depth=10))
model(torch.randn(4, 3, 32, 32)).sum().backward()
saved = save_compile_artifacts(run) if action == "save" else 0
inductor = counters["inductor"]
print(loaded, saved, inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"])
"""


def _step(run_url: str, action: str, cache: Path) -> list[str]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_FX_GRAPH_CACHE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", STEP, run_url, action], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


@pytest.mark.slow
def test_a_fresh_machine_compiles_nothing_after_loading_the_runs_artifacts(tmp_path: Path) -> None:
    run_url = str(tmp_path / "run")
    os.makedirs(run_url)
    loaded, saved, hits, misses = _step(run_url, "save", tmp_path / "cache-a")
    assert loaded == "False" and int(saved) > 0 and int(misses) >= 2 and int(hits) == 0  # forward and backward
    assert (tmp_path / "run" / COMPILE_ARTIFACTS_FILE).stat().st_size == int(saved)
    loaded, _, hits, misses = _step(run_url, "load", tmp_path / "cache-b")  # an empty local cache: another machine
    assert loaded == "True" and int(hits) >= 2 and int(misses) == 0


def test_unreadable_artifacts_are_ignored_with_a_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = RunDirectory(str(tmp_path))
    assert load_compile_artifacts(run) is False  # none yet
    run.write_compile_artifacts(b"not a cache")
    assert load_compile_artifacts(run) is False
    assert "compile artifacts" in capsys.readouterr().out
    assert run.read_compile_artifacts() == b"not a cache"  # ignored, not deleted or rewritten
