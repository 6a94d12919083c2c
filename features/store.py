"""The Feast feature store of a workspace: apply, materialize, training sets, push.

The store's configuration is built from `Settings` (no environment reads here):
embedded profile = DuckDB offline store over the feature parquet, SQLite online
store and a file registry under `$CLM_HOME/feast`; production profile = Feast's
Spark offline store over the same parquet (docs/scale.md), Redis online store and
the SQL registry on PostgreSQL (`features.offline_store` overrides the offline store).
`features/feature_store.yaml` describes the embedded profile for `feast` commands.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clm.errors import ClmError
from clm.settings import Settings
from features.catalog import (
    ENTITY_KEY,
    FEATURE_FILE,
    GROUPS,
    LABEL_FILE,
    PUSH_GROUP,
    PUSH_SOURCE,
    SERVICES,
    TIMESTAMP_FIELD,
    feast_objects,
    group_features,
    service_feature_names,
    view_name,
)

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

REPO_DIR = Path(__file__).resolve().parent


class FeatureStoreError(ClmError):
    """The feature store is not ready (not built, applied or materialized) or was misused."""


def feature_table_path(settings: Settings) -> Path:
    return settings.feature_dir / FEATURE_FILE


def offline_store_config(settings: Settings) -> dict[str, Any]:
    """DuckDB over the parquet, or Feast's Spark offline store on settings.spark's session."""
    if settings.features.offline_engine == "spark":
        from clm.spark import spark_conf

        return {"type": "spark", "spark_conf": spark_conf(settings)}
    return {"type": "duckdb"}


def _start_offline_engine(settings: Settings) -> None:
    """Start Spark from our settings (quiet logs, UTC, scratch under $CLM_HOME) before Feast's
    Spark offline store looks for a running session; only where the offline store is used,
    never in the service (online reads need no JVM)."""
    if settings.features.offline_engine == "spark":
        from clm.spark import spark_session

        spark_session(settings)


def repo_config(settings: Settings) -> RepoConfig:
    """Feast's RepoConfig for the configured profile."""
    from feast.repo_config import RepoConfig

    common: dict[str, Any] = {
        "project": settings.features.project,
        "provider": "local",
        "offline_store": offline_store_config(settings),
        "entity_key_serialization_version": 3,
        "repo_path": REPO_DIR,
    }
    if settings.features.profile == "production":
        return RepoConfig(
            registry={
                "registry_type": "sql",
                "path": settings.features.registry_postgres,
                "cache_ttl_seconds": 60,
                "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
            },
            online_store={"type": "redis", "connection_string": settings.features.redis_connection},
            **common,
        )
    feast_dir = settings.feast_dir
    return RepoConfig(
        registry={
            "registry_type": "file",
            "path": (feast_dir / "registry.db").as_posix(),
            "cache_ttl_seconds": 60,
        },
        online_store={"type": "sqlite", "path": (feast_dir / "online_store.db").as_posix()},
        **common,
    )


def feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore on the workspace (the registry must exist: run `clm features apply`)."""
    from feast import FeatureStore

    if settings.features.profile == "embedded":
        settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(REPO_DIR), config=repo_config(settings))


def _ensure_postgres_database(url: str) -> None:
    """Create the registry database when it does not exist yet (production profile)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    target = make_url(url)
    name = target.database
    if not name:
        raise FeatureStoreError(f"features.registry_postgres {target!r} names no database")
    admin = target.set(database="postgres")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        raise FeatureStoreError(
            f"cannot reach PostgreSQL for the Feast registry ({target.render_as_string(hide_password=True)}): "
            f"{exc.orig}; start it or fix features.registry_postgres"
        ) from exc
    finally:
        engine.dispose()


def run_apply(settings: Settings) -> None:
    """Register the entity, sources, feature views and services (`feast apply`)."""
    path = feature_table_path(settings)
    if not path.is_file():
        raise FeatureStoreError(f"{path}: no feature table; run `clm features build` first")
    if settings.features.profile == "production":
        _ensure_postgres_database(settings.features.registry_postgres)
    store = feature_store(settings)
    objects = list(feast_objects(path.as_posix(), settings.features.offline_engine).values())
    try:
        store.apply(objects)  # type: ignore[arg-type]
    except Exception as exc:
        if settings.features.profile == "production" and "redis" in type(exc).__module__.lower():
            raise FeatureStoreError(
                f"cannot reach Redis at {settings.features.redis_connection}: {exc}; "
                "start it or fix features.redis_connection"
            ) from exc
        raise


def snapshots(settings: Settings) -> list[pd.Timestamp]:
    """Every snapshot timestamp of the feature table (UTC), ascending."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = feature_table_path(settings)
    if not path.is_file():
        raise FeatureStoreError(f"{path}: no feature table; run `clm features build` first")
    col = pq.read_table(path, columns=[TIMESTAMP_FIELD]).column(0)
    values = pc.unique(col).to_pylist()
    return sorted(pd.Timestamp(v).tz_convert("UTC") for v in values)


def run_materialize(settings: Settings, full: bool = False) -> None:
    """Load the latest feature values into the online store (incremental unless `full`)."""
    snaps = snapshots(settings)
    store = feature_store(settings)
    _require_applied(store, settings)
    _start_offline_engine(settings)
    # Snapshot rows lie in the past (the data's period), so the end is the last snapshot.
    end = snaps[-1].to_pydatetime() + timedelta(seconds=1)
    start = snaps[0].to_pydatetime() - timedelta(seconds=1)
    views = [view_name(g) for g in GROUPS]
    if full:
        store.materialize(start_date=start, end_date=end, feature_views=views)
        return
    # Feast starts a never-materialized view at now - ttl, which misses a bank's data
    # whose period lies further back: load those views from the first snapshot once.
    fresh = [v for v in views if store.get_feature_view(v).most_recent_end_time is None]
    if fresh:
        store.materialize(start_date=start, end_date=end, feature_views=fresh)
    rest = [v for v in views if v not in fresh]
    if rest:
        store.materialize_incremental(end_date=end, feature_views=rest)


def _require_applied(store: FeatureStore, settings: Settings) -> None:
    from feast.errors import FeatureServiceNotFoundException

    try:
        store.get_feature_service("churn_v1", allow_cache=True)
    except FeatureServiceNotFoundException as exc:
        raise FeatureStoreError(
            f"the Feast registry of project {settings.features.project!r} has no feature services; "
            "run `clm features apply` first"
        ) from exc


def feature_names(settings: Settings, service: str) -> list[str]:
    """Ordered feature names of a feature service, as models see them (plain, unique names)."""
    try:
        return service_feature_names(service)
    except KeyError:
        raise FeatureStoreError(
            f"unknown feature service {service!r}; expected one of {', '.join(SERVICES)}"
        ) from None


def load_labels(settings: Settings) -> pd.DataFrame:
    """The labels table (docs/contracts.md): null where the 90-day horizon runs past the data."""
    path = settings.feature_dir / LABEL_FILE
    if not path.is_file():
        raise FeatureStoreError(f"{path}: no labels; run `clm features build` first")
    return pd.read_parquet(path)


def training_frame(
    settings: Settings, service: str, entity_df: pd.DataFrame, progress: bool = True
) -> pd.DataFrame:
    """`entity_df` (customer_id, event_timestamp, any extra columns) joined point-in-time with
    the service's features through Feast's get_historical_features, in entity_df's row order."""
    names = feature_names(settings, service)
    missing = [c for c in (ENTITY_KEY, TIMESTAMP_FIELD) if c not in entity_df.columns]
    if missing:
        raise FeatureStoreError(f"entity_df lacks column(s) {', '.join(missing)}")
    clash = [c for c in entity_df.columns if c in names]
    if clash:
        raise FeatureStoreError(f"entity_df columns {', '.join(clash)} clash with feature names")
    from clm.progress import step_progress

    entities = entity_df.copy()
    entities[ENTITY_KEY] = entities[ENTITY_KEY].astype(str)
    ts = pd.to_datetime(entities[TIMESTAMP_FIELD], utc=True)
    entities[TIMESTAMP_FIELD] = ts.astype("datetime64[us, UTC]")
    entities["__row"] = range(len(entities))
    description = f"training set {service}: {len(entities):,} rows"
    with step_progress(description, None, progress, transient=True):
        store = feature_store(settings)
        _require_applied(store, settings)
        _start_offline_engine(settings)
        fs = store.get_feature_service(service)
        out = store.get_historical_features(entity_df=entities, features=fs).to_df()
    out = out.sort_values("__row").drop(columns="__row").reset_index(drop=True)
    # The entities' own resolution (Spark's offline store hands back nanoseconds).
    out[TIMESTAMP_FIELD] = pd.to_datetime(out[TIMESTAMP_FIELD], utc=True).astype(
        "datetime64[us, UTC]"
    )
    cols = [c for c in entity_df.columns] + names
    out = out[cols]
    out[names] = out[names].astype("float64")
    return out


def push_event(settings: Settings, customer_id: str, values: dict) -> None:
    """A real-time event (e.g. salary stopped, large outflow) updates the customer's online
    moment-of-truth features through the push source, without a batch run."""
    from feast.data_source import PushMode

    allowed = [f.name for f in group_features(PUSH_GROUP)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise FeatureStoreError(
            f"push event for customer {customer_id}: unknown feature(s) {', '.join(unknown)}; "
            f"a real-time event may set {', '.join(allowed)}"
        )
    store = feature_store(settings)
    _require_applied(store, settings)
    # Keep the flags the event does not mention: read them first, then overwrite the row.
    current = store.get_online_features(
        features=[f"{view_name(PUSH_GROUP)}:{n}" for n in allowed],
        entity_rows=[{ENTITY_KEY: str(customer_id)}],
    ).to_dict()
    row: dict[str, Any] = {ENTITY_KEY: [str(customer_id)]}
    for name in allowed:
        value = values.get(name, current.get(name, [None])[0])
        row[name] = [float("nan") if value is None else float(value)]
    row[TIMESTAMP_FIELD] = [datetime.now(UTC)]
    frame = pd.DataFrame(row)
    frame[TIMESTAMP_FIELD] = frame[TIMESTAMP_FIELD].astype("datetime64[us, UTC]")
    store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
