"""cluster.yaml and the job configs: Ray's own offline validation, and every recipe loadable with --config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from densenet_ray.cli import build_parser, main
from densenet_ray.cli.train import options_from_args
from densenet_ray.train.config.resolved import resolve

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {
    "imagenet-densenet121.yaml": ("imagenet", "densenet121"),
    "imagenet-densenet-cosine-264.yaml": ("imagenet", "densenet264_k48"),
    "cifar10-densenet-bc100-k12.yaml": ("cifar", "densenet_bc100_k12"),
    "cifar100-densenet-bc190-k40.yaml": ("cifar", "densenet_bc190_k40"),
    "svhn-densenet-bc100-k12.yaml": ("cifar", "densenet_bc100_k12"),
    "imagenet-densenet121-modern.yaml": ("imagenet", "densenet121"),
    "cifar10-densenet-bc100-k12-modern.yaml": ("cifar", "densenet_bc100_k12"),
}
PAPERS = [name for name in RECIPES if not name.endswith("-modern.yaml")]


def test_cluster_yaml_is_valid(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["cluster", "validate"]) == 0
    assert capsys.readouterr().out.strip() == "valid: cluster.yaml"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("TRAIN_DRIVER: 8", "TRAIN_DRIVER: 0.5"), "0.5 is not of type 'integer' (at available_node_types/head/"),
        (("head_node_type: head", "head_node_type: boss"), "`head_node_type` must be one of `available_node_types`"),
        (("idle_timeout_minutes: 10", "idle_timeout_minutes: 10\ncolour: blue"), "'colour' was unexpected"),
        (("cluster_name: densenet-ray", "cluster_name: [a, b]"), "is not of type 'string'"),
    ],
)
def test_a_broken_copy_fails_in_one_line(tmp_path, capsys, change, message) -> None:
    text = (ROOT / "cluster.yaml").read_text()
    assert change[0] in text
    broken = tmp_path / "cluster.yaml"
    broken.write_text(text.replace(change[0], change[1], 1))
    assert main(["cluster", "validate", str(broken)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {broken} is not a valid Ray cluster config: ") and message in err


def test_every_gpu_worker_type_names_an_instance_profile_and_no_keys() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    workers = {name: spec for name, spec in config["available_node_types"].items() if name != config["head_node_type"]}
    assert {spec["node_config"]["InstanceType"] for spec in workers.values()} >= {
        "g5.12xlarge",
        "p4d.24xlarge",
        "p5.48xlarge",
    }
    assert all(
        spec["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::") for spec in workers.values()
    )
    assert all(spec["min_workers"] == 0 for spec in workers.values())
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0, "TRAIN_DRIVER": 8}
    text = (ROOT / "cluster.yaml").read_text() + (ROOT / "jobs" / "runtime-env.yaml").read_text()
    assert "aws_access_key_id" not in text.lower() and "AWS_SECRET_ACCESS_KEY" not in text


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_loads_with_config(name: str) -> None:
    family, model = RECIPES[name]
    argv = ["train", family, "--config", str(ROOT / "jobs" / name), "--epochs", "2", "--data", "s3://bucket/shards"]
    args = build_parser().parse_args(argv)
    config = resolve(options_from_args(args, "imagenet" if family == "imagenet" else "cifar10"))
    assert config.options.model == model and config.options.epochs == 2  # flags override the file
    assert config.options.batch_size % config.options.workers == 0 and config.options.gpu


def test_recipes_are_the_papers() -> None:
    def load(name: str) -> dict:
        return yaml.safe_load((ROOT / "jobs" / name).read_text())

    assert load("svhn-densenet-bc100-k12.yaml").items() >= {"augment": False, "drop_rate": 0.2, "epochs": 40}.items()
    assert load("imagenet-densenet-cosine-264.yaml")["memory_efficient"] is True
    assert load("cifar100-densenet-bc190-k40.yaml")["memory_efficient"] is True
    assert {load(name)["batch_size"] for name in PAPERS if name.startswith("imagenet")} == {256}
    assert {load(name)["batch_size"] for name in PAPERS if not name.startswith("imagenet")} == {64}
    assert not any(key in load(name) for name in PAPERS for key in ("ema", "mixup", "cutmix", "label_smoothing"))


def test_the_modern_recipes_resolve_to_their_sources_settings() -> None:
    def resolved(name: str, family: str):
        argv = ["train", family, "--config", str(ROOT / "jobs" / name), "--data", "s3://bucket/shards"]
        return resolve(options_from_args(build_parser().parse_args(argv), "cifar10"))

    imagenet = resolved("imagenet-densenet121-modern.yaml", "imagenet")
    assert (imagenet.options.lr, imagenet.options.batch_size, imagenet.options.epochs) == (0.5, 1024, 600)
    assert (imagenet.options.augment_policy, imagenet.options.mixup, imagenet.options.cutmix) == (
        "trivialaugment",
        0.2,
        1.0,
    )
    assert (imagenet.options.warmup, imagenet.options.label_smoothing, imagenet.options.no_decay_norm_bias) == (
        5,
        0.1,
        True,
    )
    cifar = resolved("cifar10-densenet-bc100-k12-modern.yaml", "cifar")
    assert (cifar.options.augment_policy, cifar.options.cutmix, cifar.options.mix_prob) == ("autoaugment", 1.0, 0.5)


def test_every_yaml_in_cluster_and_jobs_loads_and_the_fake_cluster_validates() -> None:
    from ray.autoscaler._private.util import validate_config

    files = sorted((ROOT / "cluster").rglob("*.yaml")) + sorted((ROOT / "jobs").glob("*.yaml"))
    names = [str(path.relative_to(ROOT)) for path in files]
    assert (
        names
        == [
            "cluster/fake-cluster.yaml",
            "cluster/kuberay/network-policy.yaml",
            "cluster/kuberay/raycluster.yaml",
            "cluster/kuberay/rayjob.yaml",
            *(f"jobs/{name}" for name in sorted(p.name for p in (ROOT / "jobs").glob("*.yaml"))),
        ]
        and len(names) == 17
    )
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert documents and all(isinstance(d, dict) for d in documents), path
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in (ROOT / "cluster" / "kuberay").glob("*.yaml")}
    assert kinds == {"NetworkPolicy", "RayCluster", "RayJob"}
    fake = yaml.safe_load((ROOT / "cluster" / "fake-cluster.yaml").read_text())
    validate_config(fake)  # complete as written: the wheel ships no defaults for the fake provider
    assert fake["available_node_types"]["gpu_a10g_sim"]["resources"] == {"CPU": 1, "fake_gpu": 1}
