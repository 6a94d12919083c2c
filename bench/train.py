"""Benchmark `clm train all --trials N`: wall time and peak memory, new code vs old.

Runs the real command in a child process (peak RSS from `os.wait4`) on a
workspace whose features are already built and applied (simulate + `clm
features build/apply` first, see bench/results-training.md). Each run logs to
a throw-away MLflow store and a fresh Optuna study, so runs are comparable and
the workspace's own registry is untouched. Side by side, interleaved run by run,
the baseline is the same command from the repository as it was at
`--baseline-ref` (default: the training code before issue 15), exported with
`git archive` to a scratch folder and run with the same interpreter and
environment: the old configuration, not a switch inside the new code.

    flock /tmp/clm-heavy.lock python -m bench.train --home /tmp/clm-20k --trials 5 --runs 3 --show-quality
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

REPO = Path(__file__).resolve().parents[1]
# Issue 15's quality bars: AUC gap to the simulator's oracle (churn; propensity mean).
GAP_BAR = 0.02
# main before issue 15's training changes (one thread of LightGBM per core, every row in
# the final fits, learning rates from 0.02, families one after the other).
DEFAULT_BASELINE_REF = "7baa47f"


def export_ref(ref: str, into: Path) -> Path:
    """The repository's tracked files at `ref`, in `into` (for the baseline's code)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_once(
    home: Path,
    trials: int,
    log: Path | None = None,
    show_quality: bool = False,
    code: Path = REPO,
) -> dict[str, float]:
    """One `clm train all --trials N` with the code in `code` (the checkout, or an export)."""
    scratch = Path(tempfile.mkdtemp(prefix="clm-bench-train-"))
    try:
        config = scratch / "mlflow.yaml"
        text = (
            (code / "mlflow.yaml")
            .read_text()
            .replace("optuna_storage: null", f'optuna_storage: "sqlite:///{scratch}/optuna.db"')
        )
        config.write_text(text)
        env = {
            **os.environ,
            "CLM_HOME": str(home),
            "CLM_CONFIG": str(config),
            "MLFLOW_TRACKING_URI": f"sqlite:///{scratch}/mlflow.db",
            # An exported tree's packages come before the editable install of this checkout.
            "PYTHONPATH": str(code),
        }
        command = [sys.executable, "-c", "from clm.cli import app; app()"]
        began = time.perf_counter()
        # With --log the child's output (each family's progress bars) goes to a file as it
        # comes, so a run stopped half way still shows which families finished.
        sink = open(log, "a") if log is not None else None  # noqa: SIM115
        try:
            child = subprocess.Popen(
                [*command, "train", "all", "--trials", str(trials)],
                cwd=code,
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
                f"{'PASS' if gap <= GAP_BAR else 'FAIL'} (<= {GAP_BAR}) |"
            )
        elif family == "propensity":
            gap = m["oracle_mean_auc_gap"]
            print(
                f"| propensity v{latest.version} | mean AUC | {m['test_mean_auc_oracle_rows']:.4f} | "
                f"oracle {m['oracle_mean_auc']:.4f} "
                f"| {gap:.4f} | {'PASS' if gap <= GAP_BAR else 'FAIL'} (<= {GAP_BAR}) |"
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
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the baseline (old code) runs"
    )
    parser.add_argument(
        "--baseline-ref",
        default=DEFAULT_BASELINE_REF,
        help=f"git revision whose code is the baseline (default {DEFAULT_BASELINE_REF})",
    )
    parser.add_argument(
        "--baseline-only", action="store_true", help="run only the baseline (old code)"
    )
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

    scratch = Path(tempfile.mkdtemp(prefix="clm-bench-baseline-"))
    try:
        configs: dict[str, Path] = {}
        if not args.no_baseline:
            configs[f"baseline ({args.baseline_ref})"] = export_ref(
                args.baseline_ref, scratch / "code"
            )
        if not args.baseline_only:
            configs["this checkout"] = REPO
        results: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
        for run in range(args.runs):
            for name, code in configs.items():  # interleaved: load on the machine hits both
                result = run_once(args.home, args.trials, args.log, args.show_quality, code)
                results[name].append(result)
                print(
                    f"run {run + 1}: {name}: {result['seconds']:.1f} s, "
                    f"peak {result['peak_rss_gb']:.2f} GB",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\n| `clm train all --trials {args.trials}` | runs | median wall (s) | median peak RSS (GB) |"
        "\n|---|---|---|---|"
    )
    medians = {}
    for name, rows in results.items():
        medians[name] = statistics.median(r["seconds"] for r in rows)
        rss = statistics.median(r["peak_rss_gb"] for r in rows)
        print(f"| {name} | {len(rows)} | {medians[name]:.1f} | {rss:.2f} |")
    if len(medians) == 2:
        old, new = medians.values()
        print(f"\nspeed-up (baseline wall / this checkout's): {old / new:.2f}x")


if __name__ == "__main__":
    main()
