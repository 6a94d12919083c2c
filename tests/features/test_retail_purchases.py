"""`clm simulate --scenario retail_purchases`: a 3-column purchase log with known truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm import metrics
from clm.settings import Settings
from features.simulation import retail
from training.baselines import fit_bgnbd


@pytest.fixture(scope="module")
def retail_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from features.simulator import run_simulation

    settings = Settings.load(home=tmp_path_factory.mktemp("retail"), env={})
    run_simulation(
        settings, customers=6000, months=10, seed=5, scenario="retail_purchases", progress=False
    )
    return settings


def test_the_log_has_only_the_mandatory_columns_and_heterogeneous_buyers(
    retail_settings: Settings,
) -> None:
    raw = retail_settings.raw_dir
    tx = pd.read_parquet(raw / "transactions.parquet")
    assert list(tx.columns) == ["customer_id", "timestamp", "amount"]
    assert sorted(p.name for p in raw.iterdir()) == ["meta.json", "transactions.parquet", "truth"]
    per_customer = tx.groupby("customer_id").size()
    # Most buy once or twice, a few often (gamma-distributed rates).
    assert per_customer.median() <= 2 and per_customer.max() >= 10
    assert (tx["amount"] > 0).all()
    meta = json.loads((raw / "meta.json").read_text())
    assert meta["scenario"] == "retail_purchases" and meta["source"] == "simulator"
    # Knowing the latent state ranks far better than any history can.
    assert 0.6 < meta["oracle_auc"]["churn_90d"] < meta["oracle_auc_latent"]["churn_90d"]


def test_the_oracle_is_the_best_forecast_from_the_history(retail_settings: Settings) -> None:
    """At one snapshot: Bayes oracle >= BG/NBD fitted on the same history > recency alone."""
    raw = retail_settings.raw_dir
    tx = pd.read_parquet(raw / "transactions.parquet")
    truth = pd.read_parquet(raw / "truth")
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    snap = pd.Timestamp("2024-07-01", tz="UTC")
    tx["day"] = (tx["timestamp"] - t0).dt.total_seconds() / 86400
    t = (snap - t0).days
    hist = tx[tx["day"] < t].groupby("customer_id")["day"].agg(["min", "max", "count"])
    future = tx[(tx["day"] >= t) & (tx["day"] < t + 90)]["customer_id"].unique()
    y = (~hist.index.isin(future)).astype(float)
    x, t_x, age = hist["count"] - 1.0, hist["max"] - hist["min"], t - hist["min"]
    bgnbd = fit_bgnbd(x.to_numpy(), t_x.to_numpy(), age.to_numpy())
    bg_auc = metrics.auc(y, bgnbd.p_no_purchase(x.to_numpy(), t_x.to_numpy(), age.to_numpy()))
    at = truth[truth["month_end"] == pd.Timestamp("2024-06-30")].set_index("customer_id")
    oracle = at.reindex(hist.index)["churn_hazard_90d"].to_numpy()
    oracle_auc = metrics.auc(y, oracle)
    recency_auc = metrics.auc(y, (t - hist["max"]).to_numpy())
    assert oracle_auc >= bg_auc - 0.005
    assert bg_auc > recency_auc + 0.03


def test_bayes_forecast_of_a_new_customer_is_the_prior_expectation() -> None:
    """x = t_x = T = 0: the quadrature equals a Monte Carlo mean over the priors."""
    rng = np.random.default_rng(0)
    p = retail.PARAMS
    lam = rng.gamma(p["r"], 1 / p["alpha"], 400_000)
    mu = rng.gamma(p["s"], 1 / p["beta"], 400_000)
    rate = lam + mu
    h = retail.HORIZON_DAYS
    expected = np.mean(mu / rate * (1 - np.exp(-rate * h)) + np.exp(-rate * h))
    got = retail.bayes_no_purchase(np.zeros(1), np.zeros(1), np.zeros(1))[0]
    assert got == pytest.approx(expected, abs=3e-3)
    # A long silence after frequent buying: far likelier to stay silent than a fresh buyer.
    silent = retail.bayes_no_purchase(np.array([8.0]), np.array([60.0]), np.array([200.0]))[0]
    recent = retail.bayes_no_purchase(np.array([8.0]), np.array([195.0]), np.array([200.0]))[0]
    assert silent > 0.9 > recent


def test_unknown_scenario_names_the_choices(tmp_path: Path) -> None:
    from features.simulator import SimulationError, run_simulation

    with pytest.raises(SimulationError, match="retail_purchases"):
        run_simulation(
            Settings.load(home=tmp_path, env={}),
            customers=10,
            months=6,
            seed=1,
            scenario="nope",
            progress=False,
        )
