"""The prediction log: durable appends, torn tails skipped, journals rolled to parquet."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from serving.predlog import (
    JOURNAL_DIR,
    PredictionLog,
    read_journal,
    read_predictions,
    recover_journals,
)
from serving.scoring import Scored

FEATURES = ("age", "tenure_months", "stage_code")


def scored(ids: list[str], version: str = "3") -> Scored:
    n = len(ids)
    rng = np.random.default_rng(n)
    stage = rng.dirichlet(np.ones(len(STAGES)), size=n)
    return Scored(
        customer_ids=ids,
        features=rng.random((n, len(FEATURES))),
        feature_names=FEATURES,
        versions={"churn": version, "propensity": "2", "stage": "1"},
        churn=rng.random(n),
        propensity=rng.random((n, len(PROPENSITY_PRODUCTS))),
        stage=stage,
        next_best=["credit_card"] * n,
        stage_current=["growing"] * n,
        stage_next=["mature"] * n,
        results=[],
    )


def journals(directory: Path) -> list[Path]:
    return sorted((directory / JOURNAL_DIR).glob("journal-*.arrows"))


def test_graceful_close_writes_every_row_as_parquet(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=0.05)
    for i in range(20):
        log.append(f"req{i}", "score", scored([f"C{i:07d}", f"C{i + 100:07d}"]))
    log.close()
    assert journals(tmp_path) == []
    segments = sorted(tmp_path.glob("date=*/part-*.parquet"))
    assert len(segments) == 1
    table = pq.read_table(segments[0])
    assert table.num_rows == 40
    names = set(table.schema.names)
    assert {
        "request_id",
        "ts",
        "customer_id",
        "endpoint",
        "version_churn",
        "churn_probability",
    } <= names
    assert {f"propensity_{p}" for p in PROPENSITY_PRODUCTS} <= names
    assert {f"stage_prob_{s}" for s in STAGES} <= names
    assert {f"f_{f}" for f in FEATURES} <= names
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert table.column("request_id").to_pylist()[:2] == ["req0", "req0"]


def test_torn_tail_is_dropped_and_complete_batches_survive(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=3600)  # flush by hand only
    log.append("first", "score", scored(["C0000001"]))
    log.flush()
    log.append("second", "score", scored(["C0000002", "C0000003"]))
    log.flush()
    path = journals(tmp_path)[0]
    complete = path.stat().st_size
    log.append("third", "score", scored(["C0000004"]))
    log.flush()
    # A crash mid-write of the third batch: cut it in half.
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(complete + (size - complete) // 2)
    table = read_journal(path)
    assert table is not None
    assert table.column("request_id").to_pylist() == ["first", "second", "second"]
    # Garbage appended after a complete batch is dropped as well.
    with open(path, "ab") as fh:
        fh.write(os.urandom(37))
    assert read_journal(path).num_rows == 3  # type: ignore[union-attr]


def test_journals_of_dead_processes_are_recovered_at_start(tmp_path: Path) -> None:
    crashed = PredictionLog(tmp_path, flush_seconds=3600)
    crashed.append("kept", "score_features", scored(["C0000009"]))
    crashed.flush()
    crashed._stop.set()  # the process "dies": no close, no roll
    path = journals(tmp_path)[0]
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    orphan = path.with_name(f"{path.stem.rsplit('-', 1)[0]}-{dead_pid}.arrows")
    path.rename(orphan)

    restarted = PredictionLog(tmp_path, flush_seconds=3600)
    assert journals(tmp_path) == []
    segment = tmp_path.glob(f"date=*/part-{orphan.stem.removeprefix('journal-')}.parquet")
    assert len(list(segment)) == 1
    assert read_predictions(tmp_path).column("request_id").to_pylist() == ["kept"]
    # Recovering again (a crash mid-roll) overwrites the same segment: no duplicates.
    assert recover_journals(tmp_path) == []
    restarted.close()
    assert read_predictions(tmp_path).num_rows == 1


def test_a_new_feature_list_starts_a_new_journal(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=3600)
    log.append("a", "score", scored(["C1"]))
    other = scored(["C2"])
    other.feature_names = ("age", "tenure_months", "aum")
    log.append("b", "score", other)
    log.close()
    table = read_predictions(tmp_path)
    assert sorted(table.column("request_id").to_pylist()) == ["a", "b"]
    assert "f_aum" in table.schema.names and "f_stage_code" in table.schema.names


def test_append_does_no_io_on_the_request_path(tmp_path: Path) -> None:
    """A request only queues its rows (how fast that is, is bench/serving.py's business):
    nothing reaches the disk until the writer's flush, which then writes every row."""
    log = PredictionLog(tmp_path, flush_seconds=3600)
    try:
        for i in range(200):
            log.append(f"r{i}", "score", scored([f"C{i:07d}", f"C{i + 1000:07d}"]))
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
        log.flush()
        assert read_predictions(tmp_path).num_rows == 400
    finally:
        log.close()


def test_unknown_customers_get_a_row_with_a_status_and_no_scores(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=3600)
    versions = {"churn": "3", "propensity": "2", "stage": "1"}
    log.append("mixed", "score", scored(["C1", "C2"]), unknown=["C9"], versions=versions)
    log.append("none known", "score", None, unknown=["X1", "X2"], versions=versions)
    log.append("all known", "score", scored(["C3"]))
    log.append("empty", "score", None)  # nothing to log
    log.close()
    rows = read_predictions(tmp_path).to_pylist()
    assert [(r["request_id"], r["customer_id"], r["status"]) for r in rows] == [
        ("mixed", "C1", "scored"),
        ("mixed", "C2", "scored"),
        ("mixed", "C9", "unknown_customer"),
        ("none known", "X1", "unknown_customer"),
        ("none known", "X2", "unknown_customer"),
        ("all known", "C3", "scored"),
    ]
    for r in rows:
        scores = [r["churn_probability"], r["stage_prob_mature"], r["f_age"]]
        scores += [r[f"propensity_{p}"] for p in PROPENSITY_PRODUCTS]
        if r["status"] == "scored":
            assert all(v is not None and not np.isnan(v) for v in scores), r
            assert r["stage_next"] == "mature"
        else:  # null, not NaN: nothing was scored
            assert all(v is None for v in scores), r
            assert r["next_best_product"] is None and r["stage_next"] is None
        assert r["version_churn"] == "3"  # the versions that would have scored them
    # A request with only unknown ids joins whatever journal is open (one segment here).
    assert len(list(tmp_path.glob("date=*/part-*.parquet"))) == 1
