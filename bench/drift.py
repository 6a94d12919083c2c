"""Benchmark: our drift job vs Evidently's DataDriftPreset on the same data.

1M reference vs 1M current rows x ~50 columns (45 features, 5 scores, plus value
tier and stage segments for ours), some columns drifted by different amounts.
Each side runs in its own subprocess so its wall time and peak memory (max RSS,
from wait4) are its own; Evidently's per-column test is set to PSI with our red
threshold so the verdicts (drifted or not, per column) can be compared. Since
issue 12, monitoring.evidently_report feeds Evidently each column's bin under our
reference bins (not raw values), so its PSI is ours on the same bins; the
figures in bench/README.md were measured before, on raw values.

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.drift --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = 45
SCORES = 5


def make_data(rows: int, seed: int, drifted: bool) -> pd.DataFrame:
    """Bank-like columns: skewed amounts with ties at 0, codes, counts, NaNs, scores."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for j in range(FEATURES):
        # Drift grows with the column index on the current side: about a third cross red.
        shift = (j / FEATURES) * 0.8 if drifted and j % 3 == 0 else 0.0
        kind = j % 5
        if kind == 0:
            values = rng.lognormal(6 + shift, 1.2, rows)
            values[rng.random(rows) < 0.3] = 0.0  # dormant balances tie at 0
        elif kind == 1:
            values = rng.normal(shift, 1.0, rows)
        elif kind == 2:
            values = rng.poisson(3 + 4 * shift, rows).astype(float)
        elif kind == 3:
            values = rng.integers(0, 6, rows).astype(float)
            if shift:
                values[rng.random(rows) < shift / 2] = 5.0
        else:
            values = rng.gamma(2 + 3 * shift, 1.0, rows)
        values[rng.random(rows) < 0.02 + shift / 10] = np.nan
        columns[f"feature_{j:02d}"] = values
    for k in range(SCORES):
        logit = rng.normal(-2 + (0.6 * k / SCORES if drifted else 0.0), 1.0, rows)
        columns[f"score_{k}"] = 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(columns)
    frame["value_tier"] = rng.choice(
        np.array(["mass", "affluent", "private"]), rows, p=[0.7, 0.25, 0.05]
    )
    frame["stage"] = rng.choice(
        np.array(["honeymoon", "growing", "mature", "declining", "dormant"]), rows
    )
    return frame


def numeric_columns() -> tuple[list[str], list[str]]:
    return [f"feature_{j:02d}" for j in range(FEATURES)], [f"score_{k}" for k in range(SCORES)]


def run_ours(folder: Path, out: Path) -> None:
    from clm.settings import MonitoringSettings
    from monitoring.drift import compare_populations

    start = time.perf_counter()
    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    loaded = time.perf_counter()
    features, scores = numeric_columns()
    thresholds = MonitoringSettings()
    summary = compare_populations(
        reference,
        current,
        features=features,
        scores=scores,
        segments=["value_tier", "stage"],
        thresholds=thresholds,
    )
    done = time.perf_counter()
    verdicts = {
        r["name"]: r["psi"] >= thresholds.psi_red for r in summary["features"] + summary["scores"]
    }
    psis = {r["name"]: r["psi"] for r in summary["features"] + summary["scores"]}
    out.write_text(
        json.dumps(
            {"load_s": loaded - start, "compute_s": done - loaded, "drifted": verdicts, "psi": psis}
        )
    )


def run_evidently(folder: Path, out: Path) -> None:
    from clm.settings import MonitoringSettings

    start = time.perf_counter()
    from monitoring.evidently_report import drift_preset_verdicts

    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    loaded = time.perf_counter()
    features, scores = numeric_columns()
    result = drift_preset_verdicts(
        reference,
        current,
        [*features, *scores],
        threshold=MonitoringSettings().psi_red,
        max_rows=None,
    )
    done = time.perf_counter()
    out.write_text(
        json.dumps(
            {
                "load_s": loaded - start,
                "compute_s": done - loaded,
                "drifted": {c: v["drifted"] for c, v in result.items()},
                "psi": {c: v["psi"] for c, v in result.items()},
            }
        )
    )


def measure(side: str, folder: Path) -> dict:
    """Run one side in a child process; wall time and the child's own peak RSS."""
    out = folder / f"{side}.json"
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.drift", "--child", side, "--data", str(folder)]
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{side} failed with status {status}")
    result = json.loads(out.read_text())
    result.update({"wall_s": wall, "peak_rss_gb": usage.ru_maxrss / 1024**2})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows per side (reference and current)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of our job (median reported)")
    parser.add_argument(
        "--evidently-repeats", type=int, default=1, help="runs of Evidently (minutes each at 1M)"
    )
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--child", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (run_ours if args.child == "ours" else run_evidently)(
            args.data, args.data / f"{args.child}.json"
        )
        return

    with tempfile.TemporaryDirectory(prefix="clm-bench-drift-") as tmp:
        folder = Path(tmp)
        make_data(args.rows, 1, drifted=False).to_parquet(folder / "reference.parquet")
        make_data(args.rows, 2, drifted=True).to_parquet(folder / "current.parquet")
        ours = [measure("ours", folder) for _ in range(args.repeats)]
        theirs = (
            []
            if args.skip_evidently
            else [measure("evidently", folder) for _ in range(args.evidently_repeats)]
        )
    features, scores = numeric_columns()
    columns = [*features, *scores]
    print(
        f"data: {args.rows:,} reference vs {args.rows:,} current rows x {len(columns)} numeric columns (+2 segments)"
    )
    print("side       runs  wall_s(median)  compute_s  peak_rss_GB  drifted_columns")
    for name, runs in (("ours", ours), ("evidently", theirs)):
        if not runs:
            continue
        print(
            f"{name:<10} {len(runs):>4}  {statistics.median(r['wall_s'] for r in runs):>14.1f}  "
            f"{statistics.median(r['compute_s'] for r in runs):>9.1f}  "
            f"{max(r['peak_rss_gb'] for r in runs):>11.2f}  {sum(runs[0]['drifted'].values()):>15}"
        )
    if theirs:
        agree = sum(ours[0]["drifted"][c] == theirs[0]["drifted"][c] for c in columns)
        ratio = statistics.median(r["wall_s"] for r in theirs) / statistics.median(
            r["wall_s"] for r in ours
        )
        print(
            f"verdict agreement (PSI >= red per column): {agree}/{len(columns)}; Evidently/ours wall time: {ratio:.1f}x"
        )
        for c in columns:
            if ours[0]["drifted"][c] != theirs[0]["drifted"][c]:
                print(
                    f"  differs: {c}: ours PSI {ours[0]['psi'][c]:.3f}, Evidently PSI {theirs[0]['psi'][c]:.3f}"
                )


if __name__ == "__main__":
    main()
