"""Drift summary, data quality, performance metrics and the risk report on frames built here."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clm.settings import MonitoringSettings
from monitoring.drift import compare_populations
from monitoring.performance import evaluate_matured, join_outcomes
from monitoring.psi import psi
from monitoring.quality import quality_table
from monitoring.report import render_report

THRESHOLDS = MonitoringSettings()


def population(rng: np.random.Generator, n: int, shock: float = 0.0) -> pd.DataFrame:
    """A bank-like frame: affluent balances fall by `shock` (log scale) and churn rises for them."""
    tier = rng.choice(["mass", "affluent", "private"], n, p=[0.7, 0.25, 0.05])
    affluent = tier != "mass"
    balance = rng.lognormal(8 + 2 * affluent, 1.0, n)
    balance = np.where(affluent, balance * np.exp(-shock), balance)
    outflow = rng.lognormal(6, 0.8, n) * np.where(affluent, np.exp(2 * shock), 1.0)
    tenure = rng.integers(1, 200, n).astype(float)
    logit = -3 + 0.8 * affluent * shock + 0.3 * rng.normal(size=n)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "balance_total": balance,
            "outflow_30d": outflow,
            "tenure_months": tenure,
            "churn_probability": 1 / (1 + np.exp(-logit)),
            "value_tier": tier,
            "stage": rng.choice(["growing", "mature", "declining"], n),
        }
    )


def compare(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    return compare_populations(
        reference,
        current,
        features=["balance_total", "outflow_30d", "tenure_months"],
        scores=["churn_probability"],
        segments=["value_tier", "stage"],
        thresholds=THRESHOLDS,
    )


def test_same_population_is_green_and_a_shock_is_red_where_it_hit() -> None:
    rng = np.random.default_rng(1)
    reference = population(rng, 20_000)
    calm = compare(reference, population(rng, 20_000))
    assert calm["verdict"] == "green", calm["red_reasons"]
    shocked = compare(reference, population(rng, 20_000, shock=1.5))
    assert shocked["verdict"] == "red"
    bands = {r["name"]: r["band"] for r in shocked["features"] + shocked["scores"]}
    assert bands["balance_total"] == "red" and bands["outflow_30d"] == "red"
    assert bands["churn_probability"] == "red"
    assert bands["tenure_months"] == "green"
    segments = {(s["segment"], s["value"]): s for s in shocked["segments"]}
    assert segments[("value_tier", "affluent")]["band"] == "red"
    assert segments[("value_tier", "mass")]["band"] == "green"
    # Small segments are shown but not judged.
    assert segments[("value_tier", "private")]["rows_current"] > 0
    json.dumps(shocked)  # JSON-ready (no NaN objects, numpy scalars)


def test_summary_psi_and_ks_are_the_single_column_functions() -> None:
    rng = np.random.default_rng(2)
    reference, current = population(rng, 5000), population(rng, 4000, shock=0.5)
    summary = compare(reference, current)
    for row in summary["features"]:
        expected = psi(reference[row["name"]].to_numpy(), current[row["name"]].to_numpy())
        assert row["psi"] == pytest.approx(expected, abs=1e-6)
    score = summary["scores"][0]
    assert score["ks"] == pytest.approx(
        stats.ks_2samp(reference["churn_probability"], current["churn_probability"]).statistic,
        abs=1e-6,
    )


def test_quality_flags_missing_rise_and_out_of_range() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.uniform(0, 1, 2000)})
    current = pd.DataFrame({"a": rng.normal(0, 1, 1000), "b": rng.uniform(0, 2, 1000)})
    current.loc[:299, "a"] = np.nan
    table = quality_table(reference, current, ["a", "b"], THRESHOLDS)
    assert table.loc["a", "missing_increase"] == pytest.approx(0.3)
    assert table.loc["a", "band"] == "red"
    assert table.loc["b", "out_of_range"] == pytest.approx(
        np.mean(current["b"] > reference["b"].max())
    )
    assert table.loc["b", "band"] == "red"


def test_matured_predictions_join_the_snapshot_they_were_scored_on() -> None:
    rng = np.random.default_rng(5)
    snapshots = pd.to_datetime(["2024-02-01", "2024-03-01", "2024-04-01"], utc=True)
    ids = [f"C{i:07d}" for i in range(1000)]
    labels = pd.DataFrame(
        {
            "customer_id": np.repeat(ids, 3),
            "snapshot_ts": np.tile(snapshots, 1000),
            "churn_90d": rng.integers(0, 2, 3000).astype(float),
        }
    )
    labels.loc[labels["snapshot_ts"] == snapshots[-1], "churn_90d"] = np.nan  # horizon still open
    truth = labels.set_index(["customer_id", "snapshot_ts"])["churn_90d"]
    predictions = pd.DataFrame(
        {
            "customer_id": ids * 3,
            "ts": np.repeat(
                pd.to_datetime(["2024-02-10", "2024-03-05", "2024-04-20"], utc=True), 1000
            ),
        }
    )
    keys = list(
        zip(
            predictions["customer_id"],
            predictions["ts"].dt.floor("D").map(lambda t: t.replace(day=1)),
            strict=True,
        )
    )
    y = truth.reindex(keys).to_numpy()
    predictions["churn_probability"] = np.clip(
        np.nan_to_num(y, nan=0.5) * 0.6 + rng.uniform(0, 0.4, 3000), 0, 1
    )
    matured = join_outcomes(predictions, labels)
    assert sorted(matured["month"].unique()) == ["2024-02", "2024-03", "2024-04"]
    result = evaluate_matured(matured, "churn", development={"churn": 0.99}, min_rows=100)
    churn = result["targets"][0]
    assert churn["rows"] == 2000  # April's labels are not matured
    assert [m["month"] for m in churn["by_month"]] == ["2024-02", "2024-03"]
    assert churn["auc"] > 0.9
    assert churn["band"] in ("green", "amber")
    assert (
        evaluate_matured(matured, "churn", development={"churn": 1.2}, min_rows=100)["targets"][0][
            "band"
        ]
        == "red"
    )


def test_risk_report_is_self_contained_and_holds_no_customer_ids() -> None:
    rng = np.random.default_rng(6)
    reference, current = population(rng, 3000), population(rng, 3000, shock=1.0)
    drift = compare(reference, current)
    html = render_report(
        family="churn",
        registered_name="clm-churn",
        period_label="2024-05",
        champion_version="3",
        verdict=drift["verdict"],
        reasons=drift["red_reasons"],
        served=[{"version": "3", "first": "2024-05-01", "last": "2024-05-31", "predictions": 3000}],
        registry=[
            {
                "version": "3",
                "created": "2024-04-30T00:00:00+00:00",
                "aliases": ["champion"],
                "run_id": "abc",
                "evidence": {"clm.promotion.report": "runs:/abc/promotion/x/report.md"},
            }
        ],
        drift=drift,
        performance=None,
        thresholds=THRESHOLDS.model_dump(),
        generated="2024-06-01T00:00:00+00:00",
    )
    assert "Action needed" in html and "runs:/abc/promotion/x/report.md" in html
    assert not re.search(r"C\d{7}", html)
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)  # no external assets
    assert "<script" not in html


def test_windows_read_as_documented() -> None:
    from monitoring.inputs import MonitoringInputError, parse_window

    latest = pd.Timestamp("2025-03-14 10:00", tz="UTC")
    last = parse_window("30d", latest, 30)
    assert (last.start, last.end) == (
        pd.Timestamp("2025-02-13", tz="UTC"),
        pd.Timestamp("2025-03-15", tz="UTC"),
    )
    assert parse_window(None, latest, 7).start == pd.Timestamp("2025-03-08", tz="UTC")
    month = parse_window("2025-02", latest, 30)
    assert (month.start, month.end) == (
        pd.Timestamp("2025-02-01", tz="UTC"),
        pd.Timestamp("2025-03-01", tz="UTC"),
    )
    span = parse_window("2025-01-10:2025-01-20", latest, 30)
    assert (span.start, span.end) == (
        pd.Timestamp("2025-01-10", tz="UTC"),
        pd.Timestamp("2025-01-21", tz="UTC"),
    )
    for bad in ("last week", "2025-13", "2025-02-01:2025-01-01"):
        with pytest.raises(MonitoringInputError, match="not understood"):
            parse_window(bad, latest, 30)


def test_too_few_current_rows_are_shown_but_not_judged() -> None:
    from clm.settings import Settings
    from monitoring.drift import compare_populations

    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 5000)})
    thresholds = Settings.load(env={}).monitoring
    few = pd.DataFrame({"a": rng.normal(3, 1, 5)})  # shifted far, but only five rows
    many = pd.DataFrame({"a": rng.normal(3, 1, 5000)})
    judged = compare_populations(
        reference, many, features=["a"], scores=[], segments=[], thresholds=thresholds
    )
    unjudged = compare_populations(
        reference, few, features=["a"], scores=[], segments=[], thresholds=thresholds
    )
    assert judged["features"][0]["band"] == "red"
    assert unjudged["features"][0]["band"] == "grey"
    assert unjudged["features"][0]["psi"] > 0.25  # the value is still reported
