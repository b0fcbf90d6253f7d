"""Per-class figures from predictions: checked against hand-counted cases, and against scikit-learn over edge cases
drawn by hypothesis (the figures of real runs: ``test_figures.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from sklearn import metrics

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
    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.source_base import Source
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


# Property checks against scikit-learn: small inputs drawn to hit ties (logits from a few integers), classes never
# predicted, never present or present in every sample, one sample, all right and all wrong.
CLASS_COUNTS = st.integers(min_value=2, max_value=7)


@st.composite
def single_label_cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    classes = draw(CLASS_COUNTS)
    samples = draw(st.integers(min_value=1, max_value=24))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=samples, max_size=samples))
    shape = draw(st.sampled_from(["drawn", "all right", "all wrong", "one class"]))
    if shape == "drawn":
        logits = draw(st.lists(st.integers(-2, 2), min_size=samples * classes, max_size=samples * classes))
        return torch.tensor(logits, dtype=torch.float32).view(samples, classes), torch.tensor(labels), classes
    predicted = {
        "all right": labels,
        "all wrong": [(label + 1) % classes for label in labels],
        "one class": [0] * samples,
    }[shape]
    return torch.nn.functional.one_hot(torch.tensor(predicted), classes).float(), torch.tensor(labels), classes


@given(single_label_cases())
@settings(max_examples=300, deadline=None)
def test_single_label_figures_are_scikit_learns(case) -> None:
    logits, labels, classes = case
    report = single_label_report(logits, labels, [f"c{i}" for i in range(classes)])
    predicted, indices = logits.argmax(1).numpy(), list(range(classes))
    expected = metrics.precision_recall_fscore_support(labels.numpy(), predicted, labels=indices, zero_division=0)
    for name, column in zip(("precision", "recall", "f1", "support"), expected, strict=True):
        assert [getattr(row, name) for row in report.rows] == pytest.approx(column.tolist(), abs=1e-6), name
    matrix = metrics.confusion_matrix(labels.numpy(), predicted, labels=indices)
    assert report.matrix.tolist() == matrix.tolist()
    off = sorted((-matrix[t, p], t, p) for t in indices for p in indices if t != p and matrix[t, p])[:10]
    assert report.confusions == [(f"c{t}", f"c{p}", int(-count)) for count, t, p in off]


@st.composite
def multi_label_cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    classes = draw(CLASS_COUNTS)
    samples = draw(st.integers(min_value=1, max_value=24))
    cells = samples * classes
    truth = draw(st.lists(st.integers(0, 1), min_size=cells, max_size=cells))
    targets = torch.tensor(truth, dtype=torch.float32).view(samples, classes)
    targets[:, 0] = draw(st.sampled_from([0.0, 1.0]))  # a class present in every sample, or in none
    scores = draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), min_size=cells, max_size=cells))  # ties
    shape = draw(st.sampled_from(["drawn", "all right", "all wrong"]))
    probabilities = torch.tensor(scores).view(samples, classes)
    if shape != "drawn":
        right = targets if shape == "all right" else 1 - targets
        probabilities = 0.2 + 0.6 * right
    return torch.logit(probabilities.double()).float(), targets, classes


@given(multi_label_cases())
@settings(max_examples=300, deadline=None)
def test_multi_label_figures_are_scikit_learns(case) -> None:
    logits, targets, classes = case
    report = multi_label_report(logits, targets, [f"c{i}" for i in range(classes)])
    truth, scores = targets.long().numpy(), torch.sigmoid(logits.double()).numpy()
    predicted = (scores >= 0.5 - 1e-6).astype(int)  # the tool's rule: a class is predicted at 0.5 and above
    for name, scorer in (("precision", metrics.precision_score), ("recall", metrics.recall_score)):
        expected = scorer(truth, predicted, average=None, zero_division=0)
        assert [getattr(row, name) for row in report.rows] == pytest.approx(expected.tolist(), abs=1e-6), name
    f1 = metrics.f1_score(truth, predicted, average=None, zero_division=0)
    assert [row.f1 for row in report.rows] == pytest.approx(f1.tolist(), abs=1e-6)
    assert [row.support for row in report.rows] == truth.sum(0).tolist()
    ranked = [c for c in range(classes) if 0 < truth[:, c].sum() < len(truth)]
    auroc = [metrics.roc_auc_score(truth[:, c], scores[:, c]) for c in ranked]
    precision_at = [metrics.average_precision_score(truth[:, c], scores[:, c]) for c in ranked]
    assert [report.rows[c].auroc for c in ranked] == pytest.approx(auroc, abs=1e-6)
    assert [report.rows[c].average_precision for c in ranked] == pytest.approx(precision_at, abs=1e-6)
    assert all(row.auroc is None for c, row in enumerate(report.rows) if c not in ranked)
    summary = multi_label_summary(report)
    assert summary["f1"] == pytest.approx(metrics.f1_score(truth, predicted, average="macro", zero_division=0))
    if ranked:
        assert summary["auroc"] == pytest.approx(np.mean(auroc)) and summary["map"] == pytest.approx(
            np.mean(precision_at)
        )


@given(st.integers(1, 12), st.integers(2, 9), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_evaluation_top1_top5_and_loss_are_scikit_learns(samples, classes, generator) -> None:
    """The evaluation pass over batches of fixed logits (an identity model, each row's logits distinct), the last row
    masked out as padding."""
    from densenet_ray.train.engine import StepContext, evaluate_each

    logits = torch.tensor([generator.sample(range(100), classes) for _ in range(samples)], dtype=torch.float32)
    labels = torch.tensor([generator.randrange(classes) for _ in range(samples)])
    mask = torch.tensor([index < samples - 1 or samples == 1 for index in range(samples)])
    batches = [(logits[i : i + 4], labels[i : i + 4], mask[i : i + 4]) for i in range(0, samples, 4)]
    (stats,) = evaluate_each(StepContext(torch.nn.Identity(), torch.device("cpu")), [torch.nn.Identity()], batches)
    kept, truth = logits[mask].double(), labels[mask].numpy()
    indices = list(range(classes))
    assert stats.samples == len(truth)
    assert stats.top1_error == pytest.approx(1 - metrics.accuracy_score(truth, kept.argmax(1).numpy()), abs=1e-12)
    log_probabilities = special.log_softmax(kept.numpy(), axis=1)  # scikit-learn's log_loss would clip
    loss = -log_probabilities[np.arange(len(truth)), truth].mean()
    assert stats.loss == pytest.approx(loss, rel=1e-5, abs=1e-6)  # the pass computes in float32
    if classes <= 5:
        assert stats.top5_error is None
    else:
        top5 = metrics.top_k_accuracy_score(truth, kept.numpy(), k=5, labels=indices)
        assert stats.top5_error == pytest.approx(1 - top5, abs=1e-12)
