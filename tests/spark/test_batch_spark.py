"""`clm score-batch --engine spark`: the champions' boosters scored inside Spark."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
import pytest

from clm.settings import Settings
from serving.batch import SNAPSHOT_KEY, BatchError, run_score_batch
from serving.spark_batch import run_score_batch_spark
from tests.spark.conftest import with_test_spark

# Spark jobs on the shared bank: a minute or so each on this machine.
pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _last_month_end(settings: Settings) -> str:
    stamps = pq.read_table(
        settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )["event_timestamp"].to_pylist()
    return (max(stamps).date() - timedelta(days=1)).isoformat()


def test_spark_scores_equal_the_default_engine(
    spark: SparkSession, trained_settings: Settings, tmp_path: Path
) -> None:
    settings = with_test_spark(trained_settings)
    as_of = _last_month_end(settings)
    ours = run_score_batch_spark(settings, as_of=as_of, out=tmp_path / "spark.parquet")
    theirs = run_score_batch(
        settings, as_of=as_of, out=tmp_path / "default.parquet", progress=False, compiled=False
    )
    assert ours["rows"] == theirs["rows"] > 100
    assert ours["snapshot_ts"] == theirs["snapshot_ts"]
    assert ours["model_versions"] == theirs["model_versions"]
    a = pq.read_table(tmp_path / "default.parquet")
    b = pq.read_table(tmp_path / "spark.parquet")
    assert b.schema.names == a.schema.names
    assert [f.type for f in b.schema] == [f.type for f in a.schema]
    for column in a.schema.names:
        if column in ("request_id", "ts"):  # one per run, and the moment it scored
            continue
        x = a[column].to_numpy(zero_copy_only=False)
        y = b[column].to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            assert np.allclose(x, y, rtol=0, atol=1e-12, equal_nan=True), column
        else:
            assert x.tolist() == y.tolist(), column
    assert len(set(b["request_id"].to_pylist())) == 1
    assert b.schema.metadata[SNAPSHOT_KEY.encode()] == ours["snapshot_ts"].encode()


def test_spark_batch_refuses_a_date_before_the_data(
    spark: SparkSession, trained_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    with pytest.raises(BatchError, match="no feature snapshot on or before"):
        run_score_batch_spark(with_test_spark(trained_settings), as_of="1999-12-31", out=out)
    assert not out.exists()
