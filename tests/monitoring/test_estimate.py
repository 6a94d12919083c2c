"""Performance before labels (CBPE): the expected AUC matches the AUC outcomes then show,
and a month whose calibration broke is flagged once its outcomes mature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm import metrics
from monitoring.backtest import snapshot_of
from monitoring.estimate import Calibrator, estimate, expected_auc, reconcile
from monitoring.inputs import MonitoringInputError


def test_expected_auc_is_the_mean_auc_of_outcomes_drawn_from_the_probabilities() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(5000), 2)  # ties included
    probabilities = scores**2
    draws = [
        metrics.auc((rng.random(scores.size) < probabilities).astype(float), scores)
        for _ in range(40)
    ]
    assert expected_auc(probabilities, scores) == pytest.approx(np.mean(draws), abs=0.005)


def test_estimate_is_calibrated_on_the_reference_and_a_broken_month_is_flagged() -> None:
    rng = np.random.default_rng(1)
    reference_scores = rng.random(4000)
    # The model's raw scores overstate risk: the truth is half the score.
    reference_labels = (rng.random(4000) < reference_scores / 2).astype(float)
    calibrator = Calibrator(reference_scores, reference_labels)
    assert calibrator.fitted

    calm = rng.random(3000)
    calm_outcomes = (rng.random(3000) < calm / 2).astype(float)
    # Concept drift: the same scores, but outcomes no longer follow them.
    broken = rng.random(3000)
    broken_outcomes = (rng.random(3000) < 0.25).astype(float)
    estimated = {"2025-01": estimate(calm, calibrator), "2025-02": estimate(broken, calibrator)}
    assert estimated["2025-01"]["estimated_event_rate"] == pytest.approx(0.25, abs=0.03)
    realised = {
        "2025-01": {"auc": metrics.auc(calm_outcomes, calm), "event_rate": 0.25, "rows": 3000},
        "2025-02": {"auc": metrics.auc(broken_outcomes, broken), "event_rate": 0.25, "rows": 3000},
    }
    estimated["2025-03"] = estimate(rng.random(100), calibrator)
    rows = {r["month"]: r for r in reconcile(estimated, realised, tolerance=0.03)}
    assert abs(rows["2025-01"]["difference"]) <= 0.03 and not rows["2025-01"]["estimate_wrong"]
    assert rows["2025-02"]["estimate_wrong"]
    assert (
        rows["2025-03"]["status"].startswith("estimated") and "realised_auc" not in rows["2025-03"]
    )


def test_a_batch_file_without_its_snapshot_date_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    pd.DataFrame({"customer_id": ["C1"], "f_age": [40.0]}).to_parquet(path)
    with pytest.raises(MonitoringInputError, match="scores.parquet: no snapshot date"):
        snapshot_of(path)
