"""The rate-shock check: does drift monitoring turn red when the bank is shocked,
and stay green when it is not?

Two banks simulated with the same seed, `baseline` and `rate_shock` (identical
before the shock month). Reference: the pre-shock snapshots (as a champion's
validation sample would be). Current: each post-shock snapshot of the shocked
bank (expected red on the churn score and on affluent customers' balances and
outflows) and the same snapshots of the baseline bank (expected green).
Scores come from a churn model's LightGBM booster (the champion's, or one
fitted here on pre-shock months when none is given).

    flock /tmp/clm-heavy.lock .venv/bin/python -m monitoring.shock_check --customers 20000 --home /tmp/shock
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clm.segments import SEGMENT_FEATURES, SEGMENTS, add_segment_names
from clm.settings import MonitoringSettings, Settings
from monitoring.drift import compare_populations

# The features the rate shock moves (balances and outflows) — what must turn red.
AFFECTED_HINTS = ("aum", "outflow", "balance", "net_flow", "investment")
Scorer = Callable[[pd.DataFrame], np.ndarray]


def snapshot_rows(settings: Settings, features: list[str]) -> pd.DataFrame:
    """The feature table with decoded segments (value tier, lifecycle stage)."""
    from features.catalog import FEATURE_FILE

    columns = list(dict.fromkeys(["event_timestamp", *features, *SEGMENT_FEATURES.values()]))
    frame = pd.read_parquet(settings.feature_dir / FEATURE_FILE, columns=columns)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return add_segment_names(frame)


def booster_scorer(model_dir: Path) -> tuple[Scorer, list[str]]:
    """Churn probabilities from a registered churn model directory (manifest + booster)."""
    from clm.model_dir import open_model_dir

    # Probed in a child process first: a corrupt booster is an error, not an abort.
    checked, boosters = open_model_dir(model_dir, family="churn")
    booster = boosters["churn"]
    features = list(checked.features)

    def score(rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(rows[features].to_numpy(dtype=np.float64)), dtype=float)

    return score, features


def fit_stand_in(
    settings: Settings, features: list[str], before: pd.Timestamp, seed: int = 0
) -> Scorer:
    """A plain LightGBM churn model on labelled snapshots before `before` (no tuning)."""
    import lightgbm as lgb

    from features.catalog import FEATURE_FILE, LABEL_FILE

    rows = pd.read_parquet(
        settings.feature_dir / FEATURE_FILE, columns=["customer_id", "event_timestamp", *features]
    )
    labels = pd.read_parquet(
        settings.feature_dir / LABEL_FILE, columns=["customer_id", "snapshot_ts", "churn_90d"]
    )
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    labels["snapshot_ts"] = pd.to_datetime(labels["snapshot_ts"], utc=True)
    train = rows.merge(
        labels, left_on=["customer_id", "event_timestamp"], right_on=["customer_id", "snapshot_ts"]
    )
    train = train[(train["event_timestamp"] < before) & train["churn_90d"].notna()]
    target = train["churn_90d"].astype(float).to_numpy()
    if target.sum() < 50:
        # Too few churn events in the labels: learn the simulator's 90-day churn hazard instead
        # (a probability, so cross-entropy fits it); still a churn score over the same features.
        truth = pd.read_parquet(
            settings.raw_dir / "truth", columns=["customer_id", "month_end", "churn_hazard_90d"]
        )
        truth["event_timestamp"] = pd.to_datetime(truth["month_end"]).dt.tz_localize(
            "UTC"
        ) + pd.Timedelta(days=1)
        train = train.merge(
            truth[["customer_id", "event_timestamp", "churn_hazard_90d"]], how="inner"
        )
        target = train["churn_hazard_90d"].astype(float).to_numpy()
    params = {
        "objective": "cross_entropy",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "verbose": -1,
        "seed": seed,
    }
    data = lgb.Dataset(train[features].to_numpy(np.float64), label=target)
    booster = lgb.train(params, data, num_boost_round=100)

    def score(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(frame[features].to_numpy(dtype=np.float64)), dtype=float)

    return score


def rate_shock_drift(
    baseline: Settings,
    shocked: Settings,
    *,
    features: list[str],
    score: Scorer,
    reference_months: int = 3,
    thresholds: MonitoringSettings | None = None,
) -> list[dict[str, Any]]:
    """One row per post-shock snapshot and scenario: verdicts of the churn score and features."""
    thresholds = thresholds or baseline.monitoring
    meta = json.loads((shocked.raw_dir / "meta.json").read_text())
    shock_ts = pd.Timestamp(f"{meta['shock_month']}-01", tz="UTC")
    base = snapshot_rows(baseline, features)
    shock = snapshot_rows(shocked, features)
    base["churn_probability"] = score(base)
    shock["churn_probability"] = score(shock)
    snapshots = sorted(base["event_timestamp"].unique())
    # A snapshot at shock_ts holds data before the shock month only: still pre-shock.
    pre = [s for s in snapshots if s <= shock_ts][-reference_months:]
    post = [s for s in snapshots if s > shock_ts]
    reference = base[base["event_timestamp"].isin(pre)]
    out = []
    for snapshot in post:
        for scenario, bank in (("baseline", base), ("rate_shock", shock)):
            current = bank[bank["event_timestamp"] == snapshot]
            summary = compare_populations(
                reference,
                current,
                features=features,
                scores=["churn_probability"],
                segments=SEGMENTS,
                thresholds=thresholds,
            )
            affluent: dict[str, Any] = next(
                (s for s in summary["segments"] if s["value"] == "affluent"),
                {"columns": {}, "band": "grey"},
            )
            affected = {
                name: psi
                for name, psi in affluent["columns"].items()
                if any(h in name for h in AFFECTED_HINTS) and psi is not None
            }
            out.append(
                {
                    "snapshot": str(pd.Timestamp(snapshot).date()),
                    "scenario": scenario,
                    "rows": len(current),
                    "verdict": summary["verdict"],
                    "reason": summary["reasons"][0] if summary["reasons"] else "",
                    "churn_psi": summary["scores"][0]["psi"],
                    "churn_band": summary["scores"][0]["band"],
                    "red_features": [r["name"] for r in summary["features"] if r["band"] == "red"],
                    "max_feature_psi": max((r["psi"] or 0) for r in summary["features"]),
                    "affluent_band": affluent["band"],
                    "affluent_churn_psi": affluent["columns"].get("churn_probability"),
                    "affluent_affected_max_psi": max(affected.values(), default=0.0),
                    "affluent_affected_red": sorted(
                        n for n, v in affected.items() if v >= thresholds.psi_red
                    ),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=15)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--home", type=Path, required=True, help="folder for the two simulated workspaces"
    )
    parser.add_argument(
        "--model-dir", type=Path, help="a churn model directory (default: fit one pre-shock)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse banks already simulated under --home"
    )
    args = parser.parse_args(argv)
    from features.pipeline import run_build
    from features.simulator import run_simulation
    from features.store import feature_names

    banks = {}
    for scenario in ("baseline", "rate_shock"):
        settings = Settings.load(home=args.home / scenario, env={})
        if not (args.reuse and (settings.feature_dir).exists()):
            run_simulation(
                settings,
                customers=args.customers,
                months=args.months,
                seed=args.seed,
                scenario=scenario,
                shock_month=None,
                start_month="2024-01",
                progress=True,
            )
            run_build(settings, progress=True)
        banks[scenario] = settings
    if args.model_dir:
        score, features = booster_scorer(args.model_dir)
    else:
        features = feature_names(banks["baseline"], "churn_v1")
        meta = json.loads((banks["rate_shock"].raw_dir / "meta.json").read_text())
        # Labels look 90 days ahead: train only on snapshots whose horizon ends before the shock.
        before = pd.Timestamp(f"{meta['shock_month']}-01", tz="UTC") - pd.DateOffset(months=3)
        score = fit_stand_in(banks["baseline"], features, before)
    rows = rate_shock_drift(banks["baseline"], banks["rate_shock"], features=features, score=score)
    print(
        f"{'snapshot':<11} {'scenario':<10} {'rows':>7} {'verdict':<7} {'churn PSI':>9} "
        f"{'max CSI':>8} {'aff.churn':>8} {'affluent bal/outflow PSI':>24}  red features"
    )
    for r in rows:
        print(
            f"{r['snapshot']:<11} {r['scenario']:<10} {r['rows']:>7,} {r['verdict']:<7} {r['churn_psi']:>9.3f} "
            f"{r['max_feature_psi']:>8.3f} {r['affluent_churn_psi'] or 0:>8.3f} {r['affluent_affected_max_psi']:>24.3f}  {', '.join(r['red_features'][:6])}"
        )
    checks = expectation_checks(rows)
    for name, ok in checks.items():
        print(f"{'holds ' if ok else 'FAILS '} {name}")
    return 0 if all(checks.values()) else 1


def expectation_checks(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """The rate-shock expectations, each on its own (the first post-shock snapshot
    holds one month of shock in 3- and 6-month windows, so it is allowed amber)."""
    shocked = [r for r in rows if r["scenario"] == "rate_shock"]
    base = [r for r in rows if r["scenario"] == "baseline"]
    settled = shocked[1:]
    return {
        "baseline months all green": bool(base) and all(r["verdict"] == "green" for r in base),
        "shocked months red on affluent balances/outflows": bool(settled)
        and all(r["affluent_affected_red"] for r in settled),
        "shocked months red on the churn score": bool(settled)
        and all(r["churn_band"] == "red" for r in settled),
        "churn score moves more than in the baseline": bool(settled)
        and all(
            (s["affluent_churn_psi"] or 0) > (b["affluent_churn_psi"] or 0)
            for s, b in zip(settled, base[1:], strict=True)
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
