"""clm.metrics: the one definition of each metric training and monitoring report."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from clm import metrics


@pytest.fixture(params=[0, 1])
def scored(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(request.param)
    n = 3001  # not a multiple of ten: deciles differ in size by one
    y = (rng.random(n) < 0.15).astype(float)
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.2, n), 0.001, 0.999)
    p[: n // 3] = np.round(p[: n // 3], 2)  # ties
    return y, p


def test_ranking_metrics_on_a_hand_computed_example() -> None:
    # Pairs (event, non-event): 0.9>0.1, 0.9>0.4, 0.4=0.4 (half), 0.4>0.1 -> 3.5 of 4.
    y = [1, 1, 0, 0]
    p = [0.9, 0.4, 0.4, 0.1]
    assert metrics.auc(y, p) == pytest.approx(3.5 / 4)
    assert metrics.gini(y, p) == pytest.approx(2 * 3.5 / 4 - 1)
    # Events' scores {0.4, 0.9}, non-events' {0.1, 0.4}: CDFs differ most at 0.1 (0 vs 1/2).
    assert metrics.ks(y, p) == pytest.approx(0.5)
    # Precision at recall 1/2 (threshold 0.9) = 1, at recall 1 (threshold 0.4) = 2/3.
    assert metrics.pr_auc(y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert metrics.brier(y, p) == pytest.approx((0.01 + 0.36 + 0.16 + 0.01) / 4)
    assert metrics.log_loss(y, p) == pytest.approx(
        -(np.log(0.9) + np.log(0.4) + np.log(0.6) + np.log(0.9)) / 4
    )


def test_ks_is_the_two_sample_statistic(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    expected = stats.ks_2samp(p[y == 1], p[y == 0]).statistic
    assert metrics.ks(y, p) == pytest.approx(expected, abs=1e-12)


def test_deciles_lift_and_calibration(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    top = np.argsort(-p, kind="mergesort")[: int(np.ceil(len(y) / 10))]
    assert metrics.top_decile_lift(y, p) == pytest.approx(y[top].mean() / y.mean())
    lifts = metrics.lift_by_decile(y, p)
    assert len(lifts) == 10 and lifts[0] > 1 > lifts[-1]
    table = metrics.calibration_by_decile(y, p)
    assert [row["decile"] for row in table] == list(range(1, 11))
    assert sum(row["rows"] for row in table) == len(y)
    assert {row["rows"] for row in table} == {300, 301}
    predicted = [row["mean_predicted"] for row in table]
    assert predicted == sorted(predicted)  # decile 1 = lowest scores
    assert table[0]["observed_rate"] < table[-1]["observed_rate"]
    all_metrics = metrics.binary_metrics(y, p)
    assert all_metrics["gini"] == pytest.approx(2 * all_metrics["auc"] - 1)
    assert all_metrics["calibration_bias"] == pytest.approx(p.mean() - y.mean())
    assert all_metrics["rows"] == len(y)


def test_calibration_error_is_zero_for_perfect_calibration() -> None:
    levels = np.linspace(0.05, 0.95, 10)
    p = np.repeat(levels, 1000)
    y = np.concatenate([(np.arange(1000) < 1000 * q).astype(float) for q in levels])
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-9)
    # Shifting every score by 0.04 shows up as an error of 0.04.
    assert metrics.expected_calibration_error(y, p + 0.04) == pytest.approx(0.04)


def test_one_outcome_or_no_rows_is_nan_never_an_exception() -> None:
    y, p = np.zeros(50), np.linspace(0, 1, 50)
    found = metrics.binary_metrics(y, p)
    for name in ("auc", "gini", "ks", "pr_auc", "top_decile_lift"):
        assert np.isnan(found[name]), name
    # Defined with one outcome: how far the probabilities are from what happened.
    assert found["brier"] == pytest.approx(np.mean(p**2))
    assert np.isfinite(found["log_loss"]) and found["event_rate"] == 0.0
    assert np.isnan(metrics.auc(np.ones(3), [0.2, 0.5, 0.9]))
    empty = metrics.binary_metrics([], [])
    assert empty["rows"] == 0 and all(np.isnan(v) for k, v in empty.items() if k != "rows")
    assert metrics.calibration_by_decile([0, 1, 1], [0.1, 0.5, 0.9]) == []
    assert np.isnan(metrics.expected_calibration_error([0, 1, 1], [0.1, 0.5, 0.9]))


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="3 outcomes but 2 scores"):
        metrics.auc([0, 1, 1], [0.1, 0.2])


def test_multiclass_metrics() -> None:
    classes = ["a", "b", "c", "d"]
    y = np.array([0, 0, 1, 1, 2, 2])  # class d never happens
    proba = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.6, 0.2, 0.1],  # a predicted as b
            [0.1, 0.7, 0.1, 0.1],
            [0.1, 0.8, 0.05, 0.05],
            [0.1, 0.1, 0.4, 0.4],  # c (first of a tie)
            [0.1, 0.1, 0.2, 0.6],  # c predicted as d
        ]
    )
    found = metrics.multiclass_metrics(y, proba, classes)
    assert found["accuracy"] == pytest.approx(4 / 6)
    assert found["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.1, 0.7, 0.8, 0.4, 0.2])))
    # Recall: a 1/2, b 2/2, c 1/2; d has no actual rows, so no recall at all.
    assert (found["recall_a"], found["recall_b"], found["recall_c"]) == (0.5, 1.0, 0.5)
    assert "recall_d" not in found
    assert np.isnan(metrics.per_class_recall(y, proba.argmax(axis=1), 4)[3])
    # F1 per class present in labels or predictions: a 2/3, b 4/5, c 2/3, d 0.
    assert found["macro_f1"] == pytest.approx(np.mean([2 / 3, 4 / 5, 2 / 3, 0.0]))
    assert found["rows"] == 6
