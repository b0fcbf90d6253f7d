"""The rules between training options (each option's own value is checked by
:meth:`~densenet_ray.train.config.options.TrainConfig.check_values`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from densenet_ray.data.reading.epoch_plan import check_batch_fits
from densenet_ray.errors import UserError
from densenet_ray.train.stopping import check_stopping


def check_relations(options: Mapping[str, Any], multi_label: bool | None = None, classes: int | None = None) -> None:
    """What no single option's declaration can check: options that constrain each other. ``options``: every
    training option by name (``TrainConfig.to_dict()``); ``multi_label`` and ``classes``: what the data holds (None:
    not known yet, as before :func:`~densenet_ray.train.config.resolved.resolve`). A one-line :class:`UserError`
    names what conflicts."""
    least, workers, batch = options["min_workers"], options["workers"], options["batch_size"]
    if least is not None and not 1 <= least <= workers:
        raise UserError(f"--workers {least}-{workers}: the least workers must be between 1 and the most")
    if batch is not None:
        check_batch_fits(batch, workers)
    _check_decode(options)
    if options["sync_bn"] and not options["gpu"] and workers > 1:
        # torch.nn.SyncBatchNorm raises on CPU tensors as soon as it would synchronise.
        raise UserError("--sync-bn needs --gpu: PyTorch's SyncBatchNorm synchronises GPU tensors only")
    if options["init_from"] and options["pretrained"]:
        raise UserError("give --init-from FILE or --pretrained, not both")
    check_stopping(options["early_stop"], bool(options["ema"]), multi_label, classes)
    if options["freeze_epochs"] and not (options["init_from"] or options["pretrained"]):
        raise UserError(
            f"--freeze-epochs {options['freeze_epochs']} keeps the backbone as loaded: give --init-from or --pretrained"
        )


def _check_decode(options: Mapping[str, Any]) -> None:
    """``--decode gpu`` decodes ImageNet batches on the workers' GPUs, bypassing per-sample augmentation."""
    if options["decode"] != "gpu":
        return
    dataset, gpu = options["dataset"], options["gpu"]
    if dataset != "imagenet" or not gpu:
        raise UserError(
            f"--decode gpu decodes ImageNet JPEGs on the workers' GPUs; it needs --dataset imagenet and --gpu "
            f"(got {dataset}{' with --gpu' if gpu else ' without --gpu'}): use --decode cpu"
        )
    policy = options["augment_policy"]
    if policy != "none" or options["random_erasing"]:
        chosen = policy if policy != "none" else "random-erasing"
        raise UserError(
            f"--{chosen} augments one image at a time in the loader processes, which --decode gpu bypasses: use "
            "--decode cpu"
        )
