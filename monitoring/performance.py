"""Performance on matured labels: did the scores rank and calibrate as at training?

A prediction is *matured* when it is at least `performance_min_age_days` old
and its outcome is known: the prediction is matched to the feature snapshot it
was scored on (the latest month end before it) and to that snapshot's label
(churn or product adoption within 90 days; the stage 90 days later). Labels
still open (horizon past the data) are left out.

Metrics, per month of prediction and over the whole period:
- AUC: chance that a random customer who churned was scored above one who did
  not (0.5 = coin toss, 1 = perfect);
- Gini = 2 * AUC - 1 (the banking convention for the same ranking power);
- KS: largest gap between the score distributions of events and non-events;
- calibration by decile: mean predicted vs observed rate in each tenth of scores.
They are compared with the development values the version recorded in MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clm import metrics
from clm.domain import PROPENSITY_PRODUCTS, STAGES
from monitoring.psi import band

if TYPE_CHECKING:
    from clm.settings import Settings


def binary_performance(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    value = metrics.auc(y, p)
    return {
        "rows": int(len(y)),
        "event_rate": float(np.mean(y)) if len(y) else float("nan"),
        "mean_predicted": float(np.mean(p)) if len(p) else float("nan"),
        "auc": value,
        "gini": 2 * value - 1,
        "ks": metrics.ks(y, p),
    }


def targets(family: str) -> list[tuple[str, str, str]]:
    """(name, label column, score column) pairs judged for a family."""
    if family == "churn":
        return [("churn", "churn_90d", "churn_probability")]
    if family == "propensity":
        return [(p, f"adopt_{p}_90d", f"propensity_{p}") for p in PROPENSITY_PRODUCTS]
    # Stage: each next stage one-vs-rest (is the customer in stage s 90 days later?).
    return [(s, f"stage_next_is_{s}", f"stage_prob_{s}") for s in STAGES]


def evaluate_matured(
    matured: pd.DataFrame,
    family: str,
    *,
    development: dict[str, float] | None = None,
    amber_drop: float = 0.03,
    red_drop: float = 0.07,
    min_rows: int = 200,
) -> dict[str, Any]:
    """Metrics per target, per month and overall, with bands against development AUCs.

    `matured` has `month` (YYYY-MM), the label columns and the score columns.
    A target's band is the AUC drop below its development AUC (grey without one,
    or with fewer than `min_rows` matured rows or no events).
    """
    development = development or {}
    rows = []
    for name, label, score in targets(family):
        if label not in matured.columns or score not in matured.columns:
            continue
        part = matured[[label, score, "month"]].dropna(subset=[label, score])
        if part.empty:
            continue
        y = part[label].astype(float).to_numpy()
        p = part[score].astype(float).to_numpy()
        overall = binary_performance(y, p)
        months = []
        for month, group in part.groupby("month", sort=True):
            m = binary_performance(
                group[label].astype(float).to_numpy(), group[score].astype(float).to_numpy()
            )
            months.append({"month": str(month), **m})
        dev = development.get(name)
        drop = (
            dev - overall["auc"]
            if dev is not None and np.isfinite(overall["auc"])
            else float("nan")
        )
        judged = overall["rows"] >= min_rows and np.isfinite(drop)
        rows.append(
            {
                "target": name,
                **overall,
                "development_auc": dev,
                "auc_drop": drop,
                "band": band(drop, amber_drop, red_drop) if judged else "grey",
                "by_month": months,
                "calibration": metrics.calibration_by_decile(y, p),
            }
        )
    return {"targets": rows}


def match_to_snapshots(predictions: pd.DataFrame, snapshots: Sequence[pd.Timestamp]) -> pd.Series:
    """The feature snapshot each prediction was scored on: the latest snapshot_ts <= ts."""
    ordered = np.sort(
        pd.DatetimeIndex(pd.to_datetime(list(snapshots), utc=True))
        .tz_localize(None)
        .to_numpy("datetime64[ns]")
    )
    ts = (
        pd.to_datetime(predictions["ts"], utc=True)
        .dt.tz_localize(None)
        .to_numpy(dtype="datetime64[ns]")
    )
    index = np.searchsorted(ordered, ts, side="right") - 1
    values = np.where(index >= 0, ordered[np.clip(index, 0, None)], np.datetime64("NaT"))
    return pd.Series(
        pd.to_datetime(values).tz_localize("UTC"), index=predictions.index, name="snapshot_ts"
    )


def join_outcomes(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined with the labels of the snapshot they were scored on."""
    labels = with_stage_targets(labels)
    labels["snapshot_ts"] = pd.to_datetime(labels["snapshot_ts"], utc=True)
    out = predictions.copy()
    out["snapshot_ts"] = match_to_snapshots(out, labels["snapshot_ts"].unique())
    out = out.merge(labels, on=["customer_id", "snapshot_ts"], how="inner", suffixes=("", "_label"))
    out["month"] = pd.to_datetime(out["ts"], utc=True).dt.strftime("%Y-%m")
    return out


def with_stage_targets(labels: pd.DataFrame) -> pd.DataFrame:
    """Add `stage_next_is_<stage>` (1/0, NaN when unknown) from a `stage_next` column."""
    labels = labels.copy()
    if "stage_next" in labels.columns:
        stage_next = labels["stage_next"]
        if pd.api.types.is_numeric_dtype(stage_next):
            stage_next = stage_next.map(
                lambda v: STAGES[int(v)] if pd.notna(v) and 0 <= v < len(STAGES) else None
            )
        for s in STAGES:
            labels[f"stage_next_is_{s}"] = np.where(
                stage_next.isna(), np.nan, (stage_next == s).astype(float)
            )
    return labels


def sample_aucs(sample: pd.DataFrame, family: str) -> dict[str, float]:
    """AUC per target on a frame holding scores and labels (the validation sample)."""
    frame = with_stage_targets(sample)
    out = {}
    for name, label, score in targets(family):
        if label in frame.columns and score in frame.columns:
            part = frame[[label, score]].dropna()
            value = metrics.auc(
                part[label].astype(float).to_numpy(), part[score].astype(float).to_numpy()
            )
            if np.isfinite(value):
                out[name] = value
    return out


def development_aucs(
    settings: Settings, family: str, run_id: str | None, client: Any
) -> dict[str, float]:
    """AUCs the version recorded at training (its MLflow run), per target.

    The held-out test value is preferred, then the validation one.
    """
    if not run_id:
        return {}
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception:  # run deleted or another tracking server
        return {}
    out: dict[str, float] = {}
    for name, _, _ in targets(family):
        # training logs test_auc (churn) and test_<product>_auc / test_<stage>_auc per target.
        key = "auc" if family == "churn" else f"{name}_auc"
        for split in ("test", "validation"):
            value = metrics.get(f"{split}_{key}")
            if value is not None and np.isfinite(value):
                out[name] = float(value)
                break
    return out


def run_performance(settings: Settings, *, model: str | None, progress: bool = True) -> int:
    """`clm monitor performance`: matured predictions vs outcomes; exit 1 when red."""
    from clm import atomic, mlflow_access
    from clm.progress import step_progress
    from monitoring import inputs
    from monitoring.drift import _print_verdicts
    from monitoring.runlog import log_to_mlflow, report_folder

    wanted = inputs.families(model)
    client = mlflow_access.client(settings)
    summaries = performance_summaries(settings, wanted, client=client, progress=progress)
    folder = report_folder(settings, "performance")
    verdicts = {}
    with step_progress("logging", len(summaries), progress, transient=True) as advance:
        for family, summary in summaries.items():
            path = folder / f"{family}-performance.json"
            atomic.write_json(path, summary)
            metrics: dict[str, float | None] = {}
            for t in summary["targets"]:
                metrics[f"auc.{t['target']}"] = t["auc"]
                metrics[f"ks.{t['target']}"] = t["ks"]
            log_to_mlflow(
                settings,
                run_name=f"performance-{family}",
                tags={
                    "clm.monitor": "performance",
                    "clm.family": family,
                    "clm.verdict": summary["verdict"],
                },
                metrics=metrics,
                artifacts=[path],
            )
            verdicts[family] = (summary["verdict"], path, summary["red_reasons"])
            advance()
    _print_verdicts(verdicts)
    return 1 if any(v[0] == "red" for v in verdicts.values()) else 0


def performance_summaries(
    settings: Settings,
    families: Sequence[str],
    *,
    client: Any,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per family: matured-label metrics of the predictions logged in [start, end)."""
    from clm.progress import step_progress
    from features import store
    from monitoring import inputs
    from monitoring.quality import worst

    now = pd.Timestamp.now(tz="UTC")
    cutoff = now - pd.Timedelta(days=settings.monitoring.performance_min_age_days)
    if end is None or end > cutoff:
        end = cutoff
    columns = ["ts", "customer_id", *[f"version_{f}" for f in families], "churn_probability"]
    columns += [f"propensity_{p}" for p in PROPENSITY_PRODUCTS] + [
        f"stage_prob_{s}" for s in STAGES
    ]
    try:
        log, _ = inputs.read_prediction_log(settings, columns=columns, before=end)
    except inputs.MonitoringInputError:
        log = pd.DataFrame(columns=columns)
    if start is not None and not log.empty:
        log = log[log["ts"] >= start]
    labels = store.load_labels(settings)
    matured = join_outcomes(log, labels) if not log.empty else pd.DataFrame()
    out = {}
    with step_progress("performance", len(families), progress, transient=True) as advance:
        for family in families:
            champion_run = None
            try:
                name = settings.models.family(family).registered_name
                champion_run = client.get_model_version_by_alias(
                    name, settings.aliases.champion
                ).run_id
            except Exception:  # no champion: no development values to compare with
                pass
            development = development_aucs(settings, family, champion_run, client)
            if champion_run and len(development) < len(targets(family)):
                # Targets without a logged test AUC (stage classes): measure it on the
                # champion's validation sample, which carries scores and labels.
                try:
                    reference = inputs.load_champion(settings, family, client).reference
                    for target, value in sample_aucs(reference, family).items():
                        development.setdefault(target, value)
                except inputs.MonitoringInputError:
                    pass
            summary = evaluate_matured(
                matured if not matured.empty else pd.DataFrame(columns=["month"]),
                family,
                development=development,
                amber_drop=settings.monitoring.auc_drop_amber,
                red_drop=settings.monitoring.auc_drop_red,
                min_rows=settings.monitoring.min_segment_rows,
            )
            targets_ = summary["targets"]
            labels_of_family = [c for _, c, _ in targets(family) if c in matured.columns]
            known = (
                matured[matured[labels_of_family].notna().any(axis=1)]
                if labels_of_family
                else matured.iloc[:0]
            )
            summary.update(
                {
                    "model": family,
                    "matured_before": str(end.date()),
                    "min_age_days": settings.monitoring.performance_min_age_days,
                    "matured_predictions": int(len(known)),
                    "versions": inputs.served_versions(known, family) if not known.empty else [],
                    "verdict": worst([t["band"] for t in targets_]),
                    "red_reasons": [
                        f"AUC of {t['target']} {t['auc']:.3f} is {t['auc_drop']:.3f} below development "
                        f"{t['development_auc']:.3f}"
                        for t in targets_
                        if t["band"] == "red"
                    ],
                }
            )
            out[family] = _json_safe(summary)
            advance()
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
