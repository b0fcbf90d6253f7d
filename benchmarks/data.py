"""Data benchmark: shard streaming throughput, local disk vs S3, raw vs decoded+augmented, 1 vs 2 loader workers.

Datasets:

* CIFAR-10: shards built from ``../shared/data/cifar10-jpeg/train.tar`` (the first ``--cifar-samples`` images,
  2,000 per shard so a 4 MB reset interval falls inside shards);
* ImageNet-like: ``--imagenet-samples`` generated 320x320 JPEGs of about 100 KB (smooth colour fields plus grain, q95),
  250 per shard.

Each is read from a local directory, from S3 (a moto server in its own process, on 127.0.0.1), and from S3
through a proxy that resets every connection after ``--reset-every`` bytes (the resumable reader recovers).

* raw: the shards' samples parsed from the tar stream, no decoding, in 1 or 2 processes;
* decoded: the training pipeline end to end (shuffle, decode, the paper's augmentation, batches built in the
  loader workers) with 1 or 2 loader workers.

Usage::

    python benchmarks/data.py --out benchmarks/results/data-cpu.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402

from densenet_ray.data.building.build import build_dataset  # noqa: E402
from densenet_ray.data.building.source_base import FileEntry, FileListSource  # noqa: E402
from densenet_ray.data.building.sources import imagefolder_source  # noqa: E402
from densenet_ray.data.format.manifest import load_manifest  # noqa: E402
from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader  # noqa: E402
from densenet_ray.data.reading.shard_reader import read_shard  # noqa: E402
from densenet_ray.data.reading.transforms import cifar_train, imagenet_train  # noqa: E402
from densenet_ray.data.storage import open_storage, s3_client  # noqa: E402

SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train.tar"


def cifar_source(samples: int) -> FileListSource:
    if not SHARED_CIFAR.exists():
        sys.exit(f"error: {SHARED_CIFAR} not found; the CIFAR-10 part of this benchmark needs the shared JPEG tar")
    source = imagefolder_source(str(SHARED_CIFAR))
    # Every class, evenly: take the first samples/10 of each.
    per_class = samples // len(source.classes)
    by_class: dict[int, list[FileEntry]] = {}
    for entry in source.entries:
        by_class.setdefault(entry.label, []).append(entry)
    source.entries = [e for label in sorted(by_class) for e in by_class[label][:per_class]]
    return source


def imagenet_like(directory: Path, samples: int) -> FileListSource:
    """``samples`` JPEGs of about 100 KB in class folders (10 classes), generated deterministically."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(samples):
        folder = directory / f"class{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((320, 320), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-70, 71, (320, 320, 3), dtype=np.int16)
        pixels = np.clip(field + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:06d}.jpg", quality=95)
    return imagefolder_source(str(directory))


class S3Server:
    """moto in its own process on 127.0.0.1 (so the reader does not share a core with the server's GIL)."""

    def __init__(self) -> None:
        code = (
            "import time\nfrom moto.server import ThreadedMotoServer\n"
            "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start()\n"
            "print(s.get_host_and_port()[1], flush=True)\nwhile True: time.sleep(3600)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class ProxyProcess:
    """The fault proxy (tests/data/faultproxy.py) in its own process, so forwarding bytes costs the reader no GIL."""

    def __init__(self, target_port: int, cut_after: int | None) -> None:
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.data.faultproxy import CutProxy\n"
            f"proxy = CutProxy({target_port}, {cut_after!r})\n"
            "print(proxy.port, flush=True)\nsys.stdin.readline()\nprint(proxy.cuts, flush=True)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def stop(self) -> int:
        """Stop the proxy; returns how many connections it reset."""
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        cuts = int(self.process.stdout.readline())
        self.process.wait(timeout=10)
        return cuts


def upload(local: str, bucket: str, prefix: str) -> str:
    target = open_storage(f"s3://{bucket}/{prefix}")
    for path in sorted(Path(local).iterdir()):
        target.write_bytes(path.name, path.read_bytes())
    return target.url


class _RawShards(torch.utils.data.IterableDataset):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def __iter__(self):
        storage, manifest = load_manifest(self.url, "train")
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for shard in manifest.shards[worker::workers]:
            count = sum(1 for _ in read_shard(storage, shard))
            yield count, shard.bytes


def measure_raw(url: str, workers: int) -> dict:
    loader = torch.utils.data.DataLoader(_RawShards(url), batch_size=None, num_workers=workers)
    start = time.perf_counter()
    samples = size = 0
    for count, shard_bytes in loader:
        samples += count
        size += shard_bytes
    seconds = time.perf_counter() - start
    return {"samples_per_s": samples / seconds, "mb_per_s": size / seconds / 1e6, "seconds": seconds}


def measure_decoded(url: str, workers: int, batch: int, transform, total_bytes: int, total: int) -> dict:
    config = PipelineConfig(url, "train", batch, loader_workers=workers, seed=0, shuffle_buffer=1000)
    loader = make_loader(config, transform)
    start = time.perf_counter()
    samples = 0
    for images, _ in loader:
        samples += len(images)
    seconds = time.perf_counter() - start
    return {
        "samples_per_s": samples / seconds,
        "mb_per_s": total_bytes * samples / total / seconds / 1e6,
        "seconds": seconds,
    }


def run_dataset(
    name: str, local: str, s3_url: str, relay_url: str, proxy_url: str, batch: int, transform
) -> list[dict]:
    _, manifest = load_manifest(local, "train")
    rows = []
    locations = [
        ("local", local, None),
        ("s3", s3_url, None),
        ("s3+proxy", s3_url, relay_url),
        ("s3+resets", s3_url, proxy_url),
    ]
    for kind in ("raw", "decoded"):
        for workers in (1, 2):
            for location, url, endpoint in locations:
                previous = os.environ.get("AWS_ENDPOINT_URL_S3")
                if endpoint:
                    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # loader workers inherit it
                try:
                    if kind == "raw":
                        result = measure_raw(url, workers)
                    else:
                        result = measure_decoded(
                            url, workers, batch, transform, manifest.total_bytes, manifest.num_samples
                        )
                finally:
                    os.environ["AWS_ENDPOINT_URL_S3"] = previous or ""
                rows.append({"dataset": name, "mode": kind, "workers": workers, "storage": location, **result})
                print(
                    f"{name} {kind} workers={workers} {location}: {result['samples_per_s']:,.0f} samples/s",
                    file=sys.stderr,
                )
    return rows


def summarize(rows: list[dict], trainer_images_per_s: float | None) -> dict:
    by = {(r["dataset"], r["mode"], r["workers"], r["storage"]): r["samples_per_s"] for r in rows}
    ratios = {}
    for dataset, mode, workers, storage in by:
        if storage == "local":
            continue
        ratios[f"{dataset} {mode} {workers}w {storage}/local"] = round(
            by[(dataset, mode, workers, storage)] / by[(dataset, mode, workers, "local")], 3
        )
    summary = {"s3_vs_local": ratios}
    cifar_one_core = by.get(("cifar10", "decoded", 1, "local"))
    if trainer_images_per_s and cifar_one_core:
        summary["cifar_decoded_per_loader_core_vs_trainer"] = round(cifar_one_core / trainer_images_per_s, 1)
        summary["trainer_images_per_s_bc100_k12_2cores"] = trainer_images_per_s
    return summary


def markdown(report: dict) -> str:
    lines = [
        f"Measured on {report['machine']['cpu']} ({report['machine']['cores']} cores); `{report['command']}`.",
        "",
        "| dataset | mode | loader workers | local samples/s | S3 samples/s | S3 via proxy samples/s "
        "| S3 + resets samples/s | S3 / local | S3+resets / local | S3+resets / S3 via proxy | local MB/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["dataset"], r["mode"], r["workers"], r["storage"]): r for r in report["results"]}
    for dataset in ("cifar10", "imagenet-like"):
        for mode in ("raw", "decoded"):
            for workers in (1, 2):
                local, s3, relay, reset = (
                    by[(dataset, mode, workers, s)]["samples_per_s"] for s in ("local", "s3", "s3+proxy", "s3+resets")
                )
                lines.append(
                    f"| {dataset} | {mode} | {workers} | {local:,.0f} | {s3:,.0f} | {relay:,.0f} | {reset:,.0f} "
                    f"| {s3 / local:.2f} | {reset / local:.2f} | {reset / relay:.2f} "
                    f"| {by[(dataset, mode, workers, 'local')]['mb_per_s']:.1f} |"
                )
    return "\n".join(lines)


def trainer_rate() -> float | None:
    path = ROOT / "benchmarks" / "results" / "model-cpu.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())["summary"]
    row = next((r for r in summary if r["model"] == "densenet_bc100_k12" and r["mode"] == "standard"), None)
    return row["ours_images_per_s"] if row else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar-samples", type=int, default=20_000)
    parser.add_argument("--imagenet-samples", type=int, default=2_000)
    parser.add_argument("--reset-every", type=int, default=4_000_000, help="bytes per connection before a reset")
    parser.add_argument("--out", help="also write the JSON report here (atomically)")
    parser.add_argument("--markdown", action="store_true", help="print the README table to stderr")
    args = parser.parse_args(argv)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = S3Server()
    os.environ["AWS_ENDPOINT_URL_S3"] = server.url
    relay = ProxyProcess(server.port, cut_after=None)  # the same proxy, never resetting: its own cost
    proxy = ProxyProcess(server.port, cut_after=args.reset_every)
    results = []
    resets = 0
    try:
        with tempfile.TemporaryDirectory() as work:
            work_path = Path(work)
            s3_client().create_bucket(Bucket="bench")
            build_dataset(cifar_source(args.cifar_samples), str(work_path / "cifar"), shard_size=2000)
            cifar_s3 = upload(str(work_path / "cifar"), "bench", "cifar")
            results += run_dataset(
                "cifar10", str(work_path / "cifar"), cifar_s3, relay.url, proxy.url, 256, cifar_train()
            )
            source = imagenet_like(work_path / "imagenet-src", args.imagenet_samples)
            build_dataset(source, str(work_path / "imagenet"), shard_size=250)
            imagenet_s3 = upload(str(work_path / "imagenet"), "bench", "imagenet")
            results += run_dataset(
                "imagenet-like", str(work_path / "imagenet"), imagenet_s3, relay.url, proxy.url, 64, imagenet_train()
            )
            _, cifar_manifest = load_manifest(str(work_path / "cifar"), "train")
            _, imagenet_manifest = load_manifest(str(work_path / "imagenet"), "train")
    finally:
        relay.stop()
        resets = proxy.stop()
        server.stop()
    cpu = cpu_name()
    report = {
        "benchmark": "data",
        "command": "python benchmarks/data.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__},
        "datasets": {
            "cifar10": {"samples": cifar_manifest.num_samples, "bytes": cifar_manifest.total_bytes},
            "imagenet-like": {"samples": imagenet_manifest.num_samples, "bytes": imagenet_manifest.total_bytes},
        },
        "reset_every_bytes": args.reset_every,
        "resets": resets,
        "summary": summarize(results, trainer_rate()),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as handle:
            handle.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)
    print(text)
    if args.markdown:
        print(markdown(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
