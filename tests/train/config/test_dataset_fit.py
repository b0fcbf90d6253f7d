"""What a run takes from its shards' manifest: own images' classes, statistics, crop and model; and the paper's
families refusing shards they do not fit."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.sources import imagefolder_source
from densenet_ray.data.format.manifest import load_manifest
from densenet_ray.data.reading.input_spec import InputSpec
from densenet_ray.data.reading.transforms import for_dataset
from densenet_ray.errors import UserError
from densenet_ray.train.config.dataset_fit import check_family
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import ResolvedConfig, resolve
from tests.data.own_images import OWN_CLASSES, write_own_folder


@pytest.fixture(scope="module")
def own_shards(tmp_path_factory, fixture_tar) -> str:
    root = tmp_path_factory.mktemp("own")
    photos = write_own_folder(fixture_tar, root / "photos", per_class=4)
    build_dataset(imagefolder_source(str(photos)), str(root / "shards"), shard_size=50)
    return str(root / "shards")


def test_own_images_take_classes_statistics_and_size_from_the_manifest(own_shards) -> None:
    config = resolve(TrainConfig(dataset="images", data=own_shards, name="x"))
    _, manifest = load_manifest(own_shards, "train")
    assert (config.num_classes, config.classes, config.mean, config.std) == (
        5,
        OWN_CLASSES,
        manifest.mean,
        manifest.std,
    )
    options = config.options
    assert (options.model, options.image_size, options.crop_pct, options.batch_size, options.epochs) == (
        "densenet121",
        96,
        0.875,
        64,
        30,
    )
    assert config.input_spec() == InputSpec(96, tuple(manifest.mean), tuple(manifest.std), 0.875)
    assert ResolvedConfig.from_document(json.loads(json.dumps(config.to_document()))) == config


def test_small_own_images_train_the_cifar_form(cifar_shards) -> None:
    options = resolve(TrainConfig(dataset="images", data=cifar_shards, name="x")).options
    assert (options.model, options.image_size) == ("densenet_bc100_k12", 32)
    chosen = resolve(TrainConfig(dataset="images", data=cifar_shards, image_size=24, model="densenet121", name="x"))
    assert (chosen.options.model, chosen.options.image_size) == ("densenet121", 24)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"image_size": 128},
            r"--image-size 128 is larger than the images at .* allow \(their shorter side is at most 96",
        ),
        ({"data": None}, r"--data is required for your own images"),
        ({"crop_pct": 1.5}, r"--crop-pct 1.5 must be in \(0.0, 1.0\]"),
    ],
)
def test_own_image_errors_are_one_line(own_shards, changes, message) -> None:
    with pytest.raises(UserError, match=message):
        resolve(TrainConfig(**{"dataset": "images", "data": own_shards, "name": "x", **changes}))


def test_own_image_options_belong_to_own_images(cifar_shards) -> None:
    with pytest.raises(UserError, match=r"--image-size applies to your own images .*, not to cifar10"):
        resolve(TrainConfig(data=cifar_shards, image_size=32))


@pytest.mark.parametrize(("dataset", "needs"), [("cifar10", "10 classes of 32x32"), ("imagenet", "1000 classes of at")])
def test_paper_families_refuse_shards_they_do_not_fit(own_shards, cifar_shards, dataset, needs) -> None:
    _, own = load_manifest(own_shards, "train")
    with pytest.raises(UserError, match=rf"holds 5 classes of 96x96 images; {dataset} training takes {needs}"):
        check_family(TrainConfig(dataset=dataset, data=own_shards), own)
    _, cifar = load_manifest(cifar_shards, "train")
    check_family(TrainConfig(dataset="cifar10", data=cifar_shards), cifar)  # the slice fits CIFAR-10
    check_family(TrainConfig(dataset="images", data=cifar_shards), cifar)  # and any own-images run


def test_own_transforms_crop_to_the_size_and_normalise(fixture_tar, tmp_path) -> None:
    photo = Image.open(write_own_folder(fixture_tar, tmp_path / "p", per_class=2) / "cat" / "0001.jpg")
    spec = InputSpec(64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.manual_seed(0)
    small = for_dataset("images", train=True, spec=spec)(photo)
    large = for_dataset("images", train=True, spec=InputSpec(80, (0.5,) * 3, (0.25,) * 3))(photo)
    evaluated = for_dataset("images", train=False, spec=InputSpec(80, (0.5,) * 3, (0.25,) * 3))(photo)
    assert small.shape == (3, 64, 64) and large.shape == evaluated.shape == (3, 80, 80)
    # Evaluation: resize the 96-pixel photo to round(80 / 0.875) = 91, center-crop 80, normalise by (0.5, 0.25).
    from torchvision.transforms import v2

    functional = v2.functional
    reference = functional.pil_to_tensor(functional.center_crop(functional.resize(photo, 91), 80))
    torch.testing.assert_close(evaluated, (reference.float() / 255 - 0.5) / 0.25, atol=1e-5, rtol=0)


def test_the_fine_tuning_recipe_resolves_on_own_images(tmp_path, fixture_tar) -> None:
    from pathlib import Path

    from densenet_ray.cli import build_parser
    from densenet_ray.cli.train import options_from_args

    photos = write_own_folder(fixture_tar, tmp_path / "photos", per_class=2, size=224)
    build_dataset(imagefolder_source(str(photos)), str(tmp_path / "shards"), shard_size=50)
    recipe = Path(__file__).parents[3] / "jobs" / "finetune-densenet121.yaml"
    argv = ["train", "images", "--config", str(recipe), "--data", str(tmp_path / "shards"), "--name", "x"]
    options = resolve(options_from_args(build_parser().parse_args(argv), "images"), check_weights=False).options
    assert (options.model, options.pretrained, options.optimizer, options.lr, options.image_size) == (
        "densenet121",
        True,
        "adamw",
        0.001,
        224,
    )
    assert (options.freeze_epochs, options.backbone_lr_scale, options.batch_size, options.weight_decay) == (
        1,
        0.1,
        16,
        0.0,
    )


def test_a_sweep_trial_on_own_images_takes_the_manifest_and_the_searched_size(own_shards) -> None:
    from densenet_ray.train.config.resolved import anchored, derive

    options = TrainConfig(dataset="images", data=own_shards, model="densenet_bc100_k12", depth=16)
    base = anchored(options, resolve(options, check_weights=False))
    trial = derive(base, {"image_size": 64, "lr": 0.05}, "/sweeps/s/trials", "train-1")
    assert (trial.classes, trial.num_classes, trial.options.image_size, trial.options.lr) == (OWN_CLASSES, 5, 64, 0.05)
    assert trial.input_spec() is not None and trial.input_spec().small
    with pytest.raises(UserError, match=r"--image-size 128 is larger than the images"):
        derive(base, {"image_size": 128}, "/sweeps/s/trials", "train-2")
