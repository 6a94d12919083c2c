"""The Feast store (embedded profile): services, training sets, online lookup, push, CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.segments import SEGMENT_FEATURES
from clm.settings import Settings
from features.catalog import FEATURE_FILE, SERVICES
from features.online import OnlineFeatureReader
from features.store import (
    FeatureStoreError,
    feature_names,
    feature_store,
    load_labels,
    push_event,
    run_materialize,
    snapshots,
    training_frame,
)

REPO = Path(__file__).resolve().parents[2]


def _table(settings: Settings) -> pd.DataFrame:
    return pd.read_parquet(settings.feature_dir / FEATURE_FILE)


def test_services_in_the_registry_match_feature_names(feature_settings: Settings) -> None:
    store = feature_store(feature_settings)
    for service in SERVICES:
        names = feature_names(feature_settings, service)
        assert len(names) == len(set(names))
        assert set(SEGMENT_FEATURES.values()) <= set(names)
        fs = store.get_feature_service(service)
        registered = [f.name for p in fs.feature_view_projections for f in p.features]
        assert registered == names
    with pytest.raises(FeatureStoreError, match="unknown feature service"):
        feature_names(feature_settings, "nope_v9")


def test_snapshots_and_labels(feature_settings: Settings) -> None:
    snaps = snapshots(feature_settings)
    assert snaps == sorted(snaps) and len(snaps) == 18
    assert all(s.tzinfo is not None and s.day == 1 for s in snaps)
    labels = load_labels(feature_settings)
    assert set(labels["snapshot_ts"].unique()) == set(snaps)


def test_training_frame_is_point_in_time_correct(feature_settings: Settings) -> None:
    table = _table(feature_settings)
    snaps = snapshots(feature_settings)
    rows = table.sample(400, random_state=3)[["customer_id", "event_timestamp"]].reset_index(
        drop=True
    )
    # Entity times in the middle of a month see the snapshot at that month's start ...
    mid = rows.assign(
        event_timestamp=rows["event_timestamp"] + timedelta(days=12), label=np.arange(len(rows))
    )
    # ... and one microsecond before a snapshot sees the previous one, never the next.
    early = rows[rows["event_timestamp"] > snaps[1]].head(100)
    early = early.assign(
        event_timestamp=early["event_timestamp"] - timedelta(microseconds=1), label=-1
    )
    entity = pd.concat([mid, early], ignore_index=True)
    out = training_frame(feature_settings, "churn_v1", entity, progress=False)
    names = feature_names(feature_settings, "churn_v1")
    assert list(out.columns) == ["customer_id", "event_timestamp", "label", *names]
    assert (out["customer_id"].values == entity["customer_id"].values).all()
    assert (out["label"].values == entity["label"].values).all()

    indexed = table.set_index(["customer_id", "event_timestamp"])
    expect_mid = indexed.loc[
        list(zip(rows["customer_id"], rows["event_timestamp"], strict=True)), names
    ].to_numpy()
    np.testing.assert_allclose(out[names].to_numpy()[: len(mid)], expect_mid, equal_nan=True)
    prev = early["event_timestamp"] + timedelta(microseconds=1) - pd.DateOffset(months=1)
    expected_early = indexed.reindex(list(zip(early["customer_id"], prev, strict=True)))[
        names
    ].to_numpy()
    np.testing.assert_allclose(out[names].to_numpy()[len(mid) :], expected_early, equal_nan=True)


def test_online_reader_equals_feast(feature_settings: Settings) -> None:
    table = _table(feature_settings)
    ids = list(table["customer_id"].drop_duplicates().sample(100, random_state=5)) + ["C9999999"]
    reader = OnlineFeatureReader(feature_settings)
    assert reader.backend == "sqlite"
    store = feature_store(feature_settings)
    for service in SERVICES:
        frame, unknown = reader.lookup(ids, service)
        names = feature_names(feature_settings, service)
        assert list(frame.columns) == names and list(frame.index) == ids
        assert unknown == ["C9999999"]
        assert frame.loc["C9999999"].isna().all()
        ref = store.get_online_features(
            features=store.get_feature_service(service),
            entity_rows=[{"customer_id": c} for c in ids],
        ).to_df()
        ref = ref.set_index("customer_id")[names].astype("float64")
        np.testing.assert_array_equal(frame.to_numpy(), ref.to_numpy())
    # The online store holds each customer's latest snapshot.
    latest = (
        table.sort_values("event_timestamp").groupby("customer_id").tail(1).set_index("customer_id")
    )
    frame, _ = reader.lookup(ids[:20], "stage_v1")
    np.testing.assert_allclose(
        frame.to_numpy(), latest.loc[ids[:20], frame.columns].to_numpy(), equal_nan=True
    )
    assert reader.lookup([], "churn_v1")[0].shape == (
        0,
        len(feature_names(feature_settings, "churn_v1")),
    )


def test_push_event_updates_online_moments(feature_settings: Settings) -> None:
    reader = OnlineFeatureReader(feature_settings)
    cid = _table(feature_settings)["customer_id"].iloc[-1]
    before, _ = reader.lookup([cid], "churn_v1")
    assert before.loc[cid, "salary_stopped_flag"] == 0
    try:
        push_event(feature_settings, cid, {"salary_stopped_flag": 1.0})
        after, _ = reader.lookup([cid], "churn_v1")
        assert after.loc[cid, "salary_stopped_flag"] == 1.0
        # Only the pushed flag moved; the rest of the row is as materialized.
        unchanged = [c for c in before.columns if c != "salary_stopped_flag"]
        pd.testing.assert_series_equal(before.loc[cid, unchanged], after.loc[cid, unchanged])
    finally:
        push_event(
            feature_settings,
            cid,
            {"salary_stopped_flag": float(before.loc[cid, "salary_stopped_flag"])},
        )
    with pytest.raises(FeatureStoreError, match="unknown feature"):
        push_event(feature_settings, cid, {"aum": 1.0})


def test_incremental_materialize_is_a_no_op_when_up_to_date(feature_settings: Settings) -> None:
    reader = OnlineFeatureReader(feature_settings)
    ids = list(_table(feature_settings)["customer_id"].unique()[:50])
    before, _ = reader.lookup(ids, "churn_v1")
    run_materialize(feature_settings)
    after, _ = reader.lookup(ids, "churn_v1")
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.slow
def test_feast_cli_plan_works_on_the_repo(feature_settings: Settings) -> None:
    env = {**os.environ, "CLM_HOME": str(feature_settings.home)}
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run(
        [str(feast), "-c", "features", "plan"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The repo's definitions and what `clm features apply` registered are the same objects:
    # Feast plans to create or delete none of them (an empty registry lists each one as
    # "Created feature view customer_profile", ...). Materializing updates timestamps in
    # the sources' metadata, which plan shows as updates; those are not a mismatch.
    mismatched = re.findall(
        r"^(?:Created|Deleted) (?:project|entity|feature view|feature service|data source).*$",
        done.stdout,
        flags=re.MULTILINE,
    )
    assert mismatched == [], done.stdout[-3000:]
