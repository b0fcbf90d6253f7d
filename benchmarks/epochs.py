"""Exact epochs against the pipeline they replaced, side by side in one run: throughput, S3 bytes, batch mixing.

"Before" is the revision ``--before`` (default a8c392d, the last with whole-shard streams that wrap), taken from
git into a temporary directory; "after" is this checkout. Each measurement is one training epoch of one rank in a
fresh process (``benchmarks/epoch_pass.py``, the same code for both), interleaved over ``--rounds``:

* throughput: rank 0 of 1, 2 loader workers, 64 a batch, the paper's CIFAR augmentation, from local disk and from
  S3 (a moto server in its own process) through a byte-counting proxy, which gives the S3 bytes of each epoch;
* a layout that does not divide evenly: the three ranks of 3 x 2 loader workers at 32 a rank from S3, for the
  epoch's S3 bytes and the mean class entropy of a batch's labels, against the same labels dealt into batches by
  uniform random permutations (the ideal a shuffle can reach).

The before-revision reads manifests without index entries, so it gets a copy of the manifest without them (the
same shard files). Needs ``../shared/data/cifar10-jpeg/train.tar`` and a git checkout.

Usage::

    python benchmarks/epochs.py --out benchmarks/results/epochs-cpu.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import S3Server, cifar_source, upload  # noqa: E402
from epoch_pass import entropy_bits  # noqa: E402
from machine import cpu_name  # noqa: E402

from densenet_ray.data.building.build import build_dataset  # noqa: E402
from densenet_ray.data.storage import s3_client  # noqa: E402

PASS = ROOT / "benchmarks" / "epoch_pass.py"


class CountingProxy:
    """The fault proxy (tests/data/faultproxy.py), never resetting, in its own process: counts bytes to clients."""

    def __init__(self, target_port: int) -> None:
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.data.faultproxy import CutProxy\n"
            f"proxy = CutProxy({target_port}, None)\n"
            "print(proxy.port, flush=True)\n"
            "for line in sys.stdin:\n    print(proxy.downstream, flush=True)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def downstream(self) -> int:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


def export_revision(revision: str, target: Path) -> Path:
    """The ``densenet_ray`` package of ``revision``, extracted under ``target``."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "densenet_ray"], capture_output=True)
    if archive.returncode:
        sys.exit(f"error: git archive {revision} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def without_indexes(shards: Path, target: Path) -> Path:
    """The same shard files, with a manifest that lists no indexes (the before-revision's format)."""
    target.mkdir()
    for path in shards.glob("*.tar"):
        (target / path.name).symlink_to(path)
    manifest = json.loads((shards / "train.json").read_text())
    for shard in manifest["shards"]:
        shard.pop("index", None)
    (target / "train.json").write_text(json.dumps(manifest))
    return target


def one_pass(package_root: Path, data: str, endpoint: str | None = None, **options: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    if endpoint:
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    args = [sys.executable, str(PASS), data]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    completed = subprocess.run(args, capture_output=True, text=True, env=env, cwd="/", timeout=1800)
    if completed.returncode:
        sys.exit(f"error: {' '.join(args)} failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def uniform_entropy(labels: list[int], batch: int, permutations: int = 50) -> float:
    """Mean batch entropy when ``labels`` are dealt into batches by uniform random permutations."""
    rng, values = random.Random(0), []
    for _ in range(permutations):
        shuffled = labels[:]
        rng.shuffle(shuffled)
        values += [entropy_bits(shuffled[i : i + batch]) for i in range(0, len(shuffled) - batch + 1, batch)]
    return statistics.fmean(values)


def measure(versions: dict[str, tuple[Path, str, str]], proxy: CountingProxy, rounds: int) -> list[dict]:
    """Interleaved rounds of one epoch per (version, storage): throughput, and S3 bytes read through the proxy."""
    rows = []
    for round_index in range(rounds):
        for version, (package, local, remote) in versions.items():
            for storage, data, endpoint in (("local", local, None), ("s3", remote, proxy.url)):
                before = proxy.downstream()
                result = one_pass(package, data, endpoint, loader_workers=2, rank_batch=64)
                s3_bytes = proxy.downstream() - before if endpoint else None
                rows.append(
                    {
                        "round": round_index,
                        "version": version,
                        "storage": storage,
                        "s3_bytes": s3_bytes,
                        **{k: v for k, v in result.items() if k != "labels"},
                    }
                )
                print(f"{version} {storage}: {result['samples_per_s']:,.0f} samples/s", file=sys.stderr)
    return rows


def mixing(versions: dict[str, tuple[Path, str, str]], proxy: CountingProxy) -> dict:
    """Every rank of 3 x 2 loader workers at 32 a rank, from S3 through the proxy: the S3 bytes of the whole epoch
    (three ranks' shares of 20 shards do not divide evenly, so the whole-shard streams wrap), and the mean batch
    class entropy against the uniform-permutation ideal."""
    found = {}
    for version, (package, _, remote) in versions.items():
        before = proxy.downstream()
        passes = [
            one_pass(package, remote, proxy.url, rank=r, world_size=3, loader_workers=2, rank_batch=32)
            for r in range(3)
        ]
        labels = [label for p in passes for label in p["labels"]]
        found[version] = {
            "s3_bytes": proxy.downstream() - before,
            "samples": len(labels),
            "batch_entropy_bits": round(statistics.fmean(p["batch_entropy_bits"] for p in passes), 4),
            "uniform_entropy_bits": round(uniform_entropy(labels, 32), 4),
        }
    return found


def summarize(rows: list[dict]) -> dict:
    def median(version: str, storage: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["version"] == version and r["storage"] == storage)

    summary = {}
    for storage in ("local", "s3"):
        before, after = median("before", storage, "samples_per_s"), median("after", storage, "samples_per_s")
        summary[f"{storage} samples/s"] = {
            "before": round(before),
            "after": round(after),
            "ratio": round(after / before, 3),
        }
    before, after = median("before", "s3", "s3_bytes"), median("after", "s3", "s3_bytes")
    summary["s3 bytes per epoch"] = {"before": before, "after": after, "ratio": round(after / before, 4)}
    return summary


def markdown(report: dict) -> str:
    summary, mix = report["summary"], report["mixing"]
    lines = [
        f"Measured on {report['machine']['cpu']} ({report['machine']['cores']} cores); `{report['command']}`; "
        f"medians of {report['rounds']} interleaved rounds.",
        "",
        "| measure (1 x 2 unless named) | before (whole-shard streams) | after (exact spans) | after / before |",
        "|---|---|---|---|",
    ]
    for key in ("local samples/s", "s3 samples/s", "s3 bytes per epoch"):
        row = summary[key]
        lines.append(f"| {key} | {row['before']:,.0f} | {row['after']:,.0f} | {row['ratio']:.3f} |")
    before, after = mix["before"], mix["after"]
    lines.append(
        f"| 3 x 2: s3 bytes per epoch | {before['s3_bytes']:,} | {after['s3_bytes']:,} "
        f"| {after['s3_bytes'] / before['s3_bytes']:.3f} |"
    )
    lines.append(
        f"| 3 x 2: batch class entropy, bits (uniform permutation) | {before['batch_entropy_bits']:.3f} "
        f"({before['uniform_entropy_bits']:.3f}) | {after['batch_entropy_bits']:.3f} "
        f"({after['uniform_entropy_bits']:.3f}) | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000, help="CIFAR-10 images from the shared tar")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default="a8c392d", help="the revision to compare with")
    parser.add_argument("--out", help="also write the JSON report here (atomically)")
    parser.add_argument("--markdown", action="store_true", help="print the README table to stderr")
    args = parser.parse_args(argv)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = S3Server()
    os.environ["AWS_ENDPOINT_URL_S3"] = server.url
    proxy = CountingProxy(server.port)
    try:
        with tempfile.TemporaryDirectory() as work:
            work_path = Path(work)
            new = work_path / "after"
            build_dataset(cifar_source(args.samples), str(new), shard_size=args.shard_size)
            old = without_indexes(new, work_path / "before-shards")
            s3_client().create_bucket(Bucket="bench")
            versions = {
                "before": (
                    export_revision(args.before, work_path / "before"),
                    str(old),
                    upload(str(old), "bench", "b"),
                ),
                "after": (ROOT, str(new), upload(str(new), "bench", "a")),
            }
            rows = measure(versions, proxy, args.rounds)
            mix = mixing(versions, proxy)
    finally:
        proxy.stop()
        server.stop()
    report = {
        "benchmark": "epochs",
        "command": "python benchmarks/epochs.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "samples": args.samples,
        "shard_size": args.shard_size,
        "before": args.before,
        "rounds": args.rounds,
        "summary": summarize(rows),
        "mixing": mix,
        "results": rows,
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
    raise SystemExit(main())
