"""The trivial and classic baselines every version is measured against.

- Base rate: the training split's label rate as a constant probability (log loss).
- Recency: days since the last transaction as the churn score (one line of arithmetic).
- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): the classic
  "buy till you die" model of non-contractual customers, fitted here by maximum likelihood
  with scipy on each snapshot's whole-history summary (x = repeat transaction days,
  t_x = first to last transaction day, T = first transaction day to the snapshot, in days)
  and scored as P(no transaction in the next 90 days).
- Stage: "stays in its current stage" (training.evaluate.stage_baseline).

`baseline_gates` turns these into the gates a version must pass before it may become
`champion`, the first version included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clm import metrics
from clm.domain import PROPENSITY_PRODUCTS
from clm.families import spec

if TYPE_CHECKING:
    import pandas as pd

    from training.data import TrainingSet

HORIZON_DAYS = 90
# The whole-history features BG/NBD needs (features/catalog.py, group `history`).
BGNBD_FEATURES = ("history_frequency", "history_recency_days", "history_age_days")
RECENCY_FEATURE = "days_since_last_txn"


@dataclass(frozen=True)
class BGNBD:
    """BG/NBD parameters: purchase rates ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at T | x, t_x, T) (eq. 5 of the paper)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_ratio = (
                np.log(self.a)
                - np.log(np.maximum(self.b + x - 1, 1e-12))
                + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            )
            odds = np.where(x > 0, np.exp(np.minimum(log_ratio, 700.0)), 0.0)
        return 1.0 / (1.0 + odds)

    def p_no_purchase(
        self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float = HORIZON_DAYS
    ) -> np.ndarray:
        """P(no transaction in (T, T + horizon]): dead, or alive and no purchase.

        An alive customer cannot drop out before their next purchase (BG/NBD's dropout
        follows a purchase), so given alive the count is Poisson with the posterior
        Gamma(r + x, alpha + T) rate.
        """
        x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
        alive = self.p_alive(x, t_x, T)
        none_if_alive = np.exp(
            (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + horizon))
        )
        return 1.0 - alive + alive * none_if_alive


def bgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray
) -> float:
    """Total log-likelihood (eq. 6 of the paper) for (r, alpha, a, b) = params."""
    from scipy.special import gammaln

    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def fit_bgnbd(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None
) -> BGNBD:
    """Maximum-likelihood BG/NBD on (x, t_x, T) summaries (identical rows may be weighted)."""
    from scipy.optimize import minimize

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    if len(x) == 0 or not (T > 0).any():
        raise ValueError("BG/NBD needs customers with some history (T > 0)")
    # Identical summaries collapse into one weighted row: a bank has many.
    keys = np.stack([x, t_x, T], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    w = np.bincount(inverse.ravel(), weights=w)
    x, t_x, T = unique[:, 0], unique[:, 1], unique[:, 2]
    scale = float(np.average(T, weights=w)) or 1.0

    def loss(log_params: np.ndarray) -> float:
        value = bgnbd_log_likelihood(np.exp(log_params), x, t_x, T, w)
        return -value / w.sum() if np.isfinite(value) else 1e10

    start = np.log([1.0, scale, 1.0, 1.0])
    best = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6})
    best = minimize(loss, best.x, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    r, alpha, a, b = np.exp(best.x)
    return BGNBD(float(r), float(alpha), float(a), float(b), -float(best.fun) * float(w.sum()))


def bgnbd_churn_score(rows: pd.DataFrame) -> np.ndarray | None:
    """BG/NBD's P(no transaction in the next 90 days) for each row, fitted on these rows.

    Fitted per snapshot on that snapshot's own summaries (only history before it), so
    it never sees an outcome. None when the rows lack the history features.
    """
    if not all(c in rows.columns for c in BGNBD_FEATURES):
        return None
    out = np.full(len(rows), np.nan)
    snaps = rows["snapshot_ts"].to_numpy()
    for snap in np.unique(snaps):
        at = np.flatnonzero(snaps == snap)
        part = rows.iloc[at]
        # No transaction yet: a customer at the very start (x = t_x = T = 0, the prior).
        x = np.nan_to_num(part[BGNBD_FEATURES[0]].to_numpy(dtype=float), nan=0.0)
        t_x = np.nan_to_num(part[BGNBD_FEATURES[1]].to_numpy(dtype=float), nan=0.0)
        T = np.nan_to_num(part[BGNBD_FEATURES[2]].to_numpy(dtype=float), nan=0.0)
        t_x = np.minimum(t_x, T)
        try:
            model = fit_bgnbd(x, t_x, T)
        except ValueError:
            continue
        out[at] = model.p_no_purchase(x, t_x, T)
    return out


def recency_score(rows: pd.DataFrame) -> np.ndarray | None:
    """Days since the last transaction (never transacted: longer than anyone), or None."""
    if RECENCY_FEATURE not in rows.columns:
        return None
    days = rows[RECENCY_FEATURE].to_numpy(dtype=float)
    finite = days[np.isfinite(days)]
    fill = (finite.max() + 1.0) if len(finite) else 0.0
    return np.where(np.isfinite(days), days, fill)


def _oriented_auc(y_train: np.ndarray, s_train: np.ndarray, y: np.ndarray, s: np.ndarray) -> float:
    """AUC of a one-feature score on test rows, its direction chosen on the training rows."""
    sign = 1.0
    if len(y_train) and y_train.min() != y_train.max():
        if metrics.auc(y_train, s_train) < 0.5:
            sign = -1.0
    return metrics.auc(y, sign * s)


def _base_rate_log_loss(rate: float, y: np.ndarray) -> float:
    return metrics.log_loss(y, np.full(len(y), float(np.clip(rate, 1e-6, 1 - 1e-6))))


def binary_baselines(
    label: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    probability: np.ndarray,
    *,
    recency_sign: float | None = None,
) -> dict[str, float]:
    """The model's AUC and log loss beside the base rate's and recency's on `test` rows.

    Recency's direction is `recency_sign` (+1: the longer the silence, the likelier the
    outcome), or chosen on the training rows when None.
    """
    known_train = train[label].notna().to_numpy()
    known = test[label].notna().to_numpy()
    y_train = train.loc[known_train, label].astype(float).to_numpy()
    y = test.loc[known, label].astype(float).to_numpy()
    p = np.asarray(probability, dtype=float)[known]
    if len(y) == 0 or y.min() == y.max():
        return {}
    rate = float(y_train.mean()) if len(y_train) else float(y.mean())
    out = {
        "auc": metrics.auc(y, p),
        "log_loss": metrics.log_loss(y, np.clip(p, 1e-6, 1 - 1e-6)),
        "base_rate_log_loss": _base_rate_log_loss(rate, y),
        "base_rate_auc": 0.5,
    }
    r_train, r_test = recency_score(train), recency_score(test)
    if r_test is not None and recency_sign is not None:
        out["recency_auc"] = metrics.auc(y, recency_sign * r_test[known])
    elif r_train is not None and r_test is not None:
        out["recency_auc"] = _oriented_auc(y_train, r_train[known_train], y, r_test[known])
    return out


def churn_baselines(
    train: pd.DataFrame, test: pd.DataFrame, probability: np.ndarray
) -> dict[str, float]:
    """Churn: base rate, recency and BG/NBD beside the model, on the same test rows."""
    # Churn's direction is known: a long silence means churn.
    out = binary_baselines("churn_90d", train, test, probability, recency_sign=1.0)
    if not out:
        return out
    bgnbd = bgnbd_churn_score(test)
    if bgnbd is not None:
        known = test["churn_90d"].notna().to_numpy() & np.isfinite(bgnbd)
        y = test.loc[known, "churn_90d"].astype(float).to_numpy()
        if len(y) and y.min() != y.max():
            out["bgnbd_auc"] = metrics.auc(y, bgnbd[known])
    return out


def propensity_baselines(
    train: pd.DataFrame, test: pd.DataFrame, scores: pd.DataFrame
) -> dict[str, float]:
    """Propensity: per product and on average, the model beside base rate and recency."""
    per: dict[str, dict[str, float]] = {}
    for product in PROPENSITY_PRODUCTS:
        column = f"propensity_{product}"
        if column not in scores.columns:
            continue
        found = binary_baselines(
            f"adopt_{product}_90d", train, test, scores[column].to_numpy(dtype=float)
        )
        if found:
            per[product] = found
    if not per:
        return {}
    out: dict[str, float] = {}
    for key in ("auc", "log_loss", "base_rate_log_loss", "recency_auc"):
        means = [v[key] for v in per.values() if key in v]
        if len(means) == len(per):
            out[f"mean_{key}"] = float(np.mean(means))
    for product, values in per.items():
        out.update({f"{product}_{k}": v for k, v in values.items() if k != "base_rate_auc"})
    return out


def _gate(name: str, passed: bool, reason: str) -> dict[str, Any]:
    return {"gate": name, "passed": bool(passed), "reason": reason}


def baseline_gates(family: str, values: dict[str, float]) -> list[dict[str, Any]]:
    """The gates a version must pass to become champion, from `*_baselines` values.

    churn: log loss below the base rate's and AUC above recency's; propensity: mean AUC
    above the base rate's 0.5 and above recency's (recency gates only where the feature
    exists); stage: log loss AND macro-F1 better than "stays in its stage".
    Missing values fail: a version that cannot be compared is not trusted.
    """
    gates = []
    task = spec(family).task
    if task == "multiclass":
        for metric, lower in (("log_loss", True), ("macro_f1", False)):
            model = values.get(metric, float("nan"))
            base = values.get(f"baseline_{metric}", float("nan"))
            ok = bool(np.isfinite(model) and np.isfinite(base)) and (
                model < base if lower else model > base
            )
            gates.append(
                _gate(
                    f"stage_{metric}_beats_stay",
                    ok,
                    f"test {metric} {model:.4f} vs stays-in-its-stage {base:.4f}",
                )
            )
        return gates
    prefix = "mean_" if task == "per_product" else ""
    model_auc = values.get(f"{prefix}auc", float("nan"))
    if task == "binary":
        # The churn probability is read as a probability (risk bands): it must be a
        # better forecast than the constant base rate, by log loss.
        model_ll = values.get("log_loss", float("nan"))
        base_ll = values.get("base_rate_log_loss", float("nan"))
        gates.append(
            _gate(
                "beats_base_rate",
                bool(np.isfinite(model_ll) and np.isfinite(base_ll) and model_ll < base_ll),
                f"test log_loss {model_ll:.4f} vs base rate {base_ll:.4f}",
            )
        )
    else:
        # Propensities rank products and customers; with a few dozen adoptions per product
        # a log loss is noise, so the base rate (a constant: AUC 0.5) is beaten in ranking.
        gates.append(
            _gate(
                "beats_base_rate",
                bool(np.isfinite(model_auc) and model_auc > 0.5),
                f"test mean_auc {model_auc:.4f} vs base rate 0.5 (a constant ranks no one)",
            )
        )
    recency = values.get(f"{prefix}recency_auc")
    if recency is not None:
        gates.append(
            _gate(
                "beats_recency",
                bool(np.isfinite(model_auc) and model_auc > recency),
                f"test {prefix}auc {model_auc:.4f} vs days-since-last-transaction {recency:.4f}",
            )
        )
    return gates


def _train_columns(training_set: TrainingSet) -> pd.DataFrame:
    """The training split's labels and recency (all a baseline needs: no wide copy)."""
    from training.data import label_columns

    frame = training_set.frame
    columns = [*label_columns(training_set.family)]
    if spec(training_set.family).task == "multiclass":
        columns.append("stage")
    elif RECENCY_FEATURE in frame.columns:
        columns.append(RECENCY_FEATURE)
    part = frame.loc[frame["split"].to_numpy() == "train", columns]
    return part.astype({c: "float64" for c in columns if c not in ("stage", "stage_next")})


def compare(
    training_set: TrainingSet, test: pd.DataFrame, scores: pd.DataFrame
) -> dict[str, float]:
    """The model's test metrics beside its family's baselines on the same `test` rows.

    `scores` are the model's (`BoosterModel.score`) on `test`; the base rate, recency's
    direction and the stay rate come from the training split. Feed to `baseline_gates`.
    """
    from training import evaluate
    from training.data import stage_index

    task = spec(training_set.family).task
    train = _train_columns(training_set)
    if task == "binary":
        return churn_baselines(train, test, scores["churn_probability"].to_numpy())
    if task == "per_product":
        return propensity_baselines(train, test, scores)
    stay = evaluate.stay_rate(stage_index(train["stage"]), stage_index(train["stage_next"]))
    model = evaluate.family_metrics("stage", scores, test)
    base = evaluate.stage_baseline(test, stay)
    return {
        "log_loss": model.get("log_loss", float("nan")),
        "macro_f1": model.get("macro_f1", float("nan")),
        **{f"baseline_{k}": v for k, v in base.items()},
        "stay_rate": stay,
    }
