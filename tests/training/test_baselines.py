"""Baselines: BG/NBD fitted with scipy recovers the published CDNOW estimates; gates judge."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.baselines import (
    BGNBD,
    baseline_gates,
    bgnbd_churn_score,
    bgnbd_log_likelihood,
    churn_baselines,
    fit_bgnbd,
)

# Fader, Hardie & Lee (2005), CDNOW cohort of 2,357 customers, 39 weeks of calibration.
CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def simulate_bgnbd(
    n: int, rng: np.random.Generator, T_weeks: np.ndarray | None = None, **params: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of customers who buy and drop out exactly as BG/NBD says."""
    p = {**CDNOW, **params}
    lam = rng.gamma(p["r"], 1.0 / p["alpha"], n)
    drop = rng.beta(p["a"], p["b"], n)
    # CDNOW-like: first purchases spread over the first 12 weeks of a 39-week window.
    T = T_weeks if T_weeks is not None else 39.0 - rng.uniform(0, 12, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    t = np.zeros(n)
    alive = np.ones(n, bool)
    while alive.any():
        i = np.flatnonzero(alive)
        t[i] += rng.exponential(1.0 / lam[i])
        bought = t[i] <= T[i]
        x[i[bought]] += 1
        t_x[i[bought]] = t[i[bought]]
        # A purchase inside the window may be the last: the customer drops out after it.
        dies = rng.random(len(i)) < drop[i]
        alive[i[~bought | dies]] = False
    return x, t_x, T


def test_bgnbd_recovers_the_published_cdnow_estimates() -> None:
    rng = np.random.default_rng(2005)
    x, t_x, T = simulate_bgnbd(30_000, rng)
    # Like CDNOW: most customers never buy again after their first purchase.
    assert 0.45 < (x == 0).mean() < 0.75
    fitted = fit_bgnbd(x, t_x, T)
    assert abs(fitted.r - CDNOW["r"]) < 0.15 * CDNOW["r"]
    assert abs(fitted.alpha - CDNOW["alpha"]) < 0.15 * CDNOW["alpha"]
    assert abs(fitted.a - CDNOW["a"]) < 0.3 * CDNOW["a"]
    assert abs(fitted.b - CDNOW["b"]) < 0.3 * CDNOW["b"]
    # It is the maximum: the true parameters are no more likely than the fitted ones.
    truth = bgnbd_log_likelihood(np.array(list(CDNOW.values())), x, t_x, T, np.ones_like(x))
    assert fitted.log_likelihood >= truth - 1e-6


def test_bgnbd_probabilities_behave() -> None:
    model = BGNBD(**CDNOW)
    # No repeat purchase: alive for sure (BG/NBD's dropout follows a purchase).
    assert model.p_alive(np.array([0.0]), np.array([0.0]), np.array([30.0]))[0] == 1.0
    # Same frequency, a longer silence since the last purchase: less likely alive, and
    # more likely to stay silent over the next weeks.
    pa = model.p_alive(np.array([3.0, 3.0]), np.array([30.0, 10.0]), np.array([32.0, 32.0]))
    assert pa[0] > pa[1]
    none = model.p_no_purchase(
        np.array([3.0, 3.0]), np.array([30.0, 10.0]), np.array([32.0, 32.0]), horizon=13
    )
    assert np.all((none > 0) & (none < 1)) and none[1] > none[0]


def test_churn_baselines_sit_beside_the_model_and_gate_it() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    days = rng.exponential(40, n)
    freq = rng.poisson(5, n).astype(float)
    truth = 1 / (1 + np.exp(-(days - 60) / 15 + (freq - 5) / 1.5))
    churn = (rng.random(n) < truth).astype(float)
    rows = pd.DataFrame(
        {
            "snapshot_ts": pd.Timestamp("2024-06-01", tz="UTC"),
            "churn_90d": churn,
            "days_since_last_txn": days,
            "history_frequency": freq,
            "history_recency_days": rng.uniform(0, 200, n),
            "history_age_days": np.full(n, 200.0),
        }
    )
    train, test = rows.iloc[:2000], rows.iloc[2000:].reset_index(drop=True)
    useless = np.full(len(test), 0.9)  # constant and far from the base rate
    values = churn_baselines(train, test, useless)
    assert values["recency_auc"] > 0.7 and values["auc"] == 0.5
    assert "bgnbd_auc" in values and np.isfinite(values["bgnbd_auc"])
    gates = {g["gate"]: g["passed"] for g in baseline_gates("churn", values)}
    assert gates == {"beats_base_rate": False, "beats_recency": False}
    # A model that knows the truth passes both.
    good = truth[2000:]
    gates = baseline_gates("churn", churn_baselines(train, test, good))
    assert all(g["passed"] for g in gates)
    # BG/NBD scores come back for every row of a snapshot, as probabilities.
    scores = bgnbd_churn_score(test)
    assert scores is not None and np.all((scores >= 0) & (scores <= 1))


def test_stage_gates_need_both_log_loss_and_macro_f1() -> None:
    values = {
        "log_loss": 24.2,
        "macro_f1": 0.07,
        "baseline_log_loss": 0.9,
        "baseline_macro_f1": 0.4,
    }
    assert not any(g["passed"] for g in baseline_gates("stage", values))
    values.update(log_loss=0.8, macro_f1=0.3)
    assert [g["passed"] for g in baseline_gates("stage", values)] == [True, False]
