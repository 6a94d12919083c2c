"""Final boosters on a stratified, reweighted sample: rare classes kept, totals restored."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training import synthetic
from training.train import fit, stratified_rows, tasks_for


@pytest.mark.parametrize("family", ["churn", "stage"])
def test_stratified_rows_keep_rare_classes_and_restore_class_totals(family: str) -> None:
    ts = synthetic.training_set(family, customers=600, months=10)
    task = tasks_for(ts)[0]
    every = task.positions["train"]
    assert task.targets is not None
    y = task.targets[every].astype(int)
    counts = np.bincount(y)
    limit = len(every) // 2
    rows = stratified_rows(task, "train", limit, seed=0)
    assert rows.weights is not None and len(rows.weights) == len(rows.positions)
    assert set(rows.positions) <= set(every)
    # About `limit` rows (each row is drawn at its class's rate).
    assert abs(len(rows.positions) - limit) < 0.1 * limit
    kept = task.targets[rows.positions].astype(int)
    kept_counts = np.bincount(kept, minlength=len(counts))
    present = counts > 0
    # A class no larger than an equal share of the limit is kept whole, at weight 1.
    small = np.flatnonzero(present & (counts <= limit / present.sum()))
    assert len(small) > 0 or family == "stage"  # synthetic stages are about balanced
    for label in small:
        assert kept_counts[label] == counts[label]
        assert np.all(rows.weights[kept == label] == 1.0)
    assert np.all(rows.weights >= 1.0)
    # Weighted, each class weighs what it weighs in the whole split.
    weighted = np.bincount(kept, weights=rows.weights, minlength=len(counts))
    np.testing.assert_allclose(weighted[present], counts[present], rtol=0.08)
    # The same seed draws the same rows; a split within the limit is used whole, unweighted.
    again = stratified_rows(task, "train", limit, seed=0)
    assert np.array_equal(again.positions, rows.positions)
    whole = stratified_rows(task, "train", len(every), seed=0)
    assert np.array_equal(whole.positions, every) and whole.weights is None
    assert stratified_rows(task, "train", 0, seed=0).weights is None


def test_a_weighted_sample_keeps_churn_probabilities_calibrated() -> None:
    """Sampling non-churners without the weights would inflate every churn probability."""
    ts = synthetic.training_set("churn", customers=600, months=10)
    task = tasks_for(ts)[0]
    assert task.targets is not None
    rate = float(task.targets[task.positions["train"]].mean())
    sample = stratified_rows(task, "train", len(task.positions["train"]) // 2, seed=0)
    assert sample.weights is not None
    booster, _ = fit(task, ts.features, {}, seed=0, train=sample)
    x, _ = task.xy(task.positions["train"], ts.features)
    mean_probability = float(booster.predict(x.astype(np.float64)).mean())
    assert abs(mean_probability - rate) < 0.25 * rate
