"""What a training run logs besides its metrics: plots, git commit and the simulator's oracle.

The plot functions log to the active run (inside `clm.mlflow_access.fluent_tracking`)
with matplotlib's Agg backend (no display). The oracle AUC scores the same test rows
with the simulator's latent truth (`raw/truth`), for evaluation only: no feature
ever reads it.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import numpy as np

from clm import metrics
from clm.settings import REPO_ROOT

if TYPE_CHECKING:
    import pandas as pd

    from clm.settings import Settings


def git_commit() -> dict[str, str]:
    """The commit (and whether the tree had local changes) the code came from."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    if not commit:
        return {}
    return {"mlflow.source.git.commit": commit, "clm.git_dirty": str(bool(dirty)).lower()}


def simulated_truth(settings: Settings) -> pd.DataFrame | None:
    """The simulator's truth table keyed by snapshot_ts, or None for ingested data."""
    import pandas as pd

    meta_path = settings.raw_dir / "meta.json"
    truth_dir = settings.raw_dir / "truth"
    if not meta_path.is_file() or not truth_dir.is_dir():
        return None
    if json.loads(meta_path.read_text()).get("source") != "simulator":
        return None
    truth = pd.read_parquet(truth_dir)
    if "month" in truth.columns:
        truth = truth.drop(columns=["month"])
    month_end = pd.to_datetime(truth["month_end"])
    # Snapshot of a month end = first instant of the next day (docs/contracts.md).
    truth["snapshot_ts"] = (month_end + pd.Timedelta(days=1)).dt.tz_localize("UTC")
    truth["customer_id"] = truth["customer_id"].astype(str)
    return truth


def oracle_auc(
    truth: pd.DataFrame | None, rows: pd.DataFrame, label: str, truth_column: str, score: np.ndarray
) -> dict[str, float]:
    """AUC of the latent truth and of the model's `score` on the same rows (those truth covers).

    Empty when the data is not simulated or truth covers too few rows for a fair comparison.
    """
    if truth is None or truth_column not in truth.columns:
        return {}
    keyed = rows[["customer_id", "snapshot_ts", label]].reset_index(drop=True)
    keyed["__score"] = np.asarray(score, dtype=float)
    keyed = keyed.merge(
        truth[["customer_id", "snapshot_ts", truth_column]],
        on=["customer_id", "snapshot_ts"],
        how="left",
    )
    covered = keyed[keyed[truth_column].notna() & keyed[label].notna()]
    coverage = len(covered) / max(len(keyed), 1)
    if coverage < 0.5:
        return {}
    y = covered[label].astype(float).to_numpy()
    oracle = metrics.auc(y, covered[truth_column].astype(float).to_numpy())
    model = metrics.auc(y, covered["__score"].to_numpy())
    if np.isnan(oracle) or np.isnan(model):
        return {}
    return {"oracle_auc": oracle, "model_auc": model, "coverage": coverage}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_binary_plots(name: str, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """ROC, calibration and lift of one or more binary scores (test split), in one figure."""
    import mlflow

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), dpi=80)
    from sklearn.metrics import roc_curve

    for key, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        axes[0].plot(fpr, tpr, label=f"{key} AUC {metrics.auc(y, p):.3f}")
        table = metrics.calibration_by_decile(y, p)
        axes[1].plot(
            [r["mean_predicted"] for r in table],
            [r["observed_rate"] for r in table],
            "o-",
            label=key,
        )
        lifts = metrics.lift_by_decile(y, p)
        axes[2].plot(range(1, len(lifts) + 1), lifts, "o-", label=key)
    axes[0].plot([0, 1], [0, 1], "k--", linewidth=0.8)
    axes[0].set(title=f"ROC ({name})", xlabel="false positive rate", ylabel="true positive rate")
    axes[0].legend(loc="lower right", fontsize=7)
    top = max(
        max(ax_line.get_xdata().max(), ax_line.get_ydata().max()) for ax_line in axes[1].get_lines()
    )
    axes[1].plot([0, top], [0, top], "k--", linewidth=0.8)
    axes[1].set(
        title=f"calibration by score decile ({name})",
        xlabel="mean predicted",
        ylabel="observed rate",
    )
    axes[2].axhline(1.0, color="k", linestyle="--", linewidth=0.8)
    axes[2].set(
        title=f"lift by score decile ({name})", xlabel="decile (1 = highest scores)", ylabel="lift"
    )
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
    mlflow.log_figure(fig, f"plots/{name}_roc_calibration_lift.png")
    plt.close(fig)


def log_importance_plot(name: str, boosters: dict[str, Any], top: int = 25) -> None:
    """Gain importance (summed over a family's boosters, each normalised to 1)."""
    import mlflow

    plt = _pyplot()
    names = next(iter(boosters.values())).feature_name()
    gains = np.zeros(len(names))
    per_booster = {}
    for key, booster in boosters.items():
        g = booster.feature_importance(importance_type="gain").astype(float)
        per_booster[key] = dict(zip(names, g.tolist(), strict=True))
        gains += g / g.sum() if g.sum() > 0 else g
    order = np.argsort(gains)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.28 * len(order))), dpi=80)
    ax.barh([names[i] for i in order], gains[order])
    ax.set(title=f"feature importance, share of gain ({name})", xlabel="gain share")
    fig.subplots_adjust(left=0.4, right=0.97, bottom=0.08, top=0.95)
    mlflow.log_figure(fig, f"plots/{name}_feature_importance.png")
    plt.close(fig)
    mlflow.log_dict(per_booster, f"importance/{name}.json")


def log_stage_plot(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> None:
    """Confusion matrix (rows: actual stage 90 days later, columns: predicted)."""
    import mlflow

    plt = _pyplot()
    k = len(classes)
    matrix = np.zeros((k, k))
    for actual, predicted in zip(y, proba.argmax(axis=1), strict=True):
        matrix[actual, predicted] += 1
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=80)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set(title="stage 90 days ahead: recall matrix", xlabel="predicted", ylabel="actual")
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.2, top=0.93)
    mlflow.log_figure(fig, "plots/stage_confusion.png")
    plt.close(fig)


# --- names and words a data scientist reads in the MLflow UI ---


def month_end(snapshot: str) -> str:
    """A snapshot's date is the first day after its month end (docs/contracts.md)."""
    from datetime import date, timedelta

    return (date.fromisoformat(snapshot[:10]) - timedelta(days=1)).isoformat()


def data_window(lineage: dict[str, Any]) -> str:
    """First training month end .. last test month end, e.g. `2024-01-31..2025-03-31`."""
    splits = lineage.get("splits", {})
    first = splits.get("train", {}).get("first_snapshot")
    last = splits.get("test", {}).get("last_snapshot")
    if not first or not last:
        return "unknown window"
    return f"{month_end(first)}..{month_end(last)}"


def run_name(family: str, lineage: dict[str, Any], trials: int) -> str:
    """`<family> <data window> <trials>`, e.g. `churn 2024-01-31..2025-03-31 20 trials`."""
    return f"{family} {data_window(lineage)} {trials} trial{'s' if trials != 1 else ''}"


def _split_words(lineage: dict[str, Any]) -> str:
    parts = []
    for split in ("train", "validation", "test"):
        info = lineage.get("splits", {}).get(split, {})
        if not info:
            continue
        first, last = month_end(info["first_snapshot"]), month_end(info["last_snapshot"])
        span = first if first == last else f"{first} to {last}"
        parts.append(f"{split} {span} ({info.get('rows', 0):,} rows)")
    return "; ".join(parts)


def result_words(family: str, logged: dict[str, float]) -> str:
    """How the model did on the test split against the oracle and the trivial baselines."""

    def figure(key: str) -> str:
        value = logged.get(key)
        return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"

    if family == "stage":
        return (
            f"test macro F1 {figure('test_macro_f1')} vs {figure('test_baseline_macro_f1')} for "
            f"'stays in its stage'; log loss {figure('test_log_loss')}"
            + (
                f" vs {figure('test_baseline_log_loss')}"
                if "test_baseline_log_loss" in logged
                else ""
            )
        )
    key = "auc" if family == "churn" else "mean_auc"
    label = {"auc": "AUC", "mean_auc": "mean AUC"}[key]
    words = f"test {label} {figure('test_' + key)} (a constant score: 0.500"
    # Trivial baselines scored on the same test rows (`test_baseline_<name>_auc`), if logged.
    for name in sorted(logged):
        if name.startswith("test_baseline_") and name.endswith("auc"):
            baseline = name.removeprefix("test_baseline_").removesuffix("_auc").strip("_")
            words += f", {baseline.replace('_', ' ') or 'baseline'}: {figure(name)}"
    words += ")"
    if f"oracle_{key}" in logged:
        words += (
            f"; the simulator's oracle scores {figure('oracle_' + key)} on the same rows "
            f"(the model {figure('test_' + key + '_oracle_rows')}, gap "
            f"{figure('oracle_' + key + '_gap')})"
        )
    return words


def run_description(
    family: str,
    feature_service: str,
    n_features: int,
    lineage: dict[str, Any],
    *,
    trials: int,
    tuned: bool,
    logged: dict[str, float],
) -> str:
    """The run's description (MLflow shows the `mlflow.note.content` tag as such)."""
    return (
        f"**{family}** on Feast feature service `{feature_service}` ({n_features} features).\n\n"
        f"Data: {_split_words(lineage)}.\n\n"
        f"Tuning: {trials} Optuna trial{'s' if trials != 1 else ''} (child runs), "
        f"{'tuned parameters kept' if tuned else 'default parameters kept'}.\n\n"
        f"Result: {result_words(family, logged)}."
    )


def version_description(
    family: str, feature_service: str, lineage: dict[str, Any], logged: dict[str, float]
) -> str:
    """The registered version's description: what it was trained on and how it did."""
    return (
        f"Trained on {feature_service}, {_split_words(lineage)}. "
        f"{result_words(family, logged)[0].upper()}{result_words(family, logged)[1:]}."
    )


def log_trials(
    settings: Settings,
    mlflow_client: Any,
    experiment_id: str,
    parent_run_id: str,
    *,
    family: str,
    study_name: str | None,
) -> int:
    """Each Optuna trial of the study as a child run of `parent_run_id`: its parameters, its
    score (`objective`, with the per-round values the pruner saw) and its state. Returns
    the number of child runs."""
    if not study_name:
        return 0
    import optuna
    from mlflow.entities import Metric, Param, RunStatus

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=settings.optuna_storage)
    except KeyError:  # no such study: tuning did not run
        return 0
    done = optuna.trial.TrialState.COMPLETE
    for trial in study.trials:
        start = trial.datetime_start or trial.datetime_complete
        end = trial.datetime_complete or start
        start_ms = int(start.timestamp() * 1000) if start else None
        run = mlflow_client.create_run(
            experiment_id,
            start_time=start_ms,
            run_name=f"{family} trial {trial.number}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                "clm.family": family,
                "optuna.study": study_name,
                "optuna.trial": str(trial.number),
                "optuna.state": trial.state.name.lower(),
            },
        )
        stamp = start_ms or 0
        metrics = [
            Metric("objective_by_round", float(v), stamp, int(step))
            for step, v in sorted(trial.intermediate_values.items())
        ]
        if trial.value is not None:
            metrics.append(Metric("objective", float(trial.value), stamp, 0))
        params = [Param(k, str(v)) for k, v in trial.params.items()]
        # MLflow takes at most 1,000 metrics per batch.
        for start_at in range(0, max(len(metrics), 1), 900):
            mlflow_client.log_batch(
                run.info.run_id,
                metrics=metrics[start_at : start_at + 900],
                params=params if start_at == 0 else [],
            )
        mlflow_client.set_terminated(
            run.info.run_id,
            RunStatus.to_string(RunStatus.FINISHED if trial.state == done else RunStatus.KILLED),
            end_time=int(end.timestamp() * 1000) if end else None,
        )
    return len(study.trials)
