"""The shard manifest: ``{split}.json`` beside the shards, written last and atomically.

A manifest is what every reader opens first: it names the shards in order with their sample counts, sizes and
SHA-256, so a pipeline can plan an epoch without listing storage and ``data verify`` can check every byte.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from densenet_ray.data.storage import Storage, StorageError, open_storage, split_url
from densenet_ray.errors import UserError

FORMAT = "densenet-ray-shards/1"


@dataclass(frozen=True)
class ShardInfo:
    """One tar shard: its file name (relative to the manifest), sample count, size in bytes and SHA-256, and the
    name of its sample index (``shard_index``; empty for shards built before indexes, read whole)."""

    name: str
    samples: int
    bytes: int
    sha256: str
    index: str = ""


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to know about one split of a sharded dataset.

    Attributes:
        dataset: the source dataset (``cifar10``, ``cifar100``, ``svhn``, ``imagefolder``).
        split: the split name, also the shard-name prefix.
        classes: class names; a sample's ``cls`` is an index into this list.
        num_samples: total samples over all shards.
        image_size: ``[height, width]`` when every image has the same size, else ``None``.
        mean: per-channel (RGB) pixel mean on the [0, 1] scale.
        std: per-channel pixel standard deviation on the [0, 1] scale.
        image_format: the image member's extension in every sample (``png`` or ``jpg``).
        shards: the shards in order.
        stats_samples: how many images the mean/std were computed from.
        source: where the data came from (a path or URL, never credentials).
        undecodable: keys of samples whose image did not decode when the shards were built (kept as they were;
            training skips and counts them).
        order_seed: the seed of the permutation the samples were written in (``None``: source order).
        class_counts: samples per class, in ``classes`` order (empty in manifests written before they were counted).
        short_side: ``[smallest, median, largest]`` shorter image side, for data whose sizes vary.
        converted: images stored as RGB, by the mode they came in (``L``, ``P``, ``RGBA``, ``CMYK``, ``I;16``...).
        skipped: source files left out, by reason (``not an image``, ``does not decode``).
        skipped_files: the first of those, each with its reason.
        multi_label: samples carry several labels each (``cls`` lists class indices).
    """

    dataset: str
    split: str
    classes: list[str]
    num_samples: int
    image_size: list[int] | None
    mean: list[float]
    std: list[float]
    image_format: str
    shards: list[ShardInfo]
    stats_samples: int = 0
    source: str = ""
    undecodable: list[str] = field(default_factory=list)
    format: str = FORMAT
    created_by: str = field(default="")
    order_seed: int | None = None
    class_counts: list[int] = field(default_factory=list)
    short_side: list[int] | None = None
    converted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    multi_label: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def total_bytes(self) -> int:
        return sum(shard.bytes for shard in self.shards)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        """Parse a manifest; ``ValueError`` naming ``where`` when it is not one."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {FORMAT!r}")
            data["shards"] = [ShardInfo(**shard) for shard in data["shards"]]
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise UserError(f"{where} is not a densenet-ray shard manifest ({error})") from None


def manifest_name(split: str) -> str:
    return f"{split}.json"


def write_manifest(storage: Storage, manifest: Manifest) -> None:
    """Write ``{split}.json`` atomically (a reader sees the old manifest or the new one, never half)."""
    storage.write_bytes(manifest_name(manifest.split), manifest.to_json().encode())


def find_manifests(url: str, endpoint_url: str | None = None) -> list[tuple[Storage, Manifest]]:
    """Every manifest at ``url``: a manifest file itself, or a directory/prefix holding ``*.json`` manifests."""
    if url.rstrip("/").endswith(".json"):
        parent, name = split_url(url)
        storage = open_storage(parent, endpoint_url)
        return [(storage, Manifest.from_json(_read_text(storage, name), storage.join(name)))]
    storage = open_storage(url, endpoint_url)
    found = []
    for info in storage.list():
        if "/" not in info.name and info.name.endswith(".json"):
            try:
                found.append((storage, Manifest.from_json(_read_text(storage, info.name), storage.join(info.name))))
            except ValueError:
                continue  # other JSON files may live beside the shards
    return found


def select_manifests(url: str, split: str | None, endpoint_url: str | None = None) -> list[tuple[Storage, Manifest]]:
    """The manifests at ``url`` (only ``split``'s when given); :class:`UserError` when there are none."""
    manifests = [(s, m) for s, m in find_manifests(url, endpoint_url) if split is None or m.split == split]
    if not manifests:
        wanted = f" for split {split!r}" if split else ""
        raise UserError(f"no shard manifests{wanted} at {url}")
    return manifests


def load_manifest(url: str, split: str | None = None, endpoint_url: str | None = None) -> tuple[Storage, Manifest]:
    """The manifest of ``split`` at ``url`` (a manifest file, or a directory holding ``{split}.json``). With a
    split, a directory costs one read: the manifest's name is known, so nothing is listed."""
    if split is not None and not url.rstrip("/").endswith(".json"):
        storage = open_storage(url, endpoint_url)
        name = manifest_name(split)
        if storage.exists(name):
            manifest = Manifest.from_json(_read_text(storage, name), storage.join(name))
            if manifest.split == split:
                return storage, manifest
        raise StorageError(f"no shard manifest for split {split!r} at {url} (build one with `densenet-ray data build`)")
    manifests = find_manifests(url, endpoint_url)
    if split is not None:
        manifests = [(s, m) for s, m in manifests if m.split == split]
    if not manifests:
        wanted = f"split {split!r}" if split else "any split"
        raise StorageError(f"no shard manifest for {wanted} at {url} (build one with `densenet-ray data build`)")
    if len(manifests) > 1:
        splits = ", ".join(m.split for _, m in manifests)
        raise UserError(f"{url} holds several splits ({splits}); choose one with --split")
    return manifests[0]


def _read_text(storage: Storage, name: str) -> str:
    return storage.read_bytes(name).decode("utf-8", errors="replace")
