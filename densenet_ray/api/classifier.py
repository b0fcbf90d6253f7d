"""``dr.load(...)``: a trained model (a run, a checkpoint, or an export) ready to classify images, and its
predictions."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL.Image import DecompressionBombError
from torchvision.transforms.v2.functional import pil_to_tensor

from densenet_ray.data.format.image_check import UNREADABLE
from densenet_ray.data.reading.images import RefusedMember, image_opener, image_paths
from densenet_ray.data.reading.input_spec import InputSpec
from densenet_ray.data.reading.transforms import for_dataset
from densenet_ray.errors import UserError

# Card fields a safetensors header holds as they are (the others are JSON).
TEXT_FIELDS = ("model", "dataset", "weights", "source", "format", "outputs")
ImageInput = Any  # a path (str or os.PathLike: a file, directory, glob or .tar shard), a PIL image, or a tensor


@dataclass(frozen=True)
class Prediction:
    """One image's top classes: ``(class name, probability)`` pairs, most probable first (a multi-label model's
    probabilities are each class's own, not shares of one). ``image`` names the file
    (``SHARD.tar/MEMBER`` inside a shard) or the input's position (``<input 3>``); ``error`` says why an input that is
    not an image has no classes."""

    image: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""

    @property
    def label(self) -> str:
        """The most probable class."""
        return self.top[0][0]


def card_input(card: dict[str, Any]) -> InputSpec | None:
    """What a model of your own images is fed, from its model card (None for a paper dataset's)."""
    if card["dataset"] != "images":
        return None
    return InputSpec(card["input_size"][-1], tuple(card["mean"]), tuple(card["std"]), card["crop_pct"])


class Classifier:
    """A trained model in evaluation mode with its model card (``model``, ``dataset``, ``classes``, input size and
    normalisation), from :func:`load`."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], card: dict[str, Any]) -> None:
        self.run, self.card = run, card
        self.device = torch.device("cpu")
        self.transform = for_dataset(card["dataset"], train=False, spec=card_input(card))

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        return list(self.card["classes"])

    @property
    def multi_label(self) -> bool:
        """Whether each class is scored on its own (a sigmoid probability per class, not a softmax over them)."""
        return bool(self.card.get("multi_label"))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's logits for a batch already transformed as the dataset's evaluation transform does."""
        with torch.no_grad():
            return self.run(batch.to(self.device)).float().cpu()

    def to(self, device: str | torch.device) -> Classifier:
        """The classifier on ``device``: its network moves there, and batches follow. An ONNX model stays where
        onnxruntime runs it (one line, for a GPU)."""
        target = torch.device(device)
        if target.type != "cpu":
            self.check_movable()
        if isinstance(self.run, torch.nn.Module):
            self.device, self.run = target, self.run.to(target)
        return self

    def check_movable(self) -> None:
        """One line when the model cannot leave the CPU (an ONNX model runs where onnxruntime does)."""
        if not isinstance(self.run, torch.nn.Module):
            raise UserError(
                f"a {self.card.get('format', 'exported')} model runs on the CPU here; for a GPU give a run, a "
                "checkpoint or a PyTorch export"
            )

    def prepare(self, image: Any) -> torch.Tensor:
        """One decoded image (an RGB PIL image, or a tensor) as the model's input: the evaluation transform."""
        if hasattr(image, "convert") and self.card["dataset"] == "images":  # as its training decoded them
            image = pil_to_tensor(image)
        return self.transform(image)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Each class's probability for a prepared batch: a softmax over the classes, or for a multi-label model
        each class's own sigmoid."""
        logits = self.logits(batch)
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)

    def predict(
        self, images: ImageInput | Sequence[ImageInput], top: int = 5, batch_size: int = 64
    ) -> list[Prediction]:
        """The ``top`` classes of each image. ``images``: one input or a list of them; a path may be a file, a
        directory of images, a glob or a WebDataset ``.tar`` shard; a tensor is one image (3xHxW, uint8 or floats in
        [0, 1]) or a batch of them. A file that is not an image gets a :class:`Prediction` with ``error`` set."""
        return list(self.iter_predict(images, top, batch_size))

    def iter_predict(
        self, images: ImageInput | Sequence[ImageInput], top: int = 5, batch_size: int = 64
    ) -> Iterator[Prediction]:
        """:meth:`predict`'s predictions one batch at a time, in input order, as each batch is classified."""
        if top < 1 or batch_size < 1:
            raise UserError(f"top {top} and batch_size {batch_size} must be at least 1")
        count = min(top, len(self.classes))
        for batch, failed in self._batches(_as_list(images), batch_size):
            ranked = list(failed)
            if batch:
                best = self.probabilities(torch.stack([tensor for _, _, tensor in batch])).topk(count, dim=1)
                for (order, name, _), values, indices in zip(
                    batch, best.values.tolist(), best.indices.tolist(), strict=True
                ):
                    classes = [(self.classes[index], value) for value, index in zip(values, indices, strict=True)]
                    ranked.append((order, Prediction(name, classes)))
            yield from (prediction for _, prediction in sorted(ranked, key=lambda pair: pair[0]))

    def _batches(
        self, inputs: list[ImageInput], size: int
    ) -> Iterator[tuple[list[tuple[int, str, torch.Tensor]], list[tuple[int, Prediction]]]]:
        """Batches of ``size`` transformed images as ``(order, name, tensor)``, each with the inputs before it that
        are not images, as predictions with their ``error``."""
        batch: list[tuple[int, str, torch.Tensor]] = []
        failed: list[tuple[int, Prediction]] = []
        with image_opener() as open_image:
            for order, (name, image) in enumerate(_images(inputs, open_image)):
                if isinstance(image, Exception):
                    failed.append((order, Prediction(name, error=_failure(image))))
                    continue
                batch.append((order, name, self.prepare(image)))
                if len(batch) == size:
                    yield batch, failed
                    batch, failed = [], []
        yield batch, failed


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, str | os.PathLike | torch.Tensor) or hasattr(images, "convert"):
        return [images]
    return list(images)


def _images(inputs: list[ImageInput], open_image: Callable[[str], Any]) -> Iterator[tuple[str, Any]]:
    """``(name, PIL image, tensor or the exception that made it none)`` for every image the inputs hold."""
    for position, item in enumerate(inputs):
        if isinstance(item, str | os.PathLike):
            for path in image_paths([os.fspath(item)]):
                try:
                    yield path, open_image(path)
                except (OSError, DecompressionBombError) as error:  # PIL's UnidentifiedImageError is an OSError
                    yield path, error
        elif isinstance(item, torch.Tensor) and item.dim() == 4:
            yield from ((f"<input {position}:{row}>", image) for row, image in enumerate(item))
        elif isinstance(item, torch.Tensor) or hasattr(item, "convert"):
            yield f"<input {position}>", item.convert("RGB") if hasattr(item, "convert") else item
        else:
            raise UserError(f"input {position} is a {type(item).__name__}; give a path, a PIL image or a tensor")


def _failure(error: Exception) -> str:
    """Why an input has no classes: a decompression bomb does not decode (as the shard builder words it), a refused
    tar member says why in its own line, anything else is not an image."""
    if isinstance(error, DecompressionBombError):
        return f"{UNREADABLE} ({str(error).splitlines()[0]})"
    if isinstance(error, RefusedMember):
        return str(error)
    return f"not an image ({type(error).__name__})"


def _export_card(location: str) -> dict[str, Any] | None:
    """The model card of an export: ``FILE.json`` beside it, or a safetensors file's own header."""
    if not os.path.isfile(location):
        return None
    if os.path.isfile(f"{location}.json"):
        with open(f"{location}.json") as handle:
            return json.load(handle)
    if location.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(location, "pt") as opened:
            header = opened.metadata() or {}
        if "create_model" in header and "classes" in header:
            card = {key: value if key in TEXT_FIELDS else json.loads(value) for key, value in header.items()}
            return {**card, "format": "safetensors"}
    return None


def load(
    source: str | os.PathLike,
    which: str = "last",
    weights: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    trust_program: bool = False,
) -> Classifier:
    """The trained model at ``source``: a run directory (its ``which`` checkpoint, ``last`` or ``best``), a run
    checkpoint (local or ``s3://``), a torchvision-format state_dict (with ``model`` and ``dataset``), or a file
    from ``densenet-ray export`` (its ``FILE.json`` model card beside it). ``weights``: ``ema`` or ``raw`` (default:
    the moving average when the checkpoint has one). Checkpoints and state_dicts load as plain weights only (a file
    holding code is refused); a TorchScript or exported-program file is a program, loaded only with
    ``trust_program``."""
    location = os.fspath(source)
    card = _export_card(location)
    if card is not None:
        from densenet_ray.models.export import WEIGHTS_ONLY, load_export

        network = None
        if card.get("format") in WEIGHTS_ONLY:
            from densenet_ray.models import create_model

            options = dict(card["create_model"])
            network = create_model(options.pop("name"), **options)
        return Classifier(load_export(location, card["format"], network, trust_program), card)
    from densenet_ray.train.checkpoint.trained import load_trained

    trained = load_trained(location, which, weights, model, dataset)
    return Classifier(trained.network, trained.describe())
