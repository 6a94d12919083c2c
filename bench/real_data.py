"""Churn on a bank's own data: our model vs recency vs BG/NBD vs the oracle, side by side.

Issue 11's goals, on the very same test rows of each run:
- transaction-only data (the simulated bank stripped to `customer_id`, `timestamp`,
  `amount`): our churn AUC >= BG/NBD + 0.02 and >= days-since-last-transaction + 0.02;
- `retail_purchases` (a Pareto/NBD log, BG/NBD nearly right): within 0.01 of the oracle
  (the Bayes-optimal forecast from each customer's history);
- the full simulated bank: churn gap to its oracle <= 0.02 (nothing got worse).

Each dataset is simulated (one seed per run), its features built and applied, and churn
trained with `--trials N` into a throw-away workspace; the figures are the MLflow run's
test metrics. Heavy: run it under the shared lock.

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.real_data --customers 20000 --runs 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DATASETS = ("bank_3_columns", "retail_purchases", "bank_full")
GOALS = {
    "bank_3_columns": "ours >= BG/NBD + 0.02 and >= recency + 0.02",
    "retail_purchases": "ours within 0.01 of the oracle",
    "bank_full": "oracle - ours <= 0.02",
}


def _strip_to_three_columns(source: Path, target: Path) -> None:
    """The bank's raw transactions with only the mandatory columns, nothing else."""
    import duckdb

    target.mkdir(parents=True, exist_ok=True)
    pattern = (source / "transactions" / "**" / "*.parquet").as_posix()
    duckdb.connect().execute(
        f"COPY (SELECT customer_id, timestamp, amount FROM read_parquet('{pattern}', "
        f"hive_partitioning=false)) TO '{(target / 'transactions.parquet').as_posix()}' "
        "(FORMAT parquet)"
    )


def run_once(dataset: str, customers: int, months: int, seed: int, trials: int) -> dict[str, Any]:
    from clm.settings import Settings
    from features.pipeline import run_build
    from features.simulator import run_simulation
    from features.store import run_apply
    from training.pipeline import run_train

    scratch = Path(tempfile.mkdtemp(prefix=f"clm-bench-real-{dataset}-"))
    try:
        settings = Settings.load(home=scratch / "ws", env={})
        began = time.perf_counter()
        if dataset == "retail_purchases":
            run_simulation(
                settings,
                customers=customers,
                months=months,
                seed=seed,
                scenario="retail_purchases",
                progress=False,
            )
        else:
            source = (
                Settings.load(home=scratch / "bank", env={}) if dataset != "bank_full" else settings
            )
            run_simulation(source, customers=customers, months=months, seed=seed, progress=False)
            if dataset == "bank_3_columns":
                _strip_to_three_columns(source.raw_dir, settings.raw_dir)
        run_build(settings, progress=False)
        run_apply(settings)
        report = run_train(settings, model="churn", trials=trials, progress=False)
        churn = report.results["churn"]
        return {
            "ours": churn.test["auc"],
            "recency": churn.baselines.get("recency_auc"),
            "bgnbd": churn.baselines.get("bgnbd_auc"),
            "oracle": churn.oracle.get("oracle_auc"),
            "ours_on_oracle_rows": churn.oracle.get("test_auc_oracle_rows"),
            "champion": churn.champion,
            "seconds": time.perf_counter() - began,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _median(values: list[Any]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--bank-months", type=int, default=18)
    parser.add_argument("--retail-months", type=int, default=12)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="seeds 1..runs, one run each")
    parser.add_argument("--only", choices=DATASETS, action="append")
    args = parser.parse_args()
    rows = []
    for dataset in args.only or DATASETS:
        months = args.retail_months if dataset == "retail_purchases" else args.bank_months
        runs = [
            run_once(dataset, args.customers, months, seed, args.trials)
            for seed in range(1, args.runs + 1)
        ]
        for seed, r in enumerate(runs, 1):
            print(
                f"{dataset} seed {seed}: ours {_fmt(r['ours'])} recency {_fmt(r['recency'])} "
                f"BG/NBD {_fmt(r['bgnbd'])} oracle {_fmt(r['oracle'])} "
                f"(ours on oracle rows {_fmt(r['ours_on_oracle_rows'])}), "
                f"champion {r['champion']}, {r['seconds']:.0f} s",
                flush=True,
            )
        med = {k: _median([r[k] for r in runs]) for k in runs[0] if k != "champion"}
        ours = med["ours_on_oracle_rows"] if med["oracle"] is not None else med["ours"]
        rows.append(
            f"| {dataset} | {_fmt(med['ours'])} | {_fmt(med['recency'])} | {_fmt(med['bgnbd'])} "
            f"| {_fmt(med['oracle'])} | "
            f"{_fmt(None if med['recency'] is None else med['ours'] - med['recency'])} | "
            f"{_fmt(None if med['bgnbd'] is None else med['ours'] - med['bgnbd'])} | "
            f"{_fmt(None if med['oracle'] is None or ours is None else med['oracle'] - ours)} | "
            f"{GOALS[dataset]} |"
        )
    print()
    print(
        f"Churn AUC on the test rows, medians of {args.runs} run(s) "
        f"({args.customers:,} customers, --trials {args.trials})"
    )
    print(
        "| data | ours | recency | BG/NBD | oracle | ours - recency | ours - BG/NBD "
        "| oracle - ours | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
