"""Calibrated verdicts (issue 12 item 1) and hostile traffic (issue 10 defect 2).

PSI is judged against its sampling noise over every column and segment, so a calm
population with small segments is green where the bare banking bands said amber; a
handful of rows is grey with its n; /score_features rows are kept out of verdicts and
extreme finite values (age = 1e300) crash nothing, Evidently included.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.settings import MonitoringSettings, Settings
from monitoring import inputs
from monitoring.drift import compare_populations
from monitoring.psi import band, noise_levels, psi
from serving.predlog import PredictionLog
from tests.serving.test_predlog import scored

THRESHOLDS = MonitoringSettings()
FEATURES = [f"x{i:02d}" for i in range(66)]


def bank(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """66 features; stages of very different sizes (the issue's 300-1,600-row segments)."""
    stage = rng.choice(["declining", "growing", "mature"], n, p=[0.06, 0.3, 0.64])
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    frame["x00"] += shift
    frame["churn_probability"] = 1 / (1 + np.exp(-(frame["x00"] - 3)))
    frame["stage"] = stage
    frame["value_tier"] = rng.choice(["mass", "affluent"], n, p=[0.8, 0.2])
    return frame


def compare(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    return compare_populations(
        reference,
        current,
        features=FEATURES,
        scores=["churn_probability"],
        segments=["value_tier", "stage"],
        thresholds=THRESHOLDS,
    )


def test_psi_noise_level_is_the_mean_and_the_alarm_a_rare_tail() -> None:
    rng = np.random.default_rng(3)
    n1, n2 = 5000, 400
    values = np.array(
        [psi(rng.normal(size=n1), rng.normal(size=n2)) for _ in range(400)], dtype=float
    )
    mean, alarm = noise_levels(n1, n2, 11, tests=1, alpha=0.05)
    # 10 deciles + an empty NaN bin never occupied: 10 occupied bins -> 9 degrees of freedom.
    mean10, alarm10 = noise_levels(n1, n2, 10, tests=1, alpha=0.05)
    assert abs(values.mean() - mean10) < 0.15 * mean10
    assert 0.01 < np.mean(values > alarm10) < 0.10  # about alpha = 5 %
    assert alarm > alarm10 and mean > mean10
    # Many tests push the alarm up: one in 600 PSIs may reach it by chance.
    _, alarm_many = noise_levels(n1, n2, 10, tests=600, alpha=0.05)
    assert alarm_many > 1.5 * alarm10


def test_calm_bank_with_small_segments_is_green_where_bands_alone_said_amber() -> None:
    rng = np.random.default_rng(4)
    reference, current = bank(rng, 5000), bank(rng, 5000)
    summary = compare(reference, current)
    # The old rule (bands alone) flags sampling noise in the 300-row segment...
    declining = next(s for s in summary["segments"] if s["value"] == "declining")
    assert band(declining["max_psi"], THRESHOLDS.psi_amber, THRESHOLDS.psi_red) != "green"
    # ... the calibrated one does not, and says why.
    assert summary["verdict"] == "green", summary["reasons"]
    assert summary["reasons"][0].startswith("GREEN: no PSI above both its band and its noise")
    assert "noise level" in summary["reasons"][0]
    assert summary["tests"] == 67 * (1 + 5)


def test_a_real_shift_is_red_with_its_reason_and_a_small_one_amber() -> None:
    rng = np.random.default_rng(5)
    reference = bank(rng, 5000)
    shocked = compare(reference, bank(rng, 5000, shift=1.0))
    assert shocked["verdict"] == "red"
    assert shocked["reasons"][0].startswith("RED: ")
    assert any("PSI(x00)" in r and "noise level" in r for r in shocked["reasons"])
    assert shocked["red_reasons"] and all(not r.startswith("RED") for r in shocked["red_reasons"])
    watch = compare(reference, bank(rng, 5000, shift=0.45))
    bands = {r["name"]: r["band"] for r in watch["features"]}
    assert bands["x00"] == "amber" and watch["verdict"] == "amber"
    line = next(r for r in watch["reasons"] if "feature PSI(x00)" in r)
    assert line.startswith("AMBER: feature PSI(x00)") and "alarm above" in line


def test_five_rows_are_grey_with_their_n_never_green_or_red() -> None:
    rng = np.random.default_rng(6)
    reference = bank(rng, 5000)
    summary = compare(reference, bank(rng, 5, shift=3.0))
    assert summary["verdict"] == "grey"
    assert summary["reasons"] == [
        "GREY: not enough data (n = 5 rows; at least 200 are needed to judge drift)"
    ]
    assert not summary["red_reasons"]


def test_extreme_finite_values_are_judged_not_crashed_on() -> None:
    rng = np.random.default_rng(7)
    reference = bank(rng, 2000)
    current = bank(rng, 2000)
    current["x01"] = 1e300
    current.loc[:10, "churn_probability"] = 1e300
    summary = compare(reference, current)
    json.dumps(summary, allow_nan=False)
    assert summary["verdict"] == "red"
    assert any(
        "data quality of x01" in r and "outside the reference range" in r
        for r in summary["reasons"]
    )
    score = summary["scores"][0]
    assert score["mean_current"] is not None and score["mean_current"] > 1e290


@pytest.mark.filterwarnings("ignore")
def test_evidently_gets_our_bins_so_1e300_cannot_crash_it(tmp_path: Path) -> None:
    from monitoring.evidently_report import drift_preset_verdicts

    rng = np.random.default_rng(8)
    reference = bank(rng, 1500)[["x00", "x01", "churn_probability"]]
    current = bank(rng, 1500)[["x00", "x01", "churn_probability"]]
    current["x01"] = 1e300
    current.loc[:5, "x00"] = -1e300
    html = tmp_path / "evidently.html"
    result = drift_preset_verdicts(
        reference,
        current,
        ["x00", "x01", "churn_probability"],
        threshold=0.25,
        html_path=html,
        heading={"model": "clm-churn", "version": "7", "period": "2025-03"},
    )
    assert result["x01"]["drifted"] and not result["churn_probability"]["drifted"]
    # Same bins as ours: Evidently's PSI is our PSI (up to its own floor for empty bins).
    ours = psi(reference["churn_probability"].to_numpy(), current["churn_probability"].to_numpy())
    assert result["churn_probability"]["psi"] == pytest.approx(ours, abs=0.005)
    text = html.read_text()
    assert "clm-churn" in text and "version: <b>7</b>" in text and "2025-03" in text
    # Evidently inlines its ~3.5 MB script bundle; binned columns add little on top of it.
    assert html.stat().st_size < 4_000_000


def test_score_features_rows_stay_out_of_production_verdicts(tmp_path: Path) -> None:
    """Defect 2: rows any API key can send through /score_features are not judged by default."""
    settings = Settings.load(home=tmp_path, env={})
    log = PredictionLog(settings.predictions_dir, flush_seconds=3600)
    versions = {"churn": "3", "propensity": "2", "stage": "1"}
    for i in range(250):
        log.append(f"r{i}", "score", scored([f"C{i:07d}"]), versions=versions)
    poisoned = scored([f"P{i:07d}" for i in range(40)])
    log.append("poison", "score_features", poisoned, versions=versions)
    log.close()
    frame, window = inputs.read_prediction_log(settings, window="30d")
    assert len(frame) == 250 and not frame["customer_id"].str.startswith("P").any()
    assert inputs.traffic_counts(settings, window) == {
        "production": 250,
        "score_features": 40,
        "shadow": 0,
    }
    inline, _ = inputs.read_prediction_log(settings, window="30d", traffic="score_features")
    assert len(inline) == 40
