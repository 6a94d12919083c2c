"""Feast's Spark offline store (the production profile's): training sets come through it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from clm.settings import Settings
from features.catalog import FEATURE_FILE
from tests.fixtures.bank import make_settings
from tests.spark.conftest import with_test_spark

# Spark jobs on the shared bank: a minute or so each on this machine.
pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def test_training_set_through_spark_equals_duckdb(
    spark: SparkSession, feature_settings: Settings, tmp_path: Path
) -> None:
    from features.store import feature_store, repo_config, run_apply, training_frame

    settings = with_test_spark(make_settings(tmp_path))
    settings = settings.model_copy(
        update={"features": settings.features.model_copy(update={"offline_store": "spark"})}
    )
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "features").symlink_to(feature_settings.feature_dir)
    assert settings.features.offline_engine == "spark"
    assert repo_config(settings).offline_store.type == "spark"
    run_apply(settings)
    source = feature_store(settings).get_data_source("customer_features_source")
    assert type(source).__name__ == "SparkSource"

    # Entity rows on snapshots and between them (a point-in-time join picks the latest
    # snapshot at or before each row's timestamp), plus a customer the bank never had.
    table = pd.read_parquet(feature_settings.feature_dir / FEATURE_FILE)
    rows = table[["customer_id", "event_timestamp"]].sample(150, random_state=3)
    rows.loc[rows.index[::2], "event_timestamp"] += pd.Timedelta(days=12)
    unknown = pd.DataFrame({"customer_id": ["C9999999"], "event_timestamp": [rows.iloc[0, 1]]})
    rows = pd.concat([rows, unknown], ignore_index=True)
    rows["churn_90d"] = np.arange(len(rows)) % 2  # extra columns ride along, in order

    ours = training_frame(settings, "churn_v1", rows, progress=False)
    theirs = training_frame(feature_settings, "churn_v1", rows, progress=False)
    assert list(ours.columns) == list(theirs.columns)
    assert ours["customer_id"].tolist() == rows["customer_id"].tolist()
    assert ours["churn_90d"].tolist() == rows["churn_90d"].tolist()
    pd.testing.assert_series_equal(ours["event_timestamp"], theirs["event_timestamp"])
    names = [c for c in ours.columns if c not in rows.columns]
    assert len(names) > 60
    np.testing.assert_allclose(ours[names].to_numpy(), theirs[names].to_numpy(), rtol=1e-12)
    assert ours[names].iloc[-1].isna().all()  # the unknown customer: no features, no crash
    assert ours[names].iloc[:-1].notna().any(axis=1).all()
