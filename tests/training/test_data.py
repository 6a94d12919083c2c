"""Out-of-time splitting: order, no leakage, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.training import synthetic
from training.data import TrainingDataError, labelled_rows, out_of_time_split


def _months(n: int) -> list[pd.Timestamp]:
    return list(pd.date_range("2024-02-01", periods=n, freq="MS", tz="UTC"))


def test_split_is_out_of_time() -> None:
    snaps = _months(12)
    split = out_of_time_split(list(reversed(snaps)), validation_months=3, test_months=1)
    assert split.test == snaps[-1:]
    assert split.validation == snaps[-4:-1]
    assert split.train == snaps[:-4]
    assert max(split.train) < min(split.validation) <= max(split.validation) < min(split.test)


def test_too_few_snapshots_is_a_clear_error() -> None:
    with pytest.raises(TrainingDataError, match="validation_months"):
        out_of_time_split(_months(4), validation_months=3, test_months=1)


@pytest.mark.parametrize("family", ["churn", "propensity", "stage"])
def test_no_customer_snapshot_in_two_splits(family: str) -> None:
    ts = synthetic.training_set(family, customers=200, months=10)
    frame = ts.frame
    assert not frame.duplicated(["customer_id", "snapshot_ts"]).any()
    per_split = {
        name: set(map(tuple, ts.part(name)[["customer_id", "snapshot_ts"]].to_numpy()))
        for name in ("train", "validation", "test")
    }
    assert not per_split["train"] & per_split["validation"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["validation"] & per_split["test"]
    # Out of time: every training row is older than every validation row, and so on.
    assert ts.part("train")["snapshot_ts"].max() < ts.part("validation")["snapshot_ts"].min()
    assert ts.part("validation")["snapshot_ts"].max() < ts.part("test")["snapshot_ts"].min()
    # Unlabelled snapshots (horizon past the data) are in no split.
    labels, _ = synthetic.frames(200, 10)
    labelled = labelled_rows(labels, family)
    assert len(frame) == len(labelled)
    assert ts.lineage["splits"]["test"]["rows"] == len(ts.part("test"))


def test_one_churn_outcome_is_a_clear_error() -> None:
    from training.train import tasks_for

    ts = synthetic.training_set("churn", customers=100, months=8)
    ts.frame["churn_90d"] = 0.0
    with pytest.raises(TrainingDataError, match="only one churn_90d outcome"):
        tasks_for(ts)


@pytest.mark.parametrize("family", ["churn", "propensity"])
def test_assemble_joins_feature_rows_in_any_order(family: str) -> None:
    """The store's rows in label order take the no-join path; any other order joins to the same set."""
    from training.data import assemble

    labels, feats = synthetic.frames(150, 8, seed=3)
    rows = labelled_rows(labels, family)
    split = out_of_time_split(
        list(rows["snapshot_ts"].unique()), validation_months=2, test_months=1
    )
    service = {"churn": "churn_v1", "propensity": "propensity_v1"}[family]
    aligned = (
        feats.set_index(["customer_id", "event_timestamp"])
        .loc[list(zip(rows["customer_id"], rows["snapshot_ts"], strict=True))]
        .reset_index()
    )
    shuffled = feats.sample(frac=1.0, random_state=1).reset_index(drop=True)
    a = assemble(family, service, synthetic.FEATURES, rows, aligned, split)
    b = assemble(family, service, synthetic.FEATURES, rows, shuffled, split)
    key = ["customer_id", "snapshot_ts"]
    pd.testing.assert_frame_equal(
        a.frame.sort_values(key).reset_index(drop=True),
        b.frame.sort_values(key).reset_index(drop=True),
    )
    assert len(a.frame) == len(rows)
    assert (a.frame[synthetic.FEATURES].dtypes == "float32").all()
    assert (a.part("test")[synthetic.FEATURES].dtypes == "float64").all()
    # float32 in memory, the same values as the store's float64 up to float32 rounding
    merged = a.frame.merge(
        feats.rename(columns={"event_timestamp": "snapshot_ts"}), on=key, suffixes=("", "_src")
    )
    for name in synthetic.FEATURES:
        assert (merged[name].to_numpy() == merged[f"{name}_src"].astype("float32").to_numpy()).all()


@pytest.mark.slow
def test_chunked_fetch_is_the_same_as_one_join(feature_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Feast rows asked for in chunks equal one point-in-time join, in the entities' order."""
    from features import store
    from training import data

    labels = store.load_labels(feature_settings)
    entities = labels[["customer_id", "snapshot_ts"]].sample(n=2400, random_state=2)
    entities = entities.reset_index(drop=True)
    monkeypatch.setattr(data, "FETCH_CHUNK_ROWS", 1000)
    chunked = data.fetch_features(feature_settings, "churn_v1", entities, progress=False)
    whole = store.training_frame(
        feature_settings,
        "churn_v1",
        entities.rename(columns={"snapshot_ts": "event_timestamp"}),
        progress=False,
    )
    names = store.feature_names(feature_settings, "churn_v1")
    assert len(chunked) == len(entities)
    assert (
        chunked["customer_id"].astype(str).to_numpy()
        == entities["customer_id"].astype(str).to_numpy()
    ).all()
    expected = whole[names].astype("float32").reset_index(drop=True)
    pd.testing.assert_frame_equal(chunked[names], expected)


@pytest.mark.slow
def test_families_share_one_fetch(feature_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`clm train all` asks Feast once for all three families (they serve the same features)
    and each family gets exactly the rows it would get alone."""
    from training import data

    calls = []
    real = data.fetch_features

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "fetch_features", counting)
    sizes = {
        ts.family: (len(ts.frame), ts.lineage["splits"])
        for ts in data.load_training_sets(
            feature_settings, ("churn", "propensity", "stage"), progress=False
        )
    }
    assert len(calls) == 1
    alone = data.load_training_set(feature_settings, "stage", progress=False)
    assert sizes["stage"] == (len(alone.frame), alone.lineage["splits"])
    assert sizes["churn"][0] <= sizes["propensity"][0]
