"""Everything checked before any Ray worker starts: data, manifests, run identity, the lease, the checkpoint to
resume from, storage writability. Each failure is one line (:class:`~densenet_ray.errors.UserError` or
:class:`~densenet_ray.data.storage.StorageError`)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

from densenet_ray.data.format.manifest import Manifest, load_manifest
from densenet_ray.data.reading.epoch_plan import check_fills_a_batch
from densenet_ray.data.storage import StorageError
from densenet_ray.errors import UserError
from densenet_ray.models.weights import STATE_FILE
from densenet_ray.printing import PrintLine
from densenet_ray.safe_load import NotPlainWeights, failure, load_weights
from densenet_ray.train.config.dataset_fit import check_family
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.run.checkpoint_manifest import unverified
from densenet_ray.train.run.data_cache import ensure_data
from densenet_ray.train.run.directory import RunDirectory, clean_up
from densenet_ray.train.run.guard import Lease, check_identity, run_identity


@dataclass
class PreparedRun:
    """A run ready for Ray: its config (with the checkpoint fallback, if any), directory and held lease."""

    config: ResolvedConfig
    run: RunDirectory
    lease: Lease


def manifest_fingerprint(manifest: Manifest) -> str:
    """The identity of a split's shards: their names, sample counts and SHA-256, wherever they are stored."""
    digest = hashlib.sha256()
    for shard in manifest.shards:
        digest.update(f"{shard.name}:{shard.samples}:{shard.sha256}\n".encode())
    return digest.hexdigest()[:16]


def check_data(config: ResolvedConfig, print_line: PrintLine = print) -> str:
    """Build the default cache if needed, open both splits' manifests and check one global batch fits; returns
    the training shards' fingerprint."""
    data = config.options
    assert data.data is not None and data.batch_size is not None, "resolve() fills in the data and batch size"
    ensure_data(data, print_line)
    _, train = load_manifest(data.data, "train")
    check_family(data, train)
    _, evaluation = load_manifest(data.data, data.eval_split)
    if config.classes and evaluation.classes != config.classes:
        raise UserError(
            f"--data {data.data}: the {data.eval_split} split's classes differ from the training split's "
            "(build both splits from one source, e.g. with --holdout-per-class)"
        )
    check_fills_a_batch(train.num_samples - len(train.undecodable), data.batch_size, data.data)
    return manifest_fingerprint(train)


def _loads(run: RunDirectory, name: str) -> str | None:
    """None when the checkpoint's training state and RNG states load as plain weights, else why not."""
    files = [f"{name}/{STATE_FILE}"] + [info.name for info in run.storage.list(f"{name}/rng-rank")]
    try:
        read = {file: run.storage.read_bytes(file) for file in files}
        corrupt = unverified(run.storage, name, read)
        if corrupt is not None:
            return corrupt
        loaded = [load_weights(io.BytesIO(read[file]), file) for file in files]
    except NotPlainWeights as refused:  # which file, when it is not the state itself
        which = "" if refused.label.endswith(STATE_FILE) else f"{refused.label.rsplit('/', 1)[-1]} is "
        return f"{which}not a plain weights file: {refused.reason}"
    except Exception as error:  # pickle and zip errors come in many types; a missing file is StorageError
        return failure(error)
    state = loaded[0]
    missing = [key for key in ("model", "optimizer", "epoch", "next_batch") if key not in state]
    return f"its state lacks {', '.join(missing)}" if missing else None


def choose_checkpoint(config: ResolvedConfig, run: RunDirectory, print_line: PrintLine = print) -> ResolvedConfig:
    """The config with a fallback checkpoint when Ray's latest committed one does not load; one line says which was
    skipped and why. An error naming the files when none loads."""
    committed = run.committed_checkpoints()
    problems: list[str] = []
    for name in committed:
        problem = _loads(run, name)
        if problem is None:
            if not problems:
                return config
            print_line(f"skipped checkpoint {committed[0]} ({problems[0]}); resuming from {name}")
            return config.resuming_from(run.checkpoint_url(name), committed[0])
        problems.append(problem)
    if committed:
        files = ", ".join(f"{name}/{STATE_FILE} ({problem})" for name, problem in zip(committed, problems, strict=True))
        raise UserError(f"no checkpoint of run {run.url} loads: {files}; start a new run with another --name")
    return config


@dataclass
class CheckedRun:
    """A run that passed the read-only checks: its directory and identity, not yet claimed."""

    config: ResolvedConfig
    run: RunDirectory
    identity: dict[str, Any]


def check_run(config: ResolvedConfig, print_line: PrintLine = print) -> CheckedRun:
    """The read-only checks (data, manifests, identity): nothing is written to the run directory."""
    fingerprint = check_data(config, print_line)
    run = RunDirectory(config.run_url)
    identity = run_identity(config, fingerprint)
    assert config.options.name is not None, "resolve() names the run"
    try:
        check_identity(run.read_identity(), identity, config.options.name)
    except StorageError as error:
        raise StorageError(f"--storage {config.options.storage} is not readable ({error})") from None
    return CheckedRun(config, run, identity)


def claim_run(checked: CheckedRun, print_line: PrintLine = print) -> PreparedRun:
    """Take the lease, choose the checkpoint to resume from, write ``config.yaml`` (and ``run.json`` for a new run);
    the lease is released again when any of it fails."""
    config, run, identity = checked.config, checked.run, checked.identity
    lease = Lease(run)
    assert config.options.name is not None, "resolve() names the run"
    try:
        lease.acquire()
    except StorageError as error:
        raise StorageError(f"--storage {config.options.storage} is not writable ({error})") from None
    try:
        check_identity(run.read_identity(), identity, config.options.name)  # a driver may have just created it
        clean_up(run, print_line)  # checkpoints a crashed earlier attempt uploaded but Ray never committed
        config = choose_checkpoint(config, run, print_line)
        if run.read_identity() is None:
            run.write_identity(identity)
        run.write_config(config.to_document())
    except BaseException:
        lease.release()
        raise
    lease.start_renewing()
    return PreparedRun(config, run, lease)
