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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm.settings import FAMILIES
from serving.batch import (
    ENTITY_KEY,
    TIMESTAMP_FIELD,
    BatchError,
    feature_matrix,
    load_champions,
    parse_as_of,
    score_table,
    snapshot_for,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from clm.settings import Settings
    from serving.scoring import ModelSet

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


def _scorer(spec_broadcast: Any, request_id: str) -> Any:
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
            yield score_table(models, ids, matrix, request_id=request_id)

    return score_batches


def _snapshots(features: Any) -> list[datetime]:
    from pyspark.sql import functions as F

    rows = features.select(F.unix_micros(TIMESTAMP_FIELD).alias("us")).distinct().collect()
    return sorted(
        datetime.fromtimestamp(r["us"] / 1e6, tz=UTC) for r in rows if r["us"] is not None
    )


def run_score_batch_spark(
    settings: Settings, *, as_of: str, out: Path, progress: bool = True
) -> dict[str, Any]:
    """Score every customer at the snapshot for `as_of` in Spark; one parquet row per customer,
    sorted by customer id, with the prediction log's columns (as `serving.batch`)."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from clm import atomic
    from clm.progress import step_progress
    from clm.spark import spark_session, write_single_parquet
    from features.store import feature_table_path
    from serving.predlog import log_schema

    started = time.perf_counter()
    parse_as_of(as_of)  # a bad date fails before any model is loaded
    path = feature_table_path(settings)
    if not path.exists():
        raise BatchError(f"{path} does not exist; run `clm features build` first")
    models = load_champions(settings)
    missing = [c for c in models.union if c not in pq.read_schema(path).names]
    if missing:
        raise BatchError(f"{path} lacks feature columns {missing[:5]}; rebuild the features")
    out = Path(out)
    request_id = f"batch-{uuid.uuid4().hex}"
    schema = log_schema(models.union)
    with step_progress("scoring in Spark", None, progress, transient=True):
        spark = spark_session(settings)
        features = spark.read.parquet(path.as_posix())
        snapshot = snapshot_for(as_of, _snapshots(features))
        rows = features.where(F.unix_micros(TIMESTAMP_FIELD) == int(snapshot.timestamp() * 1e6))
        rows = rows.select(ENTITY_KEY, *models.union)
        if rows.limit(1).count() == 0:
            raise BatchError(f"no customers in the feature snapshot {snapshot:%Y-%m-%d}")
        spec = spark.sparkContext.broadcast(models_spec(models))
        try:
            # Sorted before scoring (mapInArrow keeps each partition's order): the sort's
            # sampling pass then reads features instead of scoring every row twice.
            scored = rows.orderBy(ENTITY_KEY).mapInArrow(
                _scorer(spec, request_id), from_arrow_schema(schema)
            )
            with (
                atomic.atomic_path(out) as tmp,
                tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as parts,
            ):
                write_single_parquet(scored, Path(parts), tmp)
        finally:
            spec.unpersist()
    return {
        "rows": pq.ParquetFile(out).metadata.num_rows,
        "out": str(out),
        "snapshot_ts": snapshot.isoformat(),
        "model_versions": models.versions,
        "compiled": {},
        "engine": "spark",
        "seconds": round(time.perf_counter() - started, 3),
    }
