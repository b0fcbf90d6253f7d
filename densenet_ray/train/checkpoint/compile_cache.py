"""Compiled graphs that travel with the run, so no machine compiles the same model twice.

``torch.compile``'s on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, shared by the workers of one machine) does not reach
workers on other nodes, nor a restarted attempt that Ray places on a fresh node. So rank 0 saves its compile
artifacts (``torch.compiler.save_cache_artifacts``, PyTorch's "mega-cache":
https://docs.pytorch.org/tutorials/recipes/torch_compile_caching_tutorial.html) into the run directory after its
first step, and every worker of a later attempt loads them (``torch.compiler.load_cache_artifacts``) before it
compiles: its compile then finds every graph in the cache. Artifacts only seed the cache: ones from another PyTorch
version or device simply miss, and the worker compiles as it would have. Loading them unpickles, which runs code:
only from storage the user trusts (local, or remote with ``--trust-storage``); elsewhere the worker compiles afresh.
"""

from __future__ import annotations

import logging

import torch

from densenet_ray.safe_load import TRUST_STORAGE, storage_trusted
from densenet_ray.train.run.directory import COMPILE_ARTIFACTS_FILE, RunDirectory


def load_compile_artifacts(run: RunDirectory, trust_storage: bool = False) -> bool:
    """Seed this process's compile caches from the run directory; whether there was anything to load. Remote
    storage is read only when ``trust_storage`` (one line says the artifacts were left alone otherwise)."""
    if not storage_trusted(run.url, trust_storage):
        if run.storage.exists(COMPILE_ARTIFACTS_FILE):
            print(
                f"not loading the compile artifacts in {run.url} (unpickling them runs code; remote storage is "
                f"trusted with {TRUST_STORAGE}); compiling afresh"
            )
        return False
    data = run.read_compile_artifacts()
    if not data:
        return False
    # PyTorch logs a traceback and returns None for bytes it cannot read; one line of ours says the same.
    torch_logger = logging.getLogger("torch.compiler._cache")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        info = torch.compiler.load_cache_artifacts(data)
    except Exception:  # a corrupt or foreign file must not stop training: compile instead
        info = None
    finally:
        torch_logger.setLevel(level)
    if info is None:
        print(f"ignoring the unreadable compile artifacts in {run.url}; compiling afresh")
    return info is not None


def save_compile_artifacts(run: RunDirectory) -> int:
    """Write the artifacts of what this process compiled into the run directory (atomically); their size in bytes
    (0 when nothing was compiled)."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None or not saved[0]:
        return 0
    run.write_compile_artifacts(saved[0])
    return len(saved[0])
