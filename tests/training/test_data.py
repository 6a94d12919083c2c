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
