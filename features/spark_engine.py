"""`clm features build --engine spark`: the DuckDB pipeline's own SQL, run on Spark.

There is one definition of each feature and label: the SQL that features/pipeline.py
writes. This engine runs the very same statements (`_views`, `_build_sql`, `_add_stage`,
`_labels` are called with a connection-like object) after sqlglot has transpiled each from
DuckDB's dialect to Spark's, so a feature added to the pipeline is computed by both
engines without a second copy. sqlglot translates most of the dialect; `SparkSql._rewrite`
fixes the few places where the same words mean different things in the two engines:

- `read_parquet('dir/**/*.parquet')` -> a view over Spark's recursive parquet reader;
- `range(a, b, step)` excludes `b`, Spark's `sequence` includes it;
- `date_diff('month' | 'day' | 'year', a, b)` counts calendar boundaries in DuckDB, whole
  elapsed units in Spark's `datediff(unit, ...)`;
- `epoch(ts)` keeps microseconds, Spark's `unix_timestamp` drops them;
- `list[i]` is 1-based in DuckDB, 0-based in Spark;
- `CREATE TEMP TABLE` -> a cached temporary view; `UPDATE t SET c = v` (no WHERE) ->
  the view again with the column replaced; `DESCRIBE` -> the view's schema.

A statement sqlglot cannot translate fails with the statement named, never silently.
tests/spark/test_features_spark.py asserts both engines write equal tables.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm import atomic
from clm.progress import step_progress
from clm.spark import SparkError, spark_session, write_single_parquet
from features import pipeline
from features.catalog import BUILD_INFO_FILE, FEATURE_FILE, FEATURE_NAMES, LABEL_FILE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from clm.settings import Settings

__all__ = ["SparkSql", "run_build_spark"]


class SparkSql:
    """Enough of a DuckDB connection for the feature pipeline: `execute(sql)` runs a
    DuckDB statement on Spark; `fetchall()` / `fetchone()` return its rows."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._rows: list[tuple[Any, ...]] = []
        self._parquet_views: dict[str, str] = {}
        self._cached: dict[str, DataFrame] = {}

    # --- the connection surface the pipeline uses ---
    def execute(self, sql: str) -> SparkSql:
        import sqlglot
        from sqlglot import exp

        try:
            tree = sqlglot.parse_one(sql, read=_duckdb_dialect())
        except sqlglot.errors.ParseError as exc:
            raise SparkError(f"cannot parse the pipeline's SQL for Spark: {exc}\n{sql}") from exc
        tree = self._rewrite(tree)
        self._rows = []
        if isinstance(tree, exp.Create):
            self._create(tree, sql)
        elif isinstance(tree, exp.Update):
            self._update(tree, sql)
        elif isinstance(tree, exp.Describe):
            df = self._sql(tree.this, sql)
            self._rows = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
        else:
            self._rows = [tuple(r) for r in self._sql(tree, sql).collect()]
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def table(self, name: str) -> DataFrame:
        """A view the pipeline created, as a Spark DataFrame."""
        return self.spark.table(name)

    def close(self) -> None:
        for df in self._cached.values():
            df.unpersist()
        self._cached.clear()

    # --- statements ---
    def _sql(self, tree: Any, original: str) -> DataFrame:
        text = tree.sql(dialect="spark")
        try:
            return self.spark.sql(text)
        except Exception as exc:  # AnalysisException, ParseException: name the statement
            raise SparkError(
                f"Spark cannot run a statement of the feature pipeline: {_first_line(exc)}\n"
                f"DuckDB SQL:\n{original.strip()}\nas Spark SQL:\n{text}"
            ) from exc

    def _create(self, tree: Any, original: str) -> None:
        from sqlglot import exp

        name = tree.this.name if isinstance(tree.this, exp.Table) else tree.this.this.name
        df = self._sql(tree.expression, original)
        if str(tree.args.get("kind", "")).upper() == "TABLE":
            # A DuckDB table is computed once and read many times: cache it likewise.
            df = df.persist()
            old = self._cached.pop(name, None)
            self._cached[name] = df
            if old is not None:
                old.unpersist()
        df.createOrReplaceTempView(name)

    def _update(self, tree: Any, original: str) -> None:
        from pyspark.sql import functions as F

        if tree.args.get("where") is not None or tree.args.get("from_") is not None:
            raise SparkError(f"the Spark engine supports UPDATE without WHERE only:\n{original}")
        name = tree.this.name
        df = self.spark.table(name)
        for assignment in tree.expressions:
            column = assignment.this.name
            value = assignment.expression.sql(dialect="spark")
            df = df.withColumn(column, F.expr(value).cast(df.schema[column].dataType))
        df = df.persist()
        self._cached[name] = df
        df.createOrReplaceTempView(name)

    # --- dialect fixes (see the module docstring) ---
    def _rewrite(self, tree: Any) -> Any:
        from sqlglot import exp

        def fix(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and isinstance(node.this, exp.ReadParquet):
                return self._parquet_table(node)
            if isinstance(node, exp.Table) and isinstance(node.this, exp.GenerateSeries):
                # FROM range(a, b, step) t(r) -> FROM (SELECT explode(sequence(...)) AS r) t
                alias = node.args.get("alias")
                columns = alias.columns if alias is not None else []
                column = columns[0].name if columns else "range"
                series = exp.Explode(this=_inclusive(node.this.copy()))
                return exp.Subquery(
                    this=exp.select(exp.alias_(series, column)),
                    alias=exp.TableAlias(this=exp.to_identifier(alias.name if alias else "t")),
                )
            if isinstance(node, exp.GenerateSeries):
                return _inclusive(node)
            if isinstance(node, exp.DateDiff):
                return _boundary_diff(node)
            if isinstance(node, exp.TimeToUnix):
                micros = exp.Anonymous(this="unix_micros", expressions=[node.this.copy()])
                return exp.Div(this=micros, expression=exp.Literal.number("1000000.0"))
            if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
                # DuckDB lists are 1-based; element_at is 1-based in Spark too.
                return exp.Anonymous(
                    this="element_at", expressions=[node.this.copy(), node.expressions[0].copy()]
                )
            return node

        return tree.transform(fix)

    def _parquet_table(self, node: Any) -> Any:
        from sqlglot import exp

        path_arg = node.this.expressions[0]
        if not isinstance(path_arg, exp.Literal):
            raise SparkError(f"read_parquet needs a literal path, got {path_arg.sql()}")
        path = path_arg.this
        view = self._parquet_views.get(path)
        if view is None:
            view = f"parquet_{len(self._parquet_views)}"
            reader = self.spark.read
            if "*" in path:
                # dir/**/*.parquet: every parquet file below dir, hive folders not turned
                # into columns (hive_partitioning=false in the DuckDB SQL).
                base = path.split("*", 1)[0].rstrip("/")
                reader = reader.option("recursiveFileLookup", "true").option(
                    "pathGlobFilter", "*.parquet"
                )
                path_to_read = base
            else:
                path_to_read = path
            reader.parquet(path_to_read).createOrReplaceTempView(view)
            self._parquet_views[path] = view
        alias = node.args.get("alias")
        table = exp.Table(this=exp.to_identifier(view))
        if alias is not None:
            table.set("alias", alias.copy())
        return table


@functools.cache
def _duckdb_dialect() -> Any:
    """DuckDB's dialect, with list indexes left as written (1-based): sqlglot shifts them to
    0-based only where it can type the index, so `[stage_code + 1]` and `[1 + 1]` came out
    differently; `_rewrite` turns every index into Spark's 1-based element_at instead."""
    from sqlglot.dialects.duckdb import DuckDB

    class DuckDBListsAsWritten(DuckDB):
        INDEX_OFFSET = 0

    return DuckDBListsAsWritten


def _inclusive(series: Any) -> Any:
    """DuckDB's range(a, b, step) stops before b; Spark's sequence(a, b, step) ends at b."""
    from sqlglot import exp

    if series.args.get("is_end_exclusive"):
        step = series.args.get("step") or exp.Literal.number(1)
        series.set("end", exp.Sub(this=series.args["end"].copy(), expression=step.copy()))
        series.set("is_end_exclusive", False)
    return series


def _boundary_diff(node: Any) -> Any:
    """DuckDB's date_diff(unit, a, b): calendar boundaries between a and b."""
    from sqlglot import exp

    unit = (node.text("unit") or "DAY").upper()
    start, end = node.expression, node.this

    def part(fn: str, value: Any) -> Any:
        return exp.Anonymous(this=fn, expressions=[value.copy()])

    if unit in ("DAY", "DAYS"):
        as_date = lambda v: exp.Cast(this=v.copy(), to=exp.DataType.build("DATE"))  # noqa: E731
        return exp.Anonymous(this="datediff", expressions=[as_date(end), as_date(start)])
    if unit in ("MONTH", "MONTHS"):

        def months(v: Any) -> Any:
            twelve = exp.Mul(this=part("year", v), expression=exp.Literal.number(12))
            return exp.Paren(this=exp.Add(this=twelve, expression=part("month", v)))

        return exp.Sub(this=months(end), expression=months(start))
    if unit in ("YEAR", "YEARS"):
        return exp.Sub(this=part("year", end), expression=part("year", start))
    raise SparkError(f"the Spark engine has no translation for date_diff('{unit.lower()}', ...)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_build_spark(settings: Settings, progress: bool = True) -> dict:
    """The feature table and labels, computed by Spark from the pipeline's own SQL; the
    same files and summary as `features.pipeline.run_build`."""
    raw_dir = settings.raw_dir
    if not (raw_dir / "transactions").exists() and not (raw_dir / "transactions.parquet").exists():
        raise pipeline.FeatureBuildError(
            f"{raw_dir}: no raw transactions; run `clm simulate` or `clm ingest` first"
        )
    rules = pipeline.load_rules()
    started = time.monotonic()
    out = settings.feature_dir
    steps = ["start Spark", "read raw tables", "monthly aggregates and windows", "stages"]
    steps += ["labels", "write"]
    timings: dict[str, float] = {}
    tmp = atomic.new_staging_dir(out)
    try:
        with step_progress("features build (spark)", len(steps), progress, transient=True) as adv:
            last = [time.monotonic()]

            def step(i: int) -> None:
                if i > 0:
                    timings[steps[i - 1]] = round(time.monotonic() - last[0], 2)
                    last[0] = time.monotonic()
                    adv(1, description=f"features (spark): {steps[min(i, len(steps) - 1)]}")

            spark = spark_session(settings)
            # DuckDB's lenient semantics where they differ from ANSI Spark (an index past a
            # list's end is NULL, not an error); the SQL guards its own divisions.
            spark.conf.set("spark.sql.ansi.enabled", "false")
            # Feast's Spark offline store turns this on in the session it shares with us:
            # `name` would then be a column regex, not a quoted identifier.
            spark.conf.set("spark.sql.parser.quotedRegexColumnNames", "false")
            con = SparkSql(spark)
            step(1)
            raw = pipeline._discover(con, raw_dir)
            pipeline._require(raw, "transactions", ("customer_id", "timestamp", "amount"))
            for table, cols in (
                ("holdings", ("customer_id", "product", "opened_date")),
                ("balances", ("customer_id", "month_end", "product", "balance")),
                ("app_sessions", ("customer_id", "timestamp")),
                ("customers", ("customer_id",)),
            ):
                if getattr(raw, table):
                    pipeline._require(raw, table, cols)
            pipeline._views(con, raw)
            start, end = pipeline._period(raw_dir, con, raw)
            step(2)
            pipeline._build_sql(con, raw, rules, start, end)
            step(3)
            pipeline._add_stage(con, rules)
            step(4)
            pipeline._labels(con, raw)
            step(5)
            summary = _write(con, tmp)
            step(6)
            con.close()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.update(
        {
            "features": list(FEATURE_NAMES),
            "period": [start, end],
            "engine": "spark",
            "seconds": round(time.monotonic() - started, 2),
            "step_seconds": timings,
        }
    )
    (tmp / BUILD_INFO_FILE).write_text(json.dumps(summary, indent=1))
    atomic.replace_dir(tmp, out)
    return summary


def _write(con: SparkSql, tmp: Path) -> dict[str, Any]:
    from pyspark.sql import functions as F

    feat = con.table("feat_s")
    # Every feature is a double (codes too): Feast declares them Float64.
    cols = [F.col("customer_id"), F.col("event_timestamp")]
    cols += [F.col(name).cast("double").alias(name) for name in FEATURE_NAMES]
    features = feat.select(*cols).orderBy("event_timestamp", "customer_id")
    write_single_parquet(features, tmp, tmp / FEATURE_FILE)
    labels = con.table("labels").orderBy("snapshot_ts", "customer_id")
    write_single_parquet(labels, tmp, tmp / LABEL_FILE)
    row = feat.agg(F.count(F.lit(1)), F.countDistinct("customer_id")).collect()[0]
    snaps = feat.select(F.date_format("event_timestamp", "yyyy-MM-dd'T'HH:mm:ssxxx").alias("s"))
    labelled = con.table("labels").where(F.col("churn_90d").isNotNull()).count()
    return {
        "rows": int(row[0]),
        "customers": int(row[1]),
        "snapshots": sorted(r[0] for r in snaps.distinct().collect()),
        "labelled_rows": int(labelled),
    }
