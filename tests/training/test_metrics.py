"""Our metrics against an independent implementation (scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from training import metrics


@pytest.fixture(params=[0, 1, 2])
def scored(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(request.param)
    n = 3000
    y = (rng.random(n) < 0.15).astype(float)
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.2, n), 0.001, 0.999)
    # Ties matter for AUC and PR-AUC: round some scores.
    p[: n // 3] = np.clip(np.round(p[: n // 3], 2), 0.01, 0.99)
    return y, p


def test_binary_metrics_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    ours = metrics.binary_metrics(y, p)
    assert ours["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert ours["gini"] == pytest.approx(2 * skm.roc_auc_score(y, p) - 1, abs=1e-12)
    assert ours["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=1e-12)
    assert ours["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, p)
    assert ours["ks"] == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    top = np.argsort(-p, kind="mergesort")[: int(np.ceil(len(y) * 0.1))]
    assert ours["top_decile_lift"] == pytest.approx(y[top].mean() / y.mean())
    assert ours["calibration_bias"] == pytest.approx(p.mean() - y.mean())


def test_calibration_error_is_zero_for_perfect_calibration() -> None:
    rng = np.random.default_rng(3)
    p = np.repeat(np.linspace(0.05, 0.95, 10), 1000)
    y = np.concatenate(
        [(np.arange(1000) < 1000 * q).astype(float) for q in np.linspace(0.05, 0.95, 10)]
    )
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-9)
    # Shifting every score by 0.1 shows up as an error of about 0.1.
    assert metrics.expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) == pytest.approx(
        0.1, abs=0.01
    )
    assert rng is not None


def test_auc_undefined_with_one_class() -> None:
    assert np.isnan(metrics.auc(np.zeros(10), np.linspace(0, 1, 10)))


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(5)
    classes = ["a", "b", "c", "d"]
    y = rng.integers(0, 4, 2000)
    logits = rng.normal(size=(2000, 4))
    logits[np.arange(2000), y] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ours = metrics.multiclass_metrics(y, proba, classes)
    predicted = proba.argmax(axis=1)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=range(4)), abs=1e-9)
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"), abs=1e-12)
    recalls = skm.recall_score(y, predicted, average=None)
    for name, value in zip(classes, recalls, strict=True):
        assert ours[f"recall_{name}"] == pytest.approx(value)


def test_stay_baseline() -> None:
    current = np.array([0, 1, 2, 2, 5])
    following = np.array([0, 2, 2, 3, 5])
    assert metrics.stay_rate(current, following) == pytest.approx(0.6)
    proba = metrics.stay_baseline_proba(current, 6, 0.6)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == current).all()
    assert proba[0, 0] == pytest.approx(0.6)
