"""The production profile against the machine's real Redis and PostgreSQL.

Each test run uses its own Feast project (so its own registry rows and Redis keys)
and tears it down afterwards; tests skip with a reason when a server is absent.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from clm.settings import Settings
from features.catalog import FEATURE_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS = ("127.0.0.1", 6379)
POSTGRES = ("127.0.0.1", 5432)
REGISTRY_DB = "clm_feast_test"


def _reachable(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def production_settings(feature_settings: Settings) -> Iterator[Settings]:
    if not _reachable(REDIS):
        pytest.skip(f"Redis is not running on {REDIS[0]}:{REDIS[1]}")
    if not _reachable(POSTGRES):
        pytest.skip(f"PostgreSQL is not running on {POSTGRES[0]}:{POSTGRES[1]}")
    from features.store import feature_store, run_apply, run_materialize

    project = f"clm_test_{uuid.uuid4().hex[:10]}"
    features = feature_settings.features.model_copy(
        update={
            "profile": "production",
            "project": project,
            "redis_connection": f"{REDIS[0]}:{REDIS[1]}",
            "registry_postgres": f"postgresql+psycopg://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{REGISTRY_DB}",
        }
    )
    settings = feature_settings.model_copy(update={"features": features})
    run_apply(settings)
    run_materialize(settings)
    yield settings
    from feast.errors import ProjectObjectNotFoundException

    store = feature_store(settings)
    store.teardown()  # drops this project's Redis keys (and its registry entries)
    try:
        store.registry.delete_project(project, commit=True)
    except ProjectObjectNotFoundException:
        pass
    # Feast's delete_project leaves the project's version history behind; clean it up too.
    import sqlalchemy as sa

    engine = sa.create_engine(settings.features.registry_postgres)
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM feature_view_version_history WHERE project_id = :p"),
            {"p": project},
        )
    engine.dispose()


def test_registry_lives_in_postgres(production_settings: Settings) -> None:
    import sqlalchemy as sa

    from features.catalog import SERVICES

    url = production_settings.features.registry_postgres
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM feature_services WHERE project_id = :p"),
            {"p": production_settings.features.project},
        ).scalar()
    engine.dispose()
    assert n == len(SERVICES)  # every feature service of the catalogue, _v1 and _v2


def test_redis_reader_equals_feast_and_embedded(
    production_settings: Settings, feature_settings: Settings
) -> None:
    from features.online import OnlineFeatureReader
    from features.store import feature_names, feature_store

    table = pd.read_parquet(feature_settings.feature_dir / FEATURE_FILE)
    ids = list(table["customer_id"].drop_duplicates().sample(60, random_state=11)) + ["C9999999"]
    redis_reader = OnlineFeatureReader(production_settings)
    assert redis_reader.backend == "redis"
    frame, unknown = redis_reader.lookup(ids, "propensity_v1")
    assert unknown == ["C9999999"]
    names = feature_names(production_settings, "propensity_v1")
    store = feature_store(production_settings)
    ref = store.get_online_features(
        features=store.get_feature_service("propensity_v1"),
        entity_rows=[{"customer_id": c} for c in ids],
    ).to_df()
    ref = ref.set_index("customer_id")[names].astype("float64")
    np.testing.assert_array_equal(frame.to_numpy(), ref.to_numpy())
    embedded, _ = OnlineFeatureReader(feature_settings).lookup(ids, "propensity_v1")
    np.testing.assert_array_equal(frame.to_numpy(), embedded.to_numpy())
    # Each row's snapshot: the event timestamp Feast stored, the same in both stores.
    snapshot = redis_reader.read(ids, "propensity_v1").snapshot
    embedded_snapshot = OnlineFeatureReader(feature_settings).read(ids, "propensity_v1").snapshot
    np.testing.assert_array_equal(snapshot, embedded_snapshot)
    latest = table.groupby("customer_id")["event_timestamp"].max()
    expected = [np.datetime64(latest[c].tz_convert(None), "s") for c in ids[:-1]]
    assert list(snapshot[:-1]) == expected and np.isnat(snapshot[-1])


def test_push_and_training_frame_in_production(production_settings: Settings) -> None:
    from features.online import OnlineFeatureReader
    from features.store import push_event, snapshots, training_frame

    table = pd.read_parquet(production_settings.feature_dir / FEATURE_FILE)
    cid = table["customer_id"].iloc[0]
    push_event(production_settings, cid, {"large_outflow_flag": 1.0})
    frame, _ = OnlineFeatureReader(production_settings).lookup([cid], "churn_v1")
    assert frame.loc[cid, "large_outflow_flag"] == 1.0
    snap = snapshots(production_settings)[-1]
    rows = table[table["event_timestamp"] == snap].head(50)[["customer_id", "event_timestamp"]]
    out = training_frame(production_settings, "stage_v1", rows, progress=False)
    assert out["stage_code"].notna().all()
