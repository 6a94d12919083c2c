"""`clm features build --engine spark`: the DuckDB pipeline's SQL, transpiled, on Spark."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from clm.settings import Settings
from clm.spark import SparkError
from features.catalog import FEATURE_FILE, FEATURE_NAMES, LABEL_FILE
from features.spark_engine import SparkSql, run_build_spark
from tests.fixtures.bank import make_settings
from tests.spark.conftest import with_test_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.mark.parametrize(
    "sql",
    [
        # range() stops before its end; Spark's sequence() includes it.
        "SELECT count(*), max(r) FROM range(DATE '2024-01-01', DATE '2024-04-01', INTERVAL 1 MONTH) t(r)",
        # date_diff counts calendar boundaries (one month, one day, one year here).
        "SELECT date_diff('month', DATE '2024-03-31', DATE '2024-04-01'), "
        "date_diff('day', DATE '2024-03-31', DATE '2024-04-01'), "
        "date_diff('year', DATE '2024-12-31', DATE '2025-01-01')",
        # epoch keeps the fraction of a second.
        "SELECT epoch(TIMESTAMPTZ '2024-01-01 00:00:00.25+00')",
        # lists are 1-based.
        "SELECT list_value('a', 'b', 'c')[1 + 1]",
        "SELECT count(*) FILTER (WHERE x > 1), sum(x) FROM (SELECT 1 AS x UNION ALL SELECT 2) GROUP BY ALL",
    ],
)
def test_duckdb_idioms_mean_the_same_on_spark(spark: SparkSession, sql: str) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    expected = con.execute(sql).fetchall()
    got = SparkSql(spark).execute(sql).fetchall()
    assert [tuple(_plain(v) for v in row) for row in got] == [
        tuple(_plain(v) for v in row) for row in expected
    ]


def _plain(value: object) -> object:
    return value.isoformat()[:10] if hasattr(value, "isoformat") else value


def test_untranslatable_sql_names_the_statement(spark: SparkSession) -> None:
    with pytest.raises(SparkError, match=r"date_diff\('hour'"):
        SparkSql(spark).execute("SELECT date_diff('hour', DATE '2024-01-01', DATE '2024-01-02')")
    with pytest.raises(SparkError, match="no_such_table"):
        SparkSql(spark).execute("CREATE OR REPLACE TEMP TABLE t AS SELECT * FROM no_such_table")


@pytest.mark.slow
def test_spark_build_equals_duckdb_build(
    spark: SparkSession, feature_settings: Settings, tmp_path: Path
) -> None:
    """Same raw tables, both engines: the same feature table and labels, row for row."""
    settings = with_test_spark(make_settings(tmp_path))
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "raw").symlink_to(feature_settings.raw_dir)
    summary = run_build_spark(settings, progress=False)
    assert summary["engine"] == "spark"
    assert summary["features"] == list(FEATURE_NAMES)
    for name in (FEATURE_FILE, LABEL_FILE):
        duck = pq.read_table(feature_settings.feature_dir / name)
        ours = pq.read_table(settings.feature_dir / name)
        assert ours.schema.names == duck.schema.names, name
        assert [f.type for f in ours.schema] == [f.type for f in duck.schema], name
        assert ours.num_rows == duck.num_rows > 1000, name
        for column in duck.schema.names:
            a = duck[column].to_numpy(zero_copy_only=False)
            b = ours[column].to_numpy(zero_copy_only=False)
            if a.dtype.kind == "f":
                assert np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), (name, column)
            else:
                assert a.tolist() == b.tolist(), (name, column)
