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
from pathlib import Path
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


def run_performance(
    settings: Settings,
    *,
    model: str | None,
    scores: Sequence[Path] = (),
    as_of: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """`clm monitor performance`: matured predictions vs outcomes; exit 1 when red.

    With `scores` (batch-scored files) or `as_of` (month ends scored now), a back-test:
    those predictions, dated by their feature snapshot, instead of the log."""
    from clm import atomic, mlflow_access
    from clm.progress import step_progress
    from monitoring import inputs
    from monitoring.drift import print_verdicts
    from monitoring.runlog import log_to_mlflow, report_folder

    wanted = inputs.families(model)
    client = mlflow_access.client(settings)
    predictions = None
    if scores or as_of:
        from monitoring.backtest import backtest_frame

        predictions, _ = backtest_frame(settings, scores=scores, as_of=as_of, progress=progress)
    summaries = performance_summaries(
        settings, wanted, client=client, predictions=predictions, progress=progress
    )
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
            verdicts[family] = (summary["verdict"], [path], summary["reasons"])
            advance()
    print_verdicts(verdicts)
    return 1 if any(v[0] == "red" for v in verdicts.values()) else 0


def performance_summaries(
    settings: Settings,
    families: Sequence[str],
    *,
    client: Any,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    predictions: pd.DataFrame | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per family: matured-label metrics of the predictions logged in [start, end), and
    for every month (matured or not) the AUC estimated from the scores alone (CBPE),
    reconciled with the realised AUC where outcomes have matured.

    `predictions` (a back-test, monitoring.backtest) replaces the log: rows dated by
    their snapshot, judged whenever their label is known, whatever the wall clock says.
    """
    from clm.progress import step_progress
    from features import store
    from monitoring import inputs
    from monitoring.quality import worst

    now = pd.Timestamp.now(tz="UTC")
    cutoff = now - pd.Timedelta(days=settings.monitoring.performance_min_age_days)
    columns = ["ts", "customer_id", *[f"version_{f}" for f in families], "churn_probability"]
    columns += [f"propensity_{p}" for p in PROPENSITY_PRODUCTS] + [
        f"stage_prob_{s}" for s in STAGES
    ]
    if predictions is not None:
        log = predictions[[c for c in columns if c in predictions.columns]]
        matured_before = None
    else:
        try:
            log, _ = inputs.read_prediction_log(settings, columns=columns, before=end or now)
        except inputs.MonitoringInputError:
            log = pd.DataFrame(columns=columns)
        matured_before = min(end, cutoff) if end is not None else cutoff
    if start is not None and not log.empty:
        log = log[log["ts"] >= start]
    if end is not None and not log.empty:
        log = log[log["ts"] < end]
    labels = store.load_labels(settings)
    joined = join_outcomes(log, labels) if not log.empty else pd.DataFrame()
    matured = (
        joined[joined["ts"] < matured_before]
        if matured_before is not None and not joined.empty
        else joined
    )
    out = {}
    with step_progress("performance", len(families), progress, transient=True) as advance:
        for family in families:
            champion_run = None
            reference = None
            try:
                name = settings.models.family(family).registered_name
                champion_run = client.get_model_version_by_alias(
                    name, settings.aliases.champion
                ).run_id
                reference = inputs.load_champion(settings, family, client).reference
            except Exception:  # no champion: no development values or reference to compare with
                pass
            development = development_aucs(settings, family, champion_run, client)
            if reference is not None and len(development) < len(targets(family)):
                # Targets without a logged test AUC (stage classes): measure it on the
                # champion's validation sample, which carries scores and labels.
                for target, value in sample_aucs(reference, family).items():
                    development.setdefault(target, value)
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
            summary["estimates"] = estimated_performance(
                log, family, reference, summary, settings.monitoring.auc_drop_amber
            )
            summary.update(
                {
                    "model": family,
                    "backtest": predictions is not None,
                    "matured_before": str(matured_before.date())
                    if matured_before is not None
                    else "labels known (back-test)",
                    "min_age_days": settings.monitoring.performance_min_age_days,
                    "matured_predictions": int(len(known)),
                    "versions": inputs.served_versions(known, family) if not known.empty else [],
                    # A month whose estimate missed its realised AUC is a warning in itself.
                    "verdict": worst(
                        [t["band"] for t in targets_]
                        + [
                            "amber"
                            for e in summary["estimates"]
                            for m in e["by_month"]
                            if m.get("estimate_wrong")
                        ]
                    ),
                }
            )
            summary["reasons"] = performance_reasons(summary, settings.monitoring.min_segment_rows)
            summary["red_reasons"] = [r[5:] for r in summary["reasons"] if r.startswith("RED: ")]
            out[family] = _json_safe(summary)
            advance()
    return out


def estimated_performance(
    log: pd.DataFrame,
    family: str,
    reference: pd.DataFrame | None,
    summary: dict[str, Any],
    tolerance: float,
) -> list[dict[str, Any]]:
    """Per target: each month's AUC estimated from the scores (CBPE), with the realised
    AUC beside it once matured and `estimate_wrong` when they differ by more than `tolerance`."""
    from monitoring.estimate import Calibrator, estimate, reconcile

    if log.empty:
        return []
    months = pd.to_datetime(log["ts"], utc=True).dt.strftime("%Y-%m")
    reference = with_stage_targets(reference) if reference is not None else None
    realised_by_target = {t["target"]: t["by_month"] for t in summary["targets"]}
    out = []
    for name, label, score in targets(family):
        if score not in log.columns:
            continue
        calibrator = Calibrator()
        if reference is not None and label in reference.columns and score in reference.columns:
            calibrator = Calibrator(
                reference[score].to_numpy(dtype=float, na_value=np.nan),
                reference[label].to_numpy(dtype=float, na_value=np.nan),
            )
        estimated = {
            str(month): estimate(group.to_numpy(dtype=float, na_value=np.nan), calibrator)
            for month, group in log[score].groupby(months, sort=True)
        }
        realised = {m["month"]: m for m in realised_by_target.get(name, [])}
        out.append(
            {
                "target": name,
                "calibrated_on_reference": calibrator.fitted,
                "by_month": reconcile(estimated, realised, tolerance),
            }
        )
    return out


def performance_reasons(summary: dict[str, Any], min_rows: int) -> list[str]:
    """Why the performance verdict is what it is, one line per target that is not green."""
    matured = summary.get("matured_predictions", 0)
    if not summary["targets"]:
        latest = [
            f"{e['target']} {e['by_month'][-1]['estimated_auc']:.3f} in {e['by_month'][-1]['month']}"
            for e in summary.get("estimates", [])[:3]
            if e["by_month"] and np.isfinite(e["by_month"][-1]["estimated_auc"])
        ]
        return [
            f"GREY: no outcome has matured yet (n = {matured:,} predictions with a known outcome "
            f"made before {summary.get('matured_before')}; outcomes need "
            f"{summary.get('min_age_days')} days)"
            + (f"; AUC estimated from the scores: {', '.join(latest)}" if latest else "")
        ]
    lines: list[tuple[int, str]] = []
    severity = {"red": 0, "amber": 1, "grey": 2, "green": 3}
    for t in summary["targets"]:
        if t["band"] in ("amber", "red"):
            lines.append(
                (
                    severity[t["band"]],
                    f"{t['band'].upper()}: AUC of {t['target']} {t['auc']:.3f} is "
                    f"{t['auc_drop']:.3f} below development {t['development_auc']:.3f} "
                    f"(n = {t['rows']:,})",
                )
            )
        elif t["band"] == "grey":
            why = (
                f"not enough data (n = {t['rows']:,}, at least {min_rows:,} needed)"
                if t["rows"] < min_rows
                else "no development AUC to compare with"
            )
            lines.append((2, f"GREY: {t['target']}: {why}"))
    if not any(b < 2 for b, _ in lines):
        green = [t for t in summary["targets"] if t["band"] == "green"]
        if green:
            worst_drop = max(green, key=lambda t: t["auc_drop"])
            lines.append(
                (
                    3,
                    f"GREEN: every judged AUC within {worst_drop['auc_drop']:.3f} of development "
                    f"(largest drop: {worst_drop['target']}, n = {worst_drop['rows']:,})"
                    if worst_drop["auc_drop"] > 0
                    else f"GREEN: every judged AUC at or above its development value "
                    f"(n = {worst_drop['rows']:,})",
                )
            )
    for entry in summary.get("estimates", []):
        for m in entry["by_month"]:
            if m.get("estimate_wrong"):
                lines.append(
                    (
                        1,
                        f"AMBER: the AUC estimated before outcomes for {entry['target']} in {m['month']} "
                        f"({m['estimated_auc']:.3f}) missed the realised {m['realised_auc']:.3f}: "
                        "calibration no longer holds (concept drift?), do not trust estimates alone",
                    )
                )
    return [text for _, text in sorted(lines, key=lambda item: item[0])]


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
