"""Per-class figures from predictions: checked against hand-counted cases and against scikit-learn-free arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from densenet_ray.train.metrics import multi_label_report, multi_label_summary, single_label_report


def test_single_label_rows_and_confusions_are_the_hand_counted_ones() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 1, 1, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float()
    report = single_label_report(logits, labels, ["cat", "dog", "fox"])
    cat, dog, fox = report.rows
    assert (cat.precision, cat.recall, cat.support) == (1.0, 0.5, 2)
    assert (dog.precision, dog.recall, dog.support) == (pytest.approx(0.25), 1.0, 1)
    assert (fox.precision, fox.recall) == (1.0, pytest.approx(1 / 3))
    assert fox.f1 == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    assert report.confusions == [("fox", "dog", 2), ("cat", "dog", 1)]
    assert report.matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 2, 1]]


def test_multi_label_auroc_is_the_pairwise_ranking_probability() -> None:
    # Class 0: positives scored 0.9 and 0.4, negatives 0.6 and 0.1: 3 of the 4 (positive, negative) pairs ranked right.
    logits = torch.logit(torch.tensor([[0.9, 0.2], [0.4, 0.7], [0.6, 0.8], [0.1, 0.3]]))
    targets = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]]).float()
    report = multi_label_report(logits, targets, ["effusion", "nodule"])
    assert report.rows[0].auroc == pytest.approx(0.75)
    assert report.rows[1].auroc == pytest.approx(1.0)  # 0.7, 0.8 and 0.3 against 0.2: all above
    assert report.rows[0].f1 == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # at 0.5: predicted {0.9, 0.6}, one right
    summary = multi_label_summary(report)
    assert summary["auroc"] == pytest.approx(0.875)
    assert summary["auroc_by_class"] == pytest.approx({"effusion": 0.75, "nodule": 1.0})


def test_a_class_without_negatives_has_no_auroc_and_is_left_out_of_the_mean() -> None:
    logits = torch.zeros(3, 2)
    targets = torch.tensor([[1, 1], [1, 0], [1, 1]]).float()
    summary = multi_label_summary(multi_label_report(logits, targets, ["a", "b"]))
    assert summary["auroc_by_class"]["a"] is None and not math.isnan(summary["auroc"])


def test_per_class_on_shards_without_labels_is_one_line(tmp_path, fixture_tar) -> None:
    import densenet_ray as dr
    from densenet_ray.data.build import build_dataset
    from densenet_ray.data.source_base import Source
    from densenet_ray.errors import UserError
    from tests.data.sources_fixtures import CLASSES, fixture_images

    photos = [data for _, _, data in fixture_images(fixture_tar)[:20]]

    class Unlabelled(Source):  # photographs with no class (label -1), as a list without its label column gives
        def __len__(self) -> int:
            return len(photos)

        def read(self, index: int) -> tuple[bytes, str, int]:
            return photos[index], "jpg", -1

    build_dataset(Unlabelled("cifar10", "test", CLASSES, "unlabelled"), str(tmp_path / "shards"), shard_size=10)
    torch.save(dr.create_model("densenet_bc100_k12").state_dict(), tmp_path / "bc100.pth")
    with pytest.raises(UserError, match=r"^--per-class: no sample of test at .*shards carries a label$"):
        dr.evaluate(
            str(tmp_path / "bc100.pth"),
            data=str(tmp_path / "shards"),
            model="densenet_bc100_k12",
            dataset="cifar10",
            loader_workers=0,
            per_class=True,
        )
