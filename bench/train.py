"""Benchmark `clm train all --trials N`: wall time and peak memory.

Runs the real command in a child process (peak RSS from `os.wait4`) on a
workspace whose features are already built and applied (simulate + `clm
features build/apply` first, see bench/results-training.md). Each run logs to
a throw-away MLflow store and a fresh Optuna study, so runs are comparable and
the workspace's own registry is untouched. Side by side, the same command with
`--trials 0` (default parameters only) is the baseline: the ratio is the cost
of tuning.

    flock /tmp/clm-heavy.lock python -m bench.train --home /tmp/clm-20k --trials 20 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(
    home: Path, trials: int, log: Path | None = None, show_quality: bool = False
) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="clm-bench-train-"))
    try:
        config = scratch / "mlflow.yaml"
        repo_config = Path(__file__).resolve().parents[1] / "mlflow.yaml"
        text = repo_config.read_text().replace(
            "optuna_storage: null", f'optuna_storage: "sqlite:///{scratch}/optuna.db"'
        )
        config.write_text(text)
        env = {
            **os.environ,
            "CLM_HOME": str(home),
            "CLM_CONFIG": str(config),
            "MLFLOW_TRACKING_URI": f"sqlite:///{scratch}/mlflow.db",
        }
        clm = Path(sys.executable).with_name("clm")
        began = time.perf_counter()
        # With --log the child's output (each family's progress bars) goes to a file as it
        # comes, so a run stopped half way still shows which families finished.
        sink = open(log, "a") if log is not None else None  # noqa: SIM115
        try:
            child = subprocess.Popen(
                [str(clm), "train", "all", "--trials", str(trials)],
                env=env,
                stdout=sink if sink is not None else subprocess.DEVNULL,
                stderr=sink if sink is not None else subprocess.PIPE,
                text=True,
            )
            err = child.stderr.read() if child.stderr is not None else ""
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            if sink is not None:
                sink.close()
        seconds = time.perf_counter() - began
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"clm train failed:\n{err[-3000:] or f'see {log}'}")
        if show_quality:  # this run's versions live in the throw-away store
            quality(home, env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
        return {"seconds": seconds, "peak_rss_gb": usage.ru_maxrss / 1024**2}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def quality(home: Path, env: dict[str, str] | None = None) -> None:
    """The issue's quality bars, from the latest run of each family in the workspace's MLflow
    (or the tracking store `env` names)."""
    from clm.mlflow_access import client
    from clm.settings import FAMILIES, Settings

    settings = Settings.load(home=home, env=env or {})
    mlflow_client = client(settings)
    print("| family | test metric | model | reference | gap | bar |\n|---|---|---|---|---|---|")
    for family in FAMILIES:
        name = settings.models.family(family).registered_name
        latest = max(
            mlflow_client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)
        )
        m = mlflow_client.get_run(latest.run_id).data.metrics
        if family == "churn":
            gap = m["oracle_auc_gap"]
            print(
                f"| churn v{latest.version} | AUC (rows with truth) | {m['test_auc_oracle_rows']:.4f} | "
                f"oracle {m['oracle_auc']:.4f} | {gap:.4f} | "
                f"{'PASS' if gap <= 0.05 else 'FAIL'} (<= 0.05) |"
            )
        elif family == "propensity":
            gap = m["oracle_mean_auc_gap"]
            print(
                f"| propensity v{latest.version} | mean AUC | {m['test_mean_auc_oracle_rows']:.4f} | "
                f"oracle {m['oracle_mean_auc']:.4f} "
                f"| {gap:.4f} | {'PASS' if gap <= 0.05 else 'FAIL'} (<= 0.05) |"
            )
            for key in sorted(
                k
                for k in m
                if k.startswith("test_")
                and k.endswith("_auc_oracle_rows")
                and k != "test_mean_auc_oracle_rows"
            ):
                product = key.removeprefix("test_").removesuffix("_auc_oracle_rows")
                oracle = m.get(f"oracle_{product}_auc", float("nan"))
                print(
                    f"| propensity: {product} | AUC | {m[key]:.4f} | oracle {oracle:.4f} | {oracle - m[key]:.4f} | |"
                )
        else:
            f1, base_f1 = m["test_macro_f1"], m["test_baseline_macro_f1"]
            ll, base_ll = m["test_log_loss"], m["test_baseline_log_loss"]
            print(
                f"| stage v{latest.version} | macro-F1 | {f1:.4f} | stays-in-stage {base_f1:.4f} | {f1 - base_f1:+.4f} | "
                f"{'PASS' if f1 > base_f1 else 'FAIL'} |"
            )
            print(
                f"| stage v{latest.version} | log loss | {ll:.4f} | stays-in-stage {base_ll:.4f} | {ll - base_ll:+.4f} | "
                f"{'PASS' if ll < base_ll else 'FAIL'} |"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--home", type=Path, required=True, help="workspace with features built and applied"
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per configuration (median reported)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the --trials 0 baseline")
    parser.add_argument(
        "--log",
        type=Path,
        default=None,
        help="append the child's output (progress, result) to this file",
    )
    parser.add_argument(
        "--quality",
        action="store_true",
        help="only print the quality bars of the workspace's latest versions",
    )
    parser.add_argument(
        "--show-quality",
        action="store_true",
        help="after each run, print its quality bars (read from the run's throw-away store)",
    )
    args = parser.parse_args(argv)
    if args.quality:
        quality(args.home)
        return

    configs = [args.trials] if args.no_baseline else [0, args.trials]
    results: dict[int, list[dict[str, float]]] = {t: [] for t in configs}
    for run in range(args.runs):
        for trials in configs:  # interleaved, so load on the machine hits both alike
            result = run_once(args.home, trials, args.log, args.show_quality)
            results[trials].append(result)
            print(
                f"run {run + 1}: --trials {trials}: {result['seconds']:.1f} s, peak {result['peak_rss_gb']:.2f} GB",
                flush=True,
            )
    print("\n| command | runs | median wall (s) | median peak RSS (GB) |\n|---|---|---|---|")
    medians = {}
    for trials, rows in results.items():
        medians[trials] = statistics.median(r["seconds"] for r in rows)
        rss = statistics.median(r["peak_rss_gb"] for r in rows)
        print(
            f"| clm train all --trials {trials} | {len(rows)} | {medians[trials]:.1f} | {rss:.2f} |"
        )
    if 0 in medians and args.trials in medians and args.trials != 0:
        print(f"\nratio tuned / defaults-only wall time: {medians[args.trials] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
