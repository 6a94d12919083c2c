"""Defect 8: customers the service did not know reach monitoring's unknown-customer band.

The log is written by serving's own PredictionLog (as the service writes it) into a
fresh workspace; monitoring reads it back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clm.settings import MonitoringSettings, Settings
from monitoring import inputs
from monitoring.drift import compare_populations
from serving.predlog import PredictionLog
from tests.serving.test_predlog import scored

VERSIONS = {"churn": "3", "propensity": "2", "stage": "1"}


def write_log(settings: Settings, known: int, unknown: int) -> None:
    log = PredictionLog(settings.predictions_dir, flush_seconds=3600)
    for i in range(known):
        missing = [f"X{i:07d}"] if i < unknown else []
        log.append(f"r{i}", "score", scored([f"C{i:07d}"]), unknown=missing, versions=VERSIONS)
    # Inline rows have no unknown customers and do not count as requested ids.
    log.append("inline", "score_features", scored(["A", "B", "C"]))
    log.close()


def test_unknown_share_is_read_from_the_log_and_can_turn_red(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, env={})
    write_log(settings, known=300, unknown=30)

    frame, window = inputs.read_prediction_log(settings, window="30d")
    # Only scored production rows are compared: unknown rows carry no scores or features,
    # and the /score_features rows are counted apart (defect 2).
    assert len(frame) == 300 and frame["churn_probability"].notna().all()
    assert not frame["customer_id"].str.startswith("X").any()
    everything, _ = inputs.read_prediction_log(settings, window="30d", traffic="all")
    assert len(everything) == 303
    assert inputs.traffic_counts(settings, window)["score_features"] == 3
    assert inputs.unknown_customers(settings, window) == (330, 30)

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"age": rng.normal(40, 10, 500), "churn_probability": rng.random(500)})
    current = pd.DataFrame({"age": rng.normal(40, 10, 500), "churn_probability": rng.random(500)})
    summary = compare_populations(
        reference,
        current,
        features=["age"],
        scores=["churn_probability"],
        thresholds=MonitoringSettings(),
        unknown_customers=inputs.unknown_customers(settings, window),
    )
    assert summary["quality"]["unknown_customers"]["band"] == "red"  # 9.1% > 5%
    assert summary["verdict"] == "red"
    assert any("unknown customers" in r for r in summary["red_reasons"])


def test_a_log_without_status_reports_no_unknown_share(tmp_path: Path) -> None:
    """Segments written before the status column: the share is unknown, not zero."""
    settings = Settings.load(home=tmp_path, env={})
    write_log(settings, known=5, unknown=0)
    for path in settings.predictions_dir.glob("date=*/*.parquet"):
        pd.read_parquet(path).drop(columns=["status"]).to_parquet(path, index=False)
    frame, window = inputs.read_prediction_log(settings, window="30d")
    assert len(frame) == 5
    assert inputs.unknown_customers(settings, window) is None
