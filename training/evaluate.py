"""Score a model on rows and summarise it the way each family is judged.

Used for the run's test metrics and, at promotion time, to score challenger and
champion on the same out-of-time holdout, overall and per segment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clm import metrics
from clm.domain import PROPENSITY_PRODUCTS, STAGES
from training.data import stage_index

if TYPE_CHECKING:
    import pandas as pd


def family_metrics(family: str, scores: pd.DataFrame, rows: pd.DataFrame) -> dict[str, float]:
    """Every metric of a family on `rows`, with `scores` from `BoosterModel.score` (same index)."""
    if family == "churn":
        return metrics.binary_metrics(
            rows["churn_90d"].astype(float).to_numpy(), scores["churn_probability"].to_numpy()
        )
    if family == "propensity":
        out: dict[str, float] = {}
        aucs = []
        for product in PROPENSITY_PRODUCTS:
            column = f"propensity_{product}"
            label = f"adopt_{product}_90d"
            if column not in scores.columns:
                continue
            known = rows[label].notna().to_numpy()
            y = rows.loc[known, label].astype(float).to_numpy()
            if len(y) == 0 or y.min() == y.max():
                continue
            for name, value in metrics.binary_metrics(
                y, scores.loc[known, column].to_numpy()
            ).items():
                out[f"{product}_{name}"] = value
            aucs.append(out[f"{product}_auc"])
        out["mean_auc"] = float(np.mean(aucs)) if aucs else float("nan")
        return out
    y = stage_index(rows["stage_next"])
    known = y >= 0
    proba = scores[[f"stage_prob_{s}" for s in STAGES]].to_numpy()[known]
    return metrics.multiclass_metrics(y[known], proba, STAGES)


def primary_value(family: str, metric: str, scores: pd.DataFrame, rows: pd.DataFrame) -> float:
    """The promotion metric (e.g. `auc`, `mean_auc`, `macro_f1`) on `rows`; NaN if undefined."""
    if family == "churn":
        y = rows["churn_90d"].astype(float).to_numpy()
        if len(y) == 0 or y.min() == y.max():
            return float("nan")
    values = family_metrics(family, scores, rows)
    return float(values.get(metric, float("nan")))


def lower_is_better(metric: str) -> bool:
    return (
        metric.endswith("log_loss")
        or metric.endswith("brier")
        or metric.endswith("calibration_ece")
    )


def stay_rate(current: np.ndarray, following: np.ndarray) -> float:
    """Share of customers whose stage 90 days later equals the current one (training rows)."""
    current = np.asarray(current, dtype=int)
    following = np.asarray(following, dtype=int)
    return float((current == following).mean())


def stay_baseline_proba(current: np.ndarray, n_classes: int, stay: float) -> np.ndarray:
    """The "stays in its current stage" baseline as probabilities.

    It predicts the current stage with the training stay rate and spreads the rest
    evenly: a hard 0/1 prediction would make its log loss infinite and the
    comparison meaningless.
    """
    current = np.asarray(current, dtype=int)
    stay = float(np.clip(stay, 1e-3, 1 - 1e-3))
    proba = np.full((len(current), n_classes), (1 - stay) / (n_classes - 1))
    valid = (current >= 0) & (current < n_classes)
    proba[np.flatnonzero(valid), current[valid]] = stay
    # Unknown current stage: no information, uniform.
    proba[~valid] = 1.0 / n_classes
    return proba


def stage_baseline(rows: pd.DataFrame, stay: float) -> dict[str, float]:
    """Metrics of "stays in its current stage" on `rows` (stay probability from training)."""
    y = stage_index(rows["stage_next"])
    current = stage_index(rows["stage"])
    known = y >= 0
    proba = stay_baseline_proba(current[known], len(STAGES), stay)
    return metrics.multiclass_metrics(y[known], proba, STAGES)
