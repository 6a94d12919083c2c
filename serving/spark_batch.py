"""`clm score-batch --engine spark`: every customer at one snapshot, scored inside Spark.

The driver loads and checks the three champions exactly as the default engine does
(`serving.batch.load_champions`: manifest, feature lists, golden rows), then ships their
boosters as LightGBM text (never pickled) in a broadcast. Each Spark task rebuilds the
ModelSet once per Python worker and scores its Arrow batches with the same
`serving.batch.score_table` as the default engine (`mapInArrow`), so both engines write the
same columns and values (tests/spark/test_batch_spark.py). Spark scores with LightGBM
itself: compiled trees are machine code cached on the driver's disk, not on the executors.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm.settings import FAMILIES
from serving.batch import (
    ENTITY_KEY,
    SNAPSHOT_KEY,
    TIMESTAMP_FIELD,
    BatchError,
    check_out_path,
    check_selection,
    feature_matrix,
    load_champions,
    output_schema,
    parse_as_of,
    score_table,
    snapshot_for,
    write_selection,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from clm.settings import Settings
    from serving.scoring import ModelSet, RiskBands

__all__ = ["run_score_batch_spark"]

# What a task needs to rebuild the champions: plain values and LightGBM model text.
ModelsSpec = dict[str, dict[str, Any]]
# Per Python worker: the ModelSet of the batch run being scored (workers are reused).
_WORKER_MODELS: dict[str, ModelSet] = {}


def models_spec(models: ModelSet) -> ModelsSpec:
    spec: ModelsSpec = {}
    for model in models.models():
        spec[model.family] = {
            "registered_name": model.registered_name,
            "version": model.version,
            "feature_service": model.feature_service,
            "features": list(model.features),
            "classes": list(model.classes),
            "products": list(model.products),
            "boosters": {k: b.model_to_string() for k, b in model.boosters.items()},
        }
    return spec


def models_from_spec(spec: ModelsSpec) -> ModelSet:
    import lightgbm

    from serving.models import LoadedModel
    from serving.scoring import ModelSet

    loaded = {}
    for family in FAMILIES:
        part = spec[family]
        loaded[family] = LoadedModel(
            family=family,
            registered_name=part["registered_name"],
            version=part["version"],
            feature_service=part["feature_service"],
            features=tuple(part["features"]),
            boosters={k: lightgbm.Booster(model_str=s) for k, s in part["boosters"].items()},
            classes=tuple(part["classes"]),
            products=tuple(part["products"]),
        )
    return ModelSet(**loaded)


def _scorer(spec_broadcast: Any, request_id: str, bands: RiskBands) -> Any:
    """The function each task runs over its Arrow batches."""

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        models = _WORKER_MODELS.get(request_id)
        if models is None:
            _WORKER_MODELS.clear()
            models = _WORKER_MODELS[request_id] = models_from_spec(spec_broadcast.value)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            table = pa.Table.from_batches([batch])
            ids = [str(c) for c in table[ENTITY_KEY].to_pylist()]
            matrix = feature_matrix(table, models.union)
            yield score_table(models, ids, matrix, request_id=request_id, bands=bands)

    return score_batches


def _snapshots(features: Any) -> list[datetime]:
    from pyspark.sql import functions as F

    rows = features.select(F.unix_micros(TIMESTAMP_FIELD).alias("us")).distinct().collect()
    return sorted(
        datetime.fromtimestamp(r["us"] / 1e6, tz=UTC) for r in rows if r["us"] is not None
    )


def run_score_batch_spark(
    settings: Settings,
    *,
    as_of: str,
    out: Path,
    progress: bool = True,
    output_format: str = "parquet",
    top: int | None = None,
    by: str = "churn_probability",
    families: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score every customer at the snapshot for `as_of` in Spark; one parquet row per customer,
    sorted by customer id, with the default engine's columns, or its CSV / `top` selection
    (`serving.batch.write_selection`)."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from clm import atomic
    from clm.progress import step_progress
    from clm.spark import spark_session, write_single_parquet
    from features.store import feature_table_path

    started = time.perf_counter()
    parse_as_of(as_of)  # a bad date fails before any model is loaded
    check_selection(output_format, top, by)
    out = check_out_path(settings, Path(out))
    from serving.scoring import risk_bands

    path = feature_table_path(settings)
    if not path.exists():
        raise BatchError(f"{path} does not exist; run `clm features build` first")
    with step_progress("reading the feature snapshots in Spark", None, progress, transient=True):
        spark = spark_session(settings)
        features = spark.read.parquet(path.as_posix())
        # A date before the data fails here, before the champions load (~10 s).
        snapshot = snapshot_for(as_of, _snapshots(features))
    with step_progress("loading the champion models", None, progress, transient=True):
        models, skipped = load_champions(settings, families)
    missing = [c for c in models.union if c not in pq.read_schema(path).names]
    if missing:
        raise BatchError(f"{path} lacks feature columns {missing[:5]}; rebuild the features")
    out = Path(out)
    request_id = f"batch-{uuid.uuid4().hex}"
    schema = output_schema(models.union)
    bands = risk_bands(settings.serving)
    select = output_format != "parquet" or top is not None or by != "churn_probability"
    with step_progress("scoring in Spark", None, progress, transient=True):
        rows = features.where(F.unix_micros(TIMESTAMP_FIELD) == int(snapshot.timestamp() * 1e6))
        rows = rows.select(ENTITY_KEY, *models.union)
        if rows.limit(1).count() == 0:
            raise BatchError(f"no customers in the feature snapshot {snapshot:%Y-%m-%d}")
        spec = spark.sparkContext.broadcast(models_spec(models))
        try:
            # Sorted before scoring (mapInArrow keeps each partition's order): the sort's
            # sampling pass then reads features instead of scoring every row twice.
            scored = rows.orderBy(ENTITY_KEY).mapInArrow(
                _scorer(spec, request_id, bands), from_arrow_schema(schema)
            )
            with (
                atomic.atomic_path(out) as tmp,
                tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch,
            ):
                # The snapshot date travels with the file, as the default engine writes it.
                metadata = {SNAPSHOT_KEY: snapshot.isoformat()}
                whole = Path(scratch) / "scored.parquet" if select else tmp
                write_single_parquet(scored, Path(scratch), whole, metadata=metadata)
                rows_written = pq.ParquetFile(whole).metadata.num_rows
                if select:
                    rows_written = write_selection(
                        whole, tmp, output_format=output_format, top=top, by=by
                    )
        finally:
            spec.unpersist()
    return {
        "rows": rows_written,
        "out": str(out),
        "snapshot_ts": snapshot.isoformat(),
        "model_versions": models.versions,
        "skipped": skipped,
        "compiled": {},
        "engine": "spark",
        "seconds": round(time.perf_counter() - started, 3),
    }
