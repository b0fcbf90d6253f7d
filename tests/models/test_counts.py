"""Parameter and multiply-add counts against DENSENET.md sections 2 and 3 (exact)."""

from __future__ import annotations

import pytest

from densenet_ray.models import count_params, create_model, get_entry, list_models, profile_model

# name -> (parameters, classes); DENSENET.md section 3 (CIFAR-10, C0=16 basic / 2k BC) and section 2 (ImageNet).
EXPECTED_PARAMS = {
    "densenet40_k12": 1_019_722,
    "densenet100_k12": 6_979_642,
    "densenet100_k24": 27_249_082,
    "densenet_bc100_k12": 769_162,
    "densenet_bc250_k24": 15_324_406,
    "densenet_bc190_k40": 25_624_430,
    "wide_densenet_bc40_k36": 1_542_682,
    "wide_densenet_bc40_k48": 2_733_130,
    "wide_densenet_bc40_k60": 4_261_690,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet161": 28_681_000,
    "densenet264": 33_337_704,
    "densenet232": 55_570_984,
    "densenet264_k48": 72_686_632,
}

# DENSENET.md section 3, CIFAR-100 column.
EXPECTED_CIFAR100 = {
    "densenet40_k12": 1_060_132,
    "densenet_bc100_k12": 800_032,
    "densenet_bc190_k40": 25_821_620,
    "wide_densenet_bc40_k48": 2_780_740,
}

# Multiply-adds per image at native resolution (DENSENET.md sections 2 and 3; torchvision's "GFLOPS" metadata).
EXPECTED_MACS = {
    "densenet_bc100_k12": 287.9e6,
    "densenet121": 2.834e9,
    "densenet40_k12": 264.8e6,
    "densenet161": 7.728e9,
    "wide_densenet_bc40_k48": 1.150e9,
}


def test_registry_has_every_named_model() -> None:
    assert sorted(list_models()) == sorted(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_parameter_count_matches_published_figure(name: str) -> None:
    assert profile_model(get_entry(name).config).params == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ["densenet40_k12", "densenet_bc100_k12", "wide_densenet_bc40_k36", "densenet121"])
def test_real_model_has_the_same_count_as_the_profile(name: str) -> None:
    assert count_params(create_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", list(EXPECTED_CIFAR100))
def test_cifar100_counts(name: str) -> None:
    assert profile_model(get_entry(name).config.replace(num_classes=100)).params == EXPECTED_CIFAR100[name]


@pytest.mark.parametrize("name", list(EXPECTED_MACS))
def test_multiply_adds_within_a_tenth_of_a_percent(name: str) -> None:
    macs = profile_model(get_entry(name).config).macs
    assert macs == pytest.approx(EXPECTED_MACS[name], rel=1e-3)


def test_torch_code_variants_match_their_published_counts() -> None:
    # L=40 k=12 with compression but no bottleneck: 599,050 (liuzhuang13/DenseNet#14, C0=2k as in the Torch code).
    assert profile_model(get_entry("densenet40_k12").config.replace(reduction=0.5)).params == 599_050
    # Basic L=100 k=24 with the Torch code's C0=2k instead of the paper's 16: 28,071,706 (DENSENET.md section 3).
    assert profile_model(get_entry("densenet100_k24").config.replace(stem_channels=48)).params == 28_071_706
    # BC-100-12 with only the bottleneck (theta=1): 1,210,066.
    assert profile_model(get_entry("densenet_bc100_k12").config.replace(reduction=1.0)).params == 1_210_066


def test_technical_report_depth_counts() -> None:
    # DenseNet-BC k=12 at L=40/160/340/496: 176,122 / 1,739,002 / 6,909,322 / 14,133,370 (DENSENET.md section 5).
    base = get_entry("densenet_bc100_k12").config
    counts = [profile_model(base.replace(depth=depth)).params for depth in (40, 160, 340, 496)]
    assert counts == [176_122, 1_739_002, 6_909_322, 14_133_370]


def test_channel_bookkeeping_bc100() -> None:
    stages = {s.name: s for s in profile_model(get_entry("densenet_bc100_k12").config).stages}
    assert [stages[f"denseblock{i}"].out_channels for i in (1, 2, 3)] == [216, 300, 342]
    assert [stages[f"transition{i}"].out_channels for i in (1, 2)] == [108, 150]
    assert stages["classifier"].in_channels == 342
