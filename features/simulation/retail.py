"""`clm simulate --scenario retail_purchases`: a non-contractual purchase log with known truth.

Only the three mandatory transaction columns (`customer_id`, `timestamp`, `amount`),
as a retailer or a card issuer would hand over. Customers follow Pareto/NBD
(Schmittlein, Morrison & Colombo 1987): each arrives with a first purchase at a
uniform time in the period, then buys as a Poisson process of rate lambda while
alive and dies after an exponential lifetime of rate mu, with lambda ~ Gamma(r, alpha)
and mu ~ Gamma(s, beta) across customers (most buy once or twice; a few buy often).
Amounts are gamma around a per-customer mean.

Truth (`truth/`, never read by features): at every month end, for each customer who
has arrived, `churn_hazard_90d` = P(no transaction in the 90 days after the snapshot
| lambda, mu, alive) — 1 for a customer already dead, else
mu/(lambda+mu) (1 - e^{-(lambda+mu) h}) + e^{-(lambda+mu) h} for h = 90 days.
No model can rank "no transaction in the next 90 days" better: `meta.json` carries
that oracle AUC. BG/NBD is (nearly) the correctly specified model here.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import numpy as np

from clm import atomic, metrics
from clm.settings import Settings

SCENARIO = "retail_purchases"
HORIZON_DAYS = 90
# Per-day rates: a mean purchase every ~3 months, a median lifetime of ~4 months,
# strongly heterogeneous (shapes below 1): like the public logs issue 11 describes.
PARAMS = {"r": 0.55, "alpha": 50.0, "s": 0.7, "beta": 110.0}
SPEND_SHAPE = 4.0


def _draw_purchases(
    rng: np.random.Generator, birth: np.ndarray, lam: np.ndarray, death: np.ndarray, end: float
) -> tuple[np.ndarray, np.ndarray]:
    """Repeat-purchase (customer index, day) pairs of a Poisson(lambda) process until death/end."""
    idx_parts, day_parts = [], []
    t = birth.copy()
    stop = np.minimum(death, end)
    active = np.flatnonzero(t < stop)
    while len(active):
        t[active] += rng.exponential(1.0 / lam[active])
        bought = active[t[active] < stop[active]]
        idx_parts.append(bought)
        day_parts.append(t[bought])
        active = bought
    if not idx_parts:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(idx_parts), np.concatenate(day_parts)


def bayes_no_purchase(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float = HORIZON_DAYS, nodes: int = 24
) -> np.ndarray:
    """P(no purchase in (T, T + horizon] | x, t_x, T) under Pareto/NBD with the true PARAMS.

    The Bayes-optimal forecast from a customer's history (x, t_x, T are sufficient): no
    model that sees only the transactions can rank better. The Pareto/NBD likelihood
    lambda^x [mu/(lambda+mu) (e^{-(lambda+mu) t_x} - e^{-(lambda+mu) T}) + e^{-(lambda+mu) T}]
    splits into "died between t_x and T" and "alive at T"; each piece is an expectation
    over Gamma-distributed (lambda, mu) tilted by e^{-(lambda+mu) t}, taken by generalized
    Gauss-Laguerre quadrature.
    """
    from scipy.special import roots_genlaguerre

    r, alpha, s, beta = PARAMS["r"], PARAMS["alpha"], PARAMS["s"], PARAMS["beta"]
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    out = np.empty(len(x))
    mu_nodes, mu_w = roots_genlaguerre(nodes, s - 1)
    mu_w = mu_w / mu_w.sum()
    for value in np.unique(x):
        at = np.flatnonzero(x == value)
        lam_nodes, lam_w = roots_genlaguerre(nodes, r + value - 1)
        lam_w = lam_w / lam_w.sum()
        w = lam_w[None, :, None] * mu_w[None, None, :]
        for lo in range(0, len(at), 4096):
            rows = at[lo : lo + 4096]
            parts = []
            for t in (t_x[rows], T[rows]):
                lam = lam_nodes[None, :, None] / (alpha + t)[:, None, None]
                mu = mu_nodes[None, None, :] / (beta + t)[:, None, None]
                # The log normalising constant of the history's tilt (shared by the term).
                log_c = -(r + value) * np.log(alpha + t) - s * np.log(beta + t)
                parts.append((lam, mu, log_c))
            (lam_d, mu_d, c_d), (lam_a, mu_a, c_a) = parts
            rate = lam_a + mu_a
            quiet = mu_a / rate * (1 - np.exp(-rate * horizon)) + np.exp(-rate * horizon)
            shift = np.maximum(c_d, c_a)
            cd, ca = np.exp(c_d - shift), np.exp(c_a - shift)
            # Died in (t_x, T]: mu/(lambda+mu) (e^{-(lambda+mu) t_x} - e^{-(lambda+mu) T});
            # alive at T: e^{-(lambda+mu) T}, then quiet over the horizon.
            dead = cd * (w * (mu_d / (lam_d + mu_d))).sum(axis=(1, 2)) - ca * (
                w * (mu_a / rate)
            ).sum(axis=(1, 2))
            dead = np.maximum(dead, 0.0)
            alive_quiet = ca * (w * quiet).sum(axis=(1, 2))
            out[rows] = (dead + alive_quiet) / (dead + ca)
    return out


def run_retail(
    settings: Settings,
    *,
    customers: int,
    months: int,
    seed: int,
    start_month: str,
) -> dict[str, Any]:
    """Write raw/transactions.parquet (3 columns), raw/truth/ and raw/meta.json; returns meta."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    began = time.perf_counter()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(11,))))
    start = np.datetime64(f"{start_month}-01", "D")
    month_starts = (np.datetime64(start_month, "M") + np.arange(months + 1)).astype("datetime64[D]")
    period_days = float((month_starts[-1] - start).astype(int))
    # Snapshot k (k = 1..months) is the first instant of month k: data of month k-1 visible.
    snap_days = (month_starts[1:] - start).astype(float)

    n = customers
    lam = rng.gamma(PARAMS["r"], 1.0 / PARAMS["alpha"], n)
    lam = np.maximum(lam, 1e-6)
    mu = np.maximum(rng.gamma(PARAMS["s"], 1.0 / PARAMS["beta"], n), 1e-6)
    birth = rng.uniform(0.0, period_days, n)
    death = birth + rng.exponential(1.0 / mu)
    spend = rng.gamma(2.0, 25.0, n) + 5.0

    idx, day = _draw_purchases(rng, birth, lam, death, period_days)
    idx = np.concatenate([np.arange(n), idx])
    day = np.concatenate([birth, day])
    amount = np.round(rng.gamma(SPEND_SHAPE, spend[idx] / SPEND_SHAPE), 2)
    order = np.lexsort((day, idx))
    idx, day, amount = idx[order], day[order], amount[order]
    ids = np.array([f"R{k:07d}" for k in range(n)], dtype=object)
    micros = start.astype("datetime64[us]").astype(np.int64) + np.floor(day * 86_400e6).astype(
        np.int64
    )
    transactions = pa.table(
        {
            "customer_id": pa.array(ids[idx], pa.string()),
            "timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
            "amount": pa.array(amount, pa.float64()),
        }
    )

    # Truth at each snapshot for customers who have arrived, and what then happened.
    truth_parts = []
    hazards, latents, outcomes = [], [], []
    span = period_days + 2 * HORIZON_DAYS
    key = idx * span + day  # sorted: rows are ordered by customer, then day
    for k, t in enumerate(snap_days):
        here = np.flatnonzero(birth < t)
        alive = death[here] > t
        rate = lam[here] + mu[here]
        quiet = mu[here] / rate * (1 - np.exp(-rate * HORIZON_DAYS)) + np.exp(-rate * HORIZON_DAYS)
        latent = np.where(alive, quiet, 1.0)
        # The history each customer shows at t: repeat purchases, first to last, first to t.
        start_pos = np.searchsorted(key, here * span)
        before = np.searchsorted(key, here * span + t) - start_pos
        last = day[np.maximum(start_pos + before - 1, 0)]
        hazard = bayes_no_purchase(before - 1.0, last - birth[here], t - birth[here])
        month_end = month_starts[k + 1] - np.timedelta64(1, "D")
        truth_parts.append(
            pd.DataFrame(
                {
                    "customer_id": ids[here].astype(str),
                    "month_end": np.full(len(here), month_end).astype("datetime64[us]"),
                    "churn_hazard_90d": hazard,
                    "churn_hazard_90d_latent": latent,
                    "alive": alive,
                }
            )
        )
        if t + HORIZON_DAYS <= snap_days[-1]:
            # Any purchase in [t, t + 90 days)? The next purchase at or after t, found by
            # binary search on (customer, day) keys.
            pos = np.searchsorted(key, here * span + t)
            found = np.minimum(pos, len(key) - 1)
            bought = (pos < len(key)) & (idx[found] == here) & (day[found] < t + HORIZON_DAYS)
            hazards.append(hazard)
            latents.append(latent)
            outcomes.append(~bought)
    y = np.concatenate(outcomes).astype(float) if outcomes else np.zeros(0)
    oracle = metrics.auc(y, np.concatenate(hazards)) if outcomes else float("nan")
    oracle_latent = metrics.auc(y, np.concatenate(latents)) if outcomes else float("nan")

    raw_dir = settings.raw_dir
    tmp = atomic.new_staging_dir(raw_dir)
    try:
        pq.write_table(transactions, tmp / "transactions.parquet", compression="zstd")
        (tmp / "truth").mkdir()
        truth = pd.concat(truth_parts, ignore_index=True)
        truth.to_parquet(tmp / "truth" / "part-0.parquet", index=False)
        per_customer = np.bincount(idx, minlength=n)
        meta: dict[str, Any] = {
            "source": "simulator",
            "scenario": SCENARIO,
            "seed": seed,
            "customers": customers,
            "customers_total": customers,
            "months": months,
            "start_month": start_month,
            "end_month": str(np.datetime64(start_month, "M") + months - 1),
            "shock_month": None,
            "annual_churn_rate": round(float(np.mean(1 - np.exp(-365 * mu))), 4),
            "params_per_day": PARAMS,
            "median_transactions_per_customer": float(np.median(per_customer)),
            "share_buying_once": round(float((per_customer == 1).mean()), 4),
            # Bayes-optimal from the history (what `oracle_auc` means here) and, for
            # reference, knowing each customer's latent rates and whether alive.
            "oracle_auc": {"churn_90d": None if np.isnan(oracle) else round(oracle, 4)},
            "oracle_auc_latent": {
                "churn_90d": None if np.isnan(oracle_latent) else round(oracle_latent, 4)
            },
            "rows": {"transactions": int(len(idx)), "truth": int(len(truth))},
            "seconds": round(time.perf_counter() - began, 1),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        atomic.replace_dir(tmp, raw_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
