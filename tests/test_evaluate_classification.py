"""Classification and clip-target metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from jamspotter.data.records import Sample
from jamspotter.evaluate import evaluate_classification, evaluate_trajectories


def labels(*pairs: tuple[str, str]) -> list[Sample]:
    return [Sample(id=i, label=lab) for i, lab in pairs]


def test_classification_hand_computed():
    gt = labels(("1", "glass"), ("2", "glass"), ("3", "glass"), ("4", "paper"), ("5", "paper"), ("6", "metal"))
    pred = labels(("1", "glass"), ("2", "glass"), ("3", "paper"), ("4", "paper"), ("5", "glass"), ("6", "metal"))
    m = evaluate_classification(gt, pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    g, p = m["per_class"]["glass"], m["per_class"]["paper"]
    assert (g["precision"], g["recall"], g["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert (p["precision"], p["recall"], p["f1"]) == (0.5, 0.5, 0.5)
    assert m["per_class"]["metal"]["f1"] == 1.0
    assert m["weighted"]["f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1 * 1.0) / 6)
    assert m["macro"]["recall"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert m["confusion_matrix"]["labels"] == ["glass", "metal", "paper"]
    assert m["confusion_matrix"]["matrix"] == [[2, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert m["warnings"] == {}


def test_classification_missing_prediction_is_an_error_and_reported():
    gt = labels(("1", "glass"), ("2", "paper"))
    m = evaluate_classification(gt, labels(("1", "glass"), ("x", "paper")))
    assert m["accuracy"] == 0.5
    assert m["per_class"]["paper"]["recall"] == 0.0 and m["per_class"]["paper"]["precision"] is None
    assert m["confusion_matrix"]["columns"] == ["glass", "paper", "(none)"]
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 0, 1]]
    assert m["warnings"] == {"missing_prediction": 1, "prediction_without_gt": 1}


def test_classification_unknown_label_counted():
    m = evaluate_classification(labels(("1", "glass")), labels(("1", "banana")))
    assert m["accuracy"] == 0.0 and m["warnings"]["prediction_label_not_in_gt"] == 1


def clip(id_: str, values, names=("velocity", "curvature")) -> Sample:
    return Sample(id=id_, target={"kind": "trajectory", "values": values, "names": list(names)})


def test_trajectory_mse_mae_per_component():
    gt = [clip("a", [[1.0, 0.0], [2.0, 0.0]]), clip("b", [[0.0, 1.0]])]
    pred = [clip("a", [[2.0, 0.0], [2.0, 0.5]]), clip("b", [[3.0, 1.0]])]
    m = evaluate_trajectories(gt, pred)
    err = np.array([[1.0, 0.0], [0.0, 0.5], [3.0, 0.0]])
    assert m["per_component"]["velocity"] == {"mse": pytest.approx(10 / 3), "mae": pytest.approx(4 / 3)}
    assert m["per_component"]["curvature"] == {"mse": pytest.approx(0.25 / 3), "mae": pytest.approx(0.5 / 3)}
    assert m["mse"] == pytest.approx((err**2).mean()) and m["mae"] == pytest.approx(np.abs(err).mean())
    assert (m["n_clips"], m["n_steps"]) == (2, 3)


def test_trajectory_mismatches_are_counted_not_dropped_silently():
    gt = [clip("a", [[1.0, 0.0], [2.0, 0.0]]), clip("b", [[0.0, 1.0]]), clip("c", [[0.0, 1.0]])]
    pred = [clip("a", [[1.0, 0.0]]), clip("b", [[0.0, 1.0, 5.0]], names=("x", "y", "z"))]
    m = evaluate_trajectories(gt, pred)
    assert m["warnings"] == {"component_count_mismatch": 1, "length_mismatch": 1, "missing_prediction": 1}
    assert (m["n_clips"], m["n_steps"], m["mse"]) == (1, 1, 0.0)
