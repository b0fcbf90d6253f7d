"""The two stages of the Ray Data pipeline: a shard's samples as rows (:func:`shard_rows`, a task a shard), and the
model applied to batches of them (:class:`ShardPredictor`, an actor that loads the model once)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from densenet_ray.data.format.manifest import ShardInfo
from densenet_ray.data.reading.images import decode_image
from densenet_ray.data.reading.shard_reader import read_shard
from densenet_ray.data.storage import open_storage

if TYPE_CHECKING:
    from densenet_ray.api.classifier import Classifier


@dataclass(frozen=True)
class ModelChoice:
    """The model to apply, as ``densenet_ray.load`` takes it (``trust_program``: a TorchScript or exported-program
    file may load), and how many top classes to keep."""

    source: str
    which: str = "last"
    weights: str | None = None
    model: str | None = None
    dataset: str | None = None
    top: int = 5
    trust_program: bool = False

    def load(self) -> Classifier:
        """The :class:`~densenet_ray.api.classifier.Classifier`."""
        from densenet_ray.api.classifier import load

        return load(self.source, self.which, self.weights, self.model, self.dataset, self.trust_program)


def shard_rows(item: dict[str, Any], data: str) -> Iterator[dict[str, Any]]:
    """Every sample of one shard (``item["shard"]``, a :class:`ShardInfo` as a dict) under ``data``, as rows of
    ``shard``, ``key`` and the encoded ``image``."""
    shard = ShardInfo(**item["shard"])
    for key, image, _ in read_shard(open_storage(data), shard):
        yield {"shard": shard.name, "key": key, "image": image}


class ShardPredictor:
    """``map_batches``'s callable class: each actor loads the model once, then classifies batches of rows. A sample
    that does not decode comes back with its ``error`` and no classes."""

    def __init__(self, choice: ModelChoice, gpu: bool) -> None:
        self.classifier = choice.load()
        if gpu:
            self.classifier.to("cuda")
        self.top = min(choice.top, len(self.classifier.classes))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        prepared, errors = [], []
        for data in batch["image"]:
            try:
                prepared.append(self.classifier.prepare(decode_image(io.BytesIO(data))))
                errors.append("")
            except (OSError, ValueError, Image.DecompressionBombError) as error:  # not an image, truncated, too large
                errors.append(f"does not decode ({str(error).splitlines()[0][:200]})")
        rows = {"shard": batch["shard"], "key": batch["key"], "error": _objects(errors)}
        return {**rows, **self._scores(prepared, errors)}

    def _scores(self, prepared: list[torch.Tensor], errors: list[str]) -> dict[str, Any]:
        """The rows' scores (empty for the rows that did not decode)."""
        classes = self.classifier.classes
        scores = self.classifier.probabilities(torch.stack(prepared)) if prepared else torch.empty(0, len(classes))
        decoded = iter(range(len(prepared)))
        if self.classifier.multi_label:
            per_row = [[] if error else scores[next(decoded)].tolist() for error in errors]
            return {"probabilities": _objects(per_row)}
        best = scores.topk(self.top, dim=1)
        names, values = [], []
        for error in errors:
            index = None if error else next(decoded)
            names.append([] if index is None else [classes[i] for i in best.indices[index].tolist()])
            values.append([] if index is None else best.values[index].tolist())
        return {"top_classes": _objects(names), "top_probabilities": _objects(values)}


def _objects(values: list[Any]) -> np.ndarray:
    """A one-dimensional object array of ``values`` (lists stay lists, even of equal lengths)."""
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        array[index] = value
    return array
