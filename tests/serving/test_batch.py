"""`clm score-batch`: every customer at a snapshot, with the prediction log's columns."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.settings import Settings
from serving.batch import BatchError, read_snapshot, run_score_batch
from tests.serving.registry_tools import champion, download_version


@pytest.fixture(scope="module")
def latest_month_end(trained_settings: Settings) -> str:
    stamps = pq.read_table(
        trained_settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )["event_timestamp"].to_pylist()
    return (max(stamps).date() - timedelta(days=1)).isoformat()


def test_score_batch_scores_every_customer(
    trained_settings: Settings, latest_month_end: str, tmp_path: Path
) -> None:
    import lightgbm as lgb

    out = tmp_path / "scores.parquet"
    summary = run_score_batch(
        trained_settings, as_of=latest_month_end, out=out, progress=False, compiled=True
    )
    frame = pd.read_parquet(out)
    _, snapshot = read_snapshot(trained_settings, latest_month_end, ["age"])
    assert summary["rows"] == len(frame) == snapshot.num_rows > 100
    # Scored with compiled trees (serving/compiled.py), every booster of the three families.
    assert {"churn/churn", "stage/stage"} <= set(summary["compiled"])
    assert any(key.startswith("propensity/") for key in summary["compiled"])
    assert set(summary["compiled"].values()) <= {"compiled", "cached"}, summary["compiled"]
    assert frame["customer_id"].is_unique
    versions = {f: champion(trained_settings, f) for f in ("churn", "propensity", "stage")}
    assert summary["model_versions"] == versions
    assert set(frame["version_churn"]) == {versions["churn"]}
    assert set(frame["endpoint"]) == {"batch"}
    for column in ("churn_probability", *[f"propensity_{p}" for p in PROPENSITY_PRODUCTS]):
        assert frame[column].between(0, 1).all(), column
    stage = frame[[f"stage_prob_{s}" for s in STAGES]].to_numpy()
    assert np.allclose(stage.sum(axis=1), 1.0)
    assert (frame["stage_next"] == np.array(STAGES)[stage.argmax(axis=1)]).all()
    # The churn column is the champion booster on the snapshot's features.
    root = download_version(trained_settings, "churn", versions["churn"], tmp_path / "churn")
    manifest = json.loads((root / "manifest.json").read_text())
    booster = lgb.Booster(model_file=str(root / manifest["boosters"]["churn"]))
    x = frame[[f"f_{f}" for f in manifest["features"]]].to_numpy(dtype=float)
    assert np.allclose(frame["churn_probability"], booster.predict(x), atol=1e-12)


def test_direct_read_equals_feast_historical_features(
    trained_settings: Settings, latest_month_end: str
) -> None:
    """The batch reads the offline feature table directly: same values as Feast's join."""
    from features.store import feature_names, training_frame

    service = trained_settings.models.churn.feature_service
    names = feature_names(trained_settings, service)
    snapshot_ts, table = read_snapshot(trained_settings, latest_month_end, names)
    direct = table.to_pandas().sort_values("customer_id").head(60).reset_index(drop=True)
    entity = pd.DataFrame({"customer_id": direct["customer_id"], "event_timestamp": snapshot_ts})
    feast = training_frame(trained_settings, service, entity, progress=False)
    assert list(feast["customer_id"]) == list(direct["customer_id"])
    np.testing.assert_allclose(
        feast[names].to_numpy(dtype=float), direct[names].to_numpy(dtype=float), equal_nan=True
    )


def test_bad_dates_are_clear_errors(trained_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="YYYY-MM-DD"):
        run_score_batch(
            trained_settings, as_of="last month", out=tmp_path / "x.parquet", progress=False
        )
    with pytest.raises(BatchError, match="no feature snapshot"):
        run_score_batch(
            trained_settings, as_of="1999-12-31", out=tmp_path / "x.parquet", progress=False
        )
    assert not (tmp_path / "x.parquet").exists()
