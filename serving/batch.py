"""`clm score-batch`: every customer at one snapshot, scored by the three champions.

Features come from the offline feature table (the parquet file behind the Feast
offline store; tests/serving/test_batch.py shows it gives the same values as
Feast's `get_historical_features`), read straight with pyarrow: one snapshot of
every customer is a plain filter, and Feast's point-in-time join would only
re-derive the same rows much more slowly. The output has the prediction log's
columns (docs/contracts.md), one row per customer.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.errors import ClmError
from clm.settings import FAMILIES

if TYPE_CHECKING:
    import pyarrow as pa

    from clm.settings import Settings
    from serving.scoring import ModelSet, RiskBands

CHUNK_ROWS = 200_000
# From this many customers a first batch compiles the champions' trees: compiling takes
# ~15-30 s per few hundred trees (once per version) and saves ~50 s per million rows
# (bench/results-serving.md); smaller batches use compiled trees only if already cached.
COMPILE_MIN_ROWS = 200_000
ENTITY_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"


class BatchError(ClmError):
    """Batch scoring cannot run (bad date, no features, no champion)."""


# Parquet key-value metadata of a batch file: the feature snapshot it scored (ISO time).
SNAPSHOT_KEY = "clm.snapshot_ts"


def parse_as_of(as_of: str) -> date:
    try:
        return date.fromisoformat(as_of)
    except ValueError:
        raise BatchError(f"--as-of {as_of!r}: expected a date YYYY-MM-DD") from None


def snapshot_for(as_of: str, available: list[datetime]) -> datetime:
    """The latest snapshot whose data ends on or before `as_of` (a month end gives its own)."""
    day = parse_as_of(as_of)
    cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    eligible = [ts for ts in available if ts <= cutoff]
    if not eligible:
        first = min(available).date() - timedelta(days=1) if available else None
        raise BatchError(
            f"--as-of {as_of}: no feature snapshot on or before it"
            + (
                f" (the first month end is {first})"
                if first
                else "; run `clm features build` first"
            )
        )
    return max(eligible)


def load_champions(settings: Settings) -> ModelSet:
    """The three champion versions, loaded and checked exactly as the service does."""
    from features.store import feature_names
    from serving.models import ModelRefused, champion_version, load_version
    from serving.scoring import ModelSet

    def expected(service: str) -> list[str]:
        return list(feature_names(settings, service))

    models = {}
    for family in FAMILIES:
        version = champion_version(settings, family)
        if version is None:
            name = settings.models.family(family).registered_name
            raise BatchError(f"{name} has no champion; run `clm train {family}` first")
        try:
            models[family] = load_version(settings, family, version, expected_features=expected)
        except ModelRefused as exc:
            raise BatchError(f"{family} champion version {version} cannot be used: {exc}") from None
    return ModelSet(**models)


def read_snapshot(settings: Settings, as_of: str, columns: list[str]) -> tuple[datetime, pa.Table]:
    """Every customer's feature row at the snapshot for `as_of`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features.store import feature_table_path

    path = feature_table_path(settings)
    if not path.exists():
        raise BatchError(f"{path} does not exist; run `clm features build` first")
    stamps = pq.read_table(path, columns=[TIMESTAMP_FIELD])[TIMESTAMP_FIELD]
    available = sorted({ts for ts in stamps.to_pylist() if ts is not None})
    snapshot = snapshot_for(as_of, available)
    missing = [c for c in columns if c not in pq.read_schema(path).names]
    if missing:
        raise BatchError(f"{path} lacks feature columns {missing[:5]}; rebuild the features")
    table = pq.read_table(path, columns=[ENTITY_KEY, TIMESTAMP_FIELD, *columns])
    table = table.filter(
        pc.equal(table[TIMESTAMP_FIELD], pa.scalar(snapshot, type=table[TIMESTAMP_FIELD].type))
    )
    return snapshot, table


def feature_matrix(table: pa.Table, names: tuple[str, ...]) -> np.ndarray:
    """Columns -> (rows, features) float64 with NaN for nulls, in `names` order."""
    matrix = np.empty((table.num_rows, len(names)))
    for j, name in enumerate(names):
        column = table[name].cast("float64")
        matrix[:, j] = column.to_numpy(zero_copy_only=False)
    return matrix


def output_schema(feature_names: tuple[str, ...]) -> pa.Schema:
    """The prediction log's columns plus `risk_band` (the API's churn band) after the churn score."""
    import pyarrow as pa

    from serving.predlog import log_schema

    schema = log_schema(feature_names)
    at = schema.get_field_index("churn_probability") + 1
    return schema.insert(at, pa.field("risk_band", pa.string()))


def band_column(probability: np.ndarray, bands: RiskBands) -> pa.Array:
    """`risk_band` of each churn probability (null where there is none), as the API names it."""
    import pyarrow as pa

    uppers = np.array([upper for upper, _ in bands])
    names = np.array([name for _, name in bands], dtype=object)
    index = np.minimum(np.searchsorted(uppers, probability, side="right"), len(bands) - 1)
    return pa.array(names[index], type=pa.string(), mask=np.isnan(probability))


def score_table(
    models: ModelSet,
    customer_ids: list[str],
    matrix: np.ndarray,
    *,
    request_id: str,
    bands: RiskBands | None = None,
) -> pa.RecordBatch:
    """Score a chunk and lay it out with the prediction log's columns (and `risk_band`)."""
    import pyarrow as pa

    from serving.predlog import LoggedRequest, log_schema, to_batch
    from serving.scoring import DEFAULT_RISK_BANDS, score

    scored = score(models, customer_ids, matrix, explain=False, build_results=False)
    logged = LoggedRequest(request_id, datetime.now(UTC), "batch", scored)
    bands = DEFAULT_RISK_BANDS if bands is None else bands
    batch = to_batch([logged], log_schema(models.union))
    churn = batch.column("churn_probability").to_numpy(zero_copy_only=False)
    columns = list(batch.columns)
    at = batch.schema.get_field_index("churn_probability") + 1
    columns.insert(at, band_column(np.asarray(churn, dtype=float), bands))
    return pa.RecordBatch.from_arrays(columns, schema=output_schema(models.union))


def with_compiled_trees(
    settings: Settings, models: ModelSet, table: pa.Table, progress: bool, compile_missing: bool
) -> tuple[ModelSet, dict[str, str]]:
    """The champions scoring with compiled trees (serving/compiled.py), compiled on first use
    of a version (`compile_missing`) and cached; returns them and each booster's outcome."""
    from clm.progress import step_progress
    from serving.compiled import compile_models

    sample = feature_matrix(table.slice(0, 2000), models.union)
    boosters = sum(len(m.boosters) for m in models.models())
    with step_progress(
        "compiling trees (once per version)", boosters, progress and compile_missing, transient=True
    ) as advance:
        compiled, outcomes = compile_models(
            settings,
            models,
            sample,
            progress=lambda outcome: advance(),
            compile_missing=compile_missing,
        )
    return compiled, {
        f"{o.family}/{o.key}": o.status + (f": {o.reason}" if o.reason else "") for o in outcomes
    }


OUTPUT_FORMATS = ("parquet", "csv")


def score_fields() -> tuple[str, ...]:
    """The scores a selection can rank by (numeric columns of the output)."""
    from clm.domain import PROPENSITY_PRODUCTS, STAGES

    return (
        "churn_probability",
        *(f"propensity_{p}" for p in PROPENSITY_PRODUCTS),
        *(f"stage_prob_{s}" for s in STAGES),
    )


def check_selection(output_format: str, top: int | None, by: str) -> None:
    if output_format not in OUTPUT_FORMATS:
        raise BatchError(f"--format {output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    if top is not None and top < 1:
        raise BatchError(f"--top {top}: expected a number of customers, 1 or more")
    if by not in score_fields():
        raise BatchError(f"--by {by!r}: expected one of {', '.join(score_fields())}")


def write_selection(
    scored: Path, out: Path, *, output_format: str, top: int | None, by: str
) -> int:
    """Write the customers of `scored` sorted by `by`, highest first (only the `top` ones when
    set), to `out`.

    CSV is for spreadsheets: it leaves out the feature columns (`f_*`). Returns the rows written.
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pq.read_table(scored).sort_by([(by, "descending")])
    if top is not None:
        table = table.slice(0, top)
    if output_format == "csv":
        table = table.select([c for c in table.column_names if not c.startswith("f_")])
        pcsv.write_csv(table, out)
    else:
        pq.write_table(table, out)
    return table.num_rows


def run_score_batch(
    settings: Settings,
    *,
    as_of: str,
    out: Path,
    progress: bool = True,
    compiled: bool | None = None,
    output_format: str = "parquet",
    top: int | None = None,
    by: str = "churn_probability",
) -> dict[str, Any]:
    """Score every customer at the snapshot for `as_of`; write one parquet row per customer
    (or CSV, `output_format`; only the `top` customers by the score `by`, see `write_selection`).

    `compiled`: score with compiled trees (equal to LightGBM's within 1e-9, several times
    faster), compiling each booster of a version on first use; None (default): compile
    when the snapshot has `COMPILE_MIN_ROWS` customers or more, and otherwise use the
    boosters already compiled; False: LightGBM only. A booster that cannot be compiled
    keeps LightGBM's prediction.
    """
    import pyarrow.parquet as pq

    from clm import atomic
    from clm.progress import step_progress

    started = time.perf_counter()
    parse_as_of(as_of)  # a bad date fails before any model is loaded
    check_selection(output_format, top, by)
    from serving.scoring import risk_bands

    # Loading the champions (MLflow, a child process checking each file) takes ~10 s.
    with step_progress("loading the champion models", None, progress, transient=True):
        models = load_champions(settings)
    with step_progress("reading the feature snapshot", None, progress, transient=True):
        snapshot, table = read_snapshot(settings, as_of, list(models.union))
    if table.num_rows == 0:
        raise BatchError(f"no customers in the feature snapshot {snapshot:%Y-%m-%d}")
    boosters: dict[str, str] = {}
    if compiled is not False:
        compile_missing = compiled is True or table.num_rows >= COMPILE_MIN_ROWS
        models, boosters = with_compiled_trees(settings, models, table, progress, compile_missing)
    out = Path(out)
    request_id = f"batch-{uuid.uuid4().hex}"
    schema = output_schema(models.union)
    bands = risk_bands(settings.serving)
    rows = table.num_rows
    # Plain parquet is written as scored; a selection (or CSV) sorts by `by` afterwards.
    select = output_format != "parquet" or top is not None or by != "churn_probability"
    with (
        atomic.atomic_path(out) as tmp,
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".clm-scored-") as scratch,
    ):
        scored = Path(scratch) / "scored.parquet" if select else tmp
        with (
            # The snapshot date travels with the file: monitoring back-tests on it, not on `ts`.
            pq.ParquetWriter(
                scored, schema.with_metadata({SNAPSHOT_KEY: snapshot.isoformat()})
            ) as writer,
            step_progress(f"scoring {rows:,} customers", rows, progress, transient=True) as advance,
        ):
            for start in range(0, rows, CHUNK_ROWS):
                chunk = table.slice(start, CHUNK_ROWS)
                ids = [str(c) for c in chunk[ENTITY_KEY].to_pylist()]
                matrix = feature_matrix(chunk, models.union)
                writer.write_batch(
                    score_table(models, ids, matrix, request_id=request_id, bands=bands)
                )
                advance(chunk.num_rows)
        if select:
            rows = write_selection(scored, tmp, output_format=output_format, top=top, by=by)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "out": str(out),
        "snapshot_ts": snapshot.isoformat(),
        "model_versions": models.versions,
        "compiled": boosters,
        "seconds": round(seconds, 3),
    }
