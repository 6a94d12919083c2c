"""Churn risk bands come from configuration (`serving.risk_band_medium/high`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from clm.settings import REPO_ROOT, Settings, SettingsError
from serving.batch import feature_matrix, load_champions, read_snapshot
from serving.scoring import DEFAULT_RISK_BANDS, risk_bands, score


def config_with(tmp_path: Path, **serving: float) -> Path:
    data = yaml.safe_load((REPO_ROOT / "mlflow.yaml").read_text())
    data["serving"].update(serving)
    path = tmp_path / "mlflow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_configured_bands_change_the_risk_band(trained_settings: Settings, tmp_path: Path) -> None:
    defaults = Settings.load(home=trained_settings.home, env={})
    assert risk_bands(defaults.serving) == DEFAULT_RISK_BANDS  # mlflow.yaml = the code defaults

    models, _ = load_champions(trained_settings)
    stamps = pq.read_table(
        trained_settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )["event_timestamp"].to_pylist()
    as_of = (max(stamps).date() - timedelta(days=1)).isoformat()
    _, table = read_snapshot(trained_settings, as_of, list(models.union))
    ids = [str(c) for c in table["customer_id"].to_pylist()]
    matrix = feature_matrix(table, models.union)
    churn = score(models, ids, matrix, explain=False, build_results=False).churn

    # Cut-offs at this bank's churn terciles: every band is used, unlike the defaults'.
    medium, high = (float(q) for q in np.quantile(churn, [1 / 3, 2 / 3]))
    assert 0 < medium < high < 1
    settings = Settings.load(
        config_with(tmp_path, risk_band_medium=medium, risk_band_high=high),
        home=trained_settings.home,
        env={},
    )
    configured = score(
        models, ids, matrix, explain=False, bands=risk_bands(settings.serving)
    ).results
    default = score(models, ids, matrix, explain=False).results
    got = np.array([r["churn"]["risk_band"] for r in configured])
    expected = np.where(churn < medium, "low", np.where(churn < high, "medium", "high"))
    assert (got == expected).all()
    assert {"low", "medium", "high"} <= set(got)
    default_got = np.array([r["churn"]["risk_band"] for r in default])
    assert (default_got != got).any()
    assert (
        default_got == np.where(churn < 0.10, "low", np.where(churn < 0.30, "medium", "high"))
    ).all()


def test_bands_out_of_order_are_a_clear_settings_error(tmp_path: Path) -> None:
    path = config_with(tmp_path, risk_band_medium=0.4, risk_band_high=0.2)
    with pytest.raises(SettingsError, match="risk_band_medium"):
        Settings.load(path, home=tmp_path, env={})
