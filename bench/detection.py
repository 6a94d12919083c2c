"""Detection benchmark with the truth: false alarms on calm months, delay after a rate shock.

For each seed, two banks are simulated with the same seed (`baseline` and
`rate_shock`, identical before the shock month). The reference is a 5,000-row
sample of the three pre-shock snapshots (the size of a champion's validation
sample); a churn model is fitted on pre-shock months (monitoring.shock_check).
Each post-shock month of both banks is then judged by:

- ours: `compare_populations` as `clm monitor drift` runs it (66 inputs + the
  churn score, over the book and per value tier and lifecycle stage), with PSI
  judged against its sampling noise (the calibrated verdict);
- bands only: the same PSIs judged by the banking bands alone (the previous rule:
  >= 0.10 amber, >= 0.25 red, segments of >= 200 rows);
- Evidently: DataDriftPreset with its default per-column tests on raw values; its
  alarm is "dataset drift" (half the columns drifted); "any column" is also counted.

A calm month is a baseline month (no shock happened): any amber/red there is a false
alarm. Detection delay: post-shock months until the first red (1 = the first month).

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.detection --customers 5000 --seeds 1 2 3 --home /tmp/detect
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REFERENCE_ROWS = 5000


def bands_only(summary: dict[str, Any], amber: float, red: float, min_rows: int) -> str:
    """The verdict the banking bands alone give on the same PSIs (the old rule)."""
    values = [r["psi"] or 0.0 for r in summary["features"] + summary["scores"]]
    for s in summary["segments"]:
        if min(s["rows_reference"], s["rows_current"]) >= min_rows:
            values += [v or 0.0 for v in s["columns"].values()]
    worst = max(values, default=0.0)
    return "red" if worst >= red else "amber" if worst >= amber else "green"


def evidently_verdict(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> dict:
    """Evidently's default DataDriftPreset on raw values: share of drifted columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=columns)
    report = Report([DataDriftPreset(columns=columns)])
    snapshot = report.run(
        current_data=Dataset.from_pandas(
            current[columns].astype("float64"), data_definition=definition
        ),
        reference_data=Dataset.from_pandas(
            reference[columns].astype("float64"), data_definition=definition
        ),
    )
    share = None
    for metric in snapshot.dict().get("metrics", []):
        if metric.get("config", {}).get("type", "").endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    share = share or 0.0
    return {"share": share, "dataset_drift": share >= 0.5, "any_column": share > 0}


def one_seed(home: Path, customers: int, months: int, seed: int, evidently: bool) -> list[dict]:
    from clm.segments import SEGMENTS
    from clm.settings import Settings
    from features.pipeline import run_build
    from features.simulator import run_simulation
    from features.store import feature_names
    from monitoring.drift import compare_populations
    from monitoring.shock_check import fit_stand_in, snapshot_rows

    banks = {}
    for scenario in ("baseline", "rate_shock"):
        settings = Settings.load(home=home / f"seed{seed}" / scenario, env={})
        if not settings.feature_dir.exists():
            run_simulation(
                settings,
                customers=customers,
                months=months,
                seed=seed,
                scenario=scenario,
                shock_month=None,
                start_month="2024-01",
                progress=False,
            )
            run_build(settings, progress=False)
        banks[scenario] = settings
    features = feature_names(banks["baseline"], "churn_v1")
    meta = json.loads((banks["rate_shock"].raw_dir / "meta.json").read_text())
    shock_ts = pd.Timestamp(f"{meta['shock_month']}-01", tz="UTC")
    score = fit_stand_in(banks["baseline"], features, shock_ts - pd.DateOffset(months=3))
    frames = {s: snapshot_rows(b, features) for s, b in banks.items()}
    for frame in frames.values():
        frame["churn_probability"] = score(frame)
    base = frames["baseline"]
    stamps = sorted(base["event_timestamp"].unique())
    pre = [s for s in stamps if s <= shock_ts][-3:]
    post = [s for s in stamps if s > shock_ts]
    pool = base[base["event_timestamp"].isin(pre)]
    reference = pool.sample(min(REFERENCE_ROWS, len(pool)), random_state=seed)
    thresholds = banks["baseline"].monitoring
    columns = [*features, "churn_probability"]
    rows = []
    for month, snapshot in enumerate(post, start=1):
        for scenario, frame in frames.items():
            current = frame[frame["event_timestamp"] == snapshot]
            summary = compare_populations(
                reference,
                current,
                features=features,
                scores=["churn_probability"],
                segments=SEGMENTS,
                thresholds=thresholds,
            )
            row = {
                "seed": seed,
                "customers": customers,
                "scenario": scenario,
                "month_after_shock": month,
                "rows": len(current),
                "ours": summary["verdict"],
                "bands_only": bands_only(
                    summary, thresholds.psi_amber, thresholds.psi_red, thresholds.min_segment_rows
                ),
                "reason": summary["reasons"][0] if summary["reasons"] else "",
            }
            if evidently:
                row["evidently"] = evidently_verdict(reference, current, columns)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    calm = [r for r in rows if r["scenario"] == "baseline"]
    shocked = [r for r in rows if r["scenario"] == "rate_shock"]
    seeds = sorted({r["seed"] for r in rows})

    def rate(flags: list[bool]) -> float:
        return sum(flags) / len(flags) if flags else float("nan")

    def delay(alarm: Any) -> list[int | None]:
        out = []
        for seed in seeds:
            months = sorted(
                (r for r in shocked if r["seed"] == seed), key=lambda r: r["month_after_shock"]
            )
            out.append(next((r["month_after_shock"] for r in months if alarm(r)), None))
        return out

    result = {
        "calm_months": len(calm),
        "shocked_months": len(shocked),
        "ours_false_alarm": rate([r["ours"] != "green" for r in calm]),
        "ours_false_red": rate([r["ours"] == "red" for r in calm]),
        "ours_delay": delay(lambda r: r["ours"] == "red"),
        "bands_only_false_alarm": rate([r["bands_only"] != "green" for r in calm]),
        "bands_only_delay": delay(lambda r: r["bands_only"] == "red"),
    }
    if calm and "evidently" in calm[0]:
        result["evidently_false_alarm"] = rate([r["evidently"]["dataset_drift"] for r in calm])
        result["evidently_any_column_false_alarm"] = rate(
            [r["evidently"]["any_column"] for r in calm]
        )
        result["evidently_delay"] = delay(lambda r: r["evidently"]["dataset_drift"])
        result["evidently_calm_drifted_share_median"] = statistics.median(
            r["evidently"]["share"] for r in calm
        )
        result["evidently_shocked_drifted_share_median"] = statistics.median(
            r["evidently"]["share"] for r in shocked
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--months", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--out", type=Path, help="write every month's verdicts as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[dict] = []
    for seed in args.seeds:
        rows += one_seed(args.home, args.customers, args.months, seed, not args.no_evidently)
        print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
    for r in rows:
        ev = r.get("evidently", {})
        print(
            f"seed {r['seed']} {r['scenario']:<10} +{r['month_after_shock']} rows {r['rows']:>6,} "
            f"ours {r['ours']:<6} bands-only {r['bands_only']:<6} "
            f"evidently {'DRIFT' if ev.get('dataset_drift') else 'ok   '} share {ev.get('share', np.nan):.2f}"
            f"  {r['reason'][:110]}"
        )
    summary = summarise(rows)
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
