"""Checking a sharded split end to end: bytes, SHA-256, sample counts, labels, every image's decode, and each
shard's index against the shard's actual member offsets. A sparse member or one over the member limit is a
problem, its bytes left unread."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from densenet_ray.data.building.indexing import index_problem
from densenet_ray.data.format.manifest import Manifest, ShardInfo
from densenet_ray.data.format.shard_index import Member, build_index, split_member_name
from densenet_ray.data.format.tar_members import member_problem, refusal
from densenet_ray.data.storage import Storage, StorageError


@dataclass
class VerifyReport:
    """What ``verify_manifest`` found: good samples and shards, and one line per problem."""

    samples: int = 0
    shards: int = 0
    problems: list[str] = field(default_factory=list)


class _HashingReader(io.RawIOBase):
    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source, self.digest, self.bytes = source, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        self.bytes += len(data)
        return len(data)


def _decode(image: bytes) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        opened.convert("RGB").load()


def verify_shard(storage: Storage, shard: ShardInfo, num_classes: int) -> tuple[int, list[str]]:
    """Stream one shard; returns its good sample count and its problems (each naming the shard and sample)."""
    url = storage.join(shard.name)
    problems: list[str] = []
    good = 0
    try:
        with storage.open_read(shard.name) as stream:
            hashed = _HashingReader(stream)
            samples: dict[str, dict[str, bytes]] = {}
            located: list[Member] = []
            try:
                with tarfile.open(fileobj=hashed, mode="r|") as archive:
                    for member in archive:
                        if not member.isfile():
                            continue
                        problem = member_problem(member)
                        if problem is not None:  # its bytes are not read: a sample without its image
                            problems.append(refusal(url, member.name, problem))
                            continue
                        key, extension = split_member_name(member.name)
                        located.append(Member(extension, member.offset_data, member.size, member.name))
                        handle = archive.extractfile(member)
                        assert handle is not None  # isfile() above: a regular member always has data
                        samples.setdefault(key, {})[extension] = handle.read()
            except (tarfile.TarError, EOFError) as error:
                problems.append(f"{url}: not a complete tar archive ({error})")
            while hashed.read(1 << 20):  # hash the end-of-archive padding too
                pass
    except StorageError as error:
        return 0, [f"{url}: {error}"]
    for key, members in samples.items():
        problem = _check_sample(members, num_classes)
        if problem:
            problems.append(f"{url}: sample {key}: {problem}")
        else:
            good += 1
    if len(samples) != shard.samples:
        problems.append(f"{url}: {len(samples)} samples, manifest says {shard.samples}")
    if hashed.bytes < shard.bytes:
        problems.append(f"{url}: truncated ({hashed.bytes} of {shard.bytes} bytes)")
    elif hashed.bytes != shard.bytes:
        problems.append(f"{url}: {hashed.bytes} bytes, manifest says {shard.bytes}")
    elif hashed.digest.hexdigest() != shard.sha256:
        problems.append(f"{url}: SHA-256 does not match the manifest")
    # An index is judged against a shard that is as the manifest says; a damaged shard is the problem to report.
    intact = hashed.bytes == shard.bytes and hashed.digest.hexdigest() == shard.sha256
    index_issue = index_problem(storage, shard, build_index(located)) if shard.index and intact else None
    if index_issue:
        problems.append(index_issue)
    return good, problems


def _check_sample(members: dict[str, bytes], num_classes: int) -> str | None:
    kind = "labels" if "labels" in members else "cls"  # labels: a multi-label sample's class indices
    images = [ext for ext in members if ext not in ("cls", "labels")]
    if kind not in members or len(images) != 1:
        return f"expected one image and a cls or labels member, found {sorted(members)}"
    try:
        text = members[kind].decode()
        labels = [int(part) for part in text.split(",") if part] if kind == "labels" else [int(text)]
    except ValueError:
        return f"{kind} {members[kind][:20]!r} is not {'a list of integers' if kind == 'labels' else 'an integer'}"
    outside = [label for label in labels if not 0 <= label < num_classes]
    if outside:
        return f"{kind} {outside[0]} is outside 0..{num_classes - 1}"
    try:
        _decode(members[images[0]])
    except Exception as error:  # PIL raises many types for corrupt images
        return f"image does not decode ({type(error).__name__}: {error})"
    return None


def verify_manifest(storage: Storage, manifest: Manifest, on_shard: Callable[[], None] | None = None) -> VerifyReport:
    """Verify every shard of ``manifest``; the total must also match the manifest's sample count."""
    report = VerifyReport()
    for shard in manifest.shards:
        good, problems = verify_shard(storage, shard, manifest.num_classes)
        report.samples += good
        report.shards += 0 if problems else 1
        report.problems += problems
        if on_shard:
            on_shard()
    listed = sum(shard.samples for shard in manifest.shards)
    if listed != manifest.num_samples:
        report.problems.append(f"manifest {manifest.split}.json: shards hold {listed}, says {manifest.num_samples}")
    return report
