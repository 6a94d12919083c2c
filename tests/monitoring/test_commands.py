"""The three monitoring commands on the shared trained workspace.

The prediction log is back-filled the way the service would have written it:
the champions batch-score two past snapshots (serving.batch) and the rows are
stored as log segments dated a few days after each snapshot.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from clm.settings import Settings
from tests.fixtures.bank import make_settings


def _backfill(settings: Settings, batch: Path, ts: pd.Timestamp) -> pd.DataFrame:
    frame = pd.read_parquet(batch)
    frame["ts"] = pd.Series(ts, index=frame.index).astype(
        "datetime64[us, UTC]"
    )  # as serving writes it
    folder = settings.predictions_dir / f"date={ts:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(
        folder / f"part-{int(ts.timestamp() * 1000)}-{os.getpid()}.parquet", index=False
    )
    return frame


@pytest.fixture(scope="module")
def monitored(
    trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Path]:
    """A workspace sharing the trained one's registry, features and raw data, with its own log."""
    from features.store import snapshots
    from serving.batch import run_score_batch

    home = tmp_path_factory.mktemp("monitored")
    for part in ("raw", "features", "feast"):
        (home / part).symlink_to(trained_settings.home / part)
    settings = make_settings(home, MLFLOW_TRACKING_URI=trained_settings.tracking_uri)
    stamps = sorted(snapshots(trained_settings))
    batches = []
    for snapshot in (stamps[-6], stamps[-1]):
        out = home / "batches" / f"{snapshot:%Y-%m-%d}.parquet"
        run_score_batch(settings, as_of=f"{snapshot:%Y-%m-%d}", out=out, progress=False)
        _backfill(settings, out, snapshot + pd.Timedelta(days=3))
        batches.append(out)
    return settings, batches[-1]


def test_drift_on_a_batch_file_writes_json_and_evidently_and_exits_on_red(
    monitored: tuple[Settings, Path],
) -> None:
    from monitoring.drift import run_drift

    settings, batch = monitored
    code = run_drift(settings, model="churn", window=None, current=batch, progress=False)
    summaries = sorted(settings.reports_dir.glob("drift/*/churn-drift-*.json"))
    summary = json.loads(summaries[-1].read_text())
    assert code == (1 if summary["verdict"] == "red" else 0)
    assert summary["current"]["kind"] == "batch" and summary["rows"]["current"] > 1000
    assert {r["name"] for r in summary["scores"]} == {"churn_probability"}
    assert len(summary["features"]) > 20
    assert {s["segment"] for s in summary["segments"]} == {"value_tier", "stage"}
    (evidently,) = summaries[-1].parent.glob("churn-evidently-*.html")
    assert evidently.stat().st_size > 10_000
    assert summary["reasons"] and summary["reasons"][0].split(":")[0] == summary["verdict"].upper()

    # The same batch with one input broken (amounts in cents): red, named, exit code 1.
    broken = pd.read_parquet(batch)
    feature = (
        "f_outflow_3m"
        if "f_outflow_3m" in broken.columns
        else next(c for c in broken if c.startswith("f_"))
    )
    broken[feature] = broken[feature] * 100 + 1000
    path = batch.with_name("broken.parquet")
    broken.to_parquet(path, index=False)
    assert run_drift(settings, model="churn", window=None, current=path, progress=False) == 1
    latest = json.loads(
        sorted(settings.reports_dir.glob("drift/*/churn-drift-*.json"))[-1].read_text()
    )
    assert any(feature[2:] in reason for reason in latest["red_reasons"])


@pytest.mark.slow
def test_drift_performance_and_report_over_the_log(monitored: tuple[Settings, Path]) -> None:
    from clm import mlflow_access
    from monitoring.drift import run_drift
    from monitoring.performance import run_performance
    from monitoring.report import run_report

    settings, _ = monitored
    code = run_drift(settings, model=None, window="3650d", current=None, progress=False)
    verdicts = []
    for family in ("churn", "propensity", "stage"):
        summary = json.loads(
            sorted(settings.reports_dir.glob(f"drift/*/{family}-drift-*.json"))[-1].read_text()
        )
        assert summary["current"]["kind"] == "prediction_log" and summary["scores"]
        verdicts.append(summary["verdict"])
    # The exit code is the written verdicts' (1 when any family is red), whatever they are.
    assert code == int("red" in verdicts)

    code = run_performance(settings, model="churn", progress=False)
    perf = json.loads(
        sorted(settings.reports_dir.glob("performance/*/churn-performance*.json"))[-1].read_text()
    )
    assert code == int(perf["verdict"] == "red")
    # Only the older snapshot's predictions have matured outcomes.
    assert perf["matured_predictions"] > 0
    assert perf["targets"] and perf["targets"][0]["rows"] == perf["matured_predictions"]

    log = pd.concat(pd.read_parquet(p) for p in settings.predictions_dir.glob("date=*/*.parquet"))
    code = run_report(settings, model="churn", period="3650d", progress=False)
    report = sorted(settings.reports_dir.glob("risk/churn-*.html"))[-1]
    text = report.read_text()
    verdict = json.loads(report.with_suffix(".json").read_text())["verdict"]
    assert code == int(verdict == "red")
    assert "Which versions served" in text and "Drift of scores and inputs" in text
    # No customer id (nor any other row-level identifier) in the page.
    assert not any(cid in text for cid in log["customer_id"].unique())
    assert not re.search(r"C\d{7}", text)
    assert "<script" not in text and not re.search(r"""src=['"]?https?:""", text)

    client = mlflow_access.client(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.monitoring_experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert {"drift", "performance", "report"} <= {r.data.tags.get("clm.monitor") for r in runs}


def test_backtest_report_uses_snapshot_dates_estimates_auc_and_draws_charts(
    monitored: tuple[Settings, Path],
) -> None:
    """Item 6: batch files dated by their snapshot (not wall-clock) give matured performance;
    item 5: the AUC estimated from scores alone is reconciled with the realised one;
    item 4: the page carries its charts, date-stamped, self-contained, without ids."""
    from monitoring.backtest import snapshot_of
    from monitoring.report import run_report

    settings, _ = monitored
    # The fixture's two batch files, named by snapshot date (another test adds broken.parquet).
    files = sorted((settings.home / "batches").glob("20*.parquet"))
    assert len(files) == 2
    assert [f"{snapshot_of(f):%Y-%m-%d}" for f in files] == [f.stem for f in files]
    code = run_report(settings, model="churn", period=None, scores=files, progress=False)
    (path,) = sorted(settings.reports_dir.glob("risk/churn-back-test-*.html"))
    assert re.search(r"churn-back-test-.*-\d{8}T\d{6}Z\.html$", path.name)
    summary = json.loads(path.with_suffix(".json").read_text())
    assert code == int(summary["verdict"] == "red")
    performance = summary["performance"]
    assert performance["backtest"] and performance["matured_predictions"] > 1000
    months = performance["estimates"][0]["by_month"]
    older, newer = months[0], months[-1]
    assert older["month"] == files[0].stem[:7]
    # The older snapshot's outcomes are known: estimate and realised side by side.
    assert older["status"] == "matured" and abs(older["difference"]) <= 0.05, months
    # The latest snapshot's have not happened: an estimate only, a plausible one.
    assert newer["status"].startswith("estimated") and 0.6 < newer["estimated_auc"] < 1.0
    text = path.read_text()
    assert text.count("<svg") >= 4 and "estimated before outcomes" in text
    assert not re.search(r"C\d{7}", text) and "<script" not in text
