"""The rate-shock check: the shocked twin (same seed) drifts red where the shock hit,
on the affected features and on the churn score, and the baseline bank stays green.

The always-run test uses the shared 2,000-customer bank; the churn score's PSI there
is amber-to-red (a stand-in model fitted on 2,000 customers' pre-shock months reacts
less than one fitted on a realistic book), so the red churn score is asserted at
realistic size in the slow test, which is `python -m monitoring.shock_check` in small
(bench/results-monitoring.md has its figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clm.settings import Settings
from monitoring.shock_check import expectation_checks, fit_stand_in, rate_shock_drift
from tests.fixtures.bank import BANK_CUSTOMERS, BANK_MONTHS, BANK_SEED, make_settings

# Realistic size for the slow test: the size and seed of `monitoring.shock_check`'s
# defaults (~20,500 rows a month, ~5,000 affluent), about 1.5 minutes.
REALISTIC_CUSTOMERS = 20_000
REALISTIC_MONTHS = 15


def _bank(home: Path, scenario: str, customers: int, months: int, seed: int) -> Settings:
    from features.pipeline import run_build
    from features.simulator import run_simulation

    settings = make_settings(home)
    run_simulation(
        settings,
        customers=customers,
        months=months,
        seed=seed,
        scenario=scenario,
        shock_month=None,
        start_month="2024-01",
        progress=False,
    )
    run_build(settings, progress=False)
    return settings


def _drift(baseline: Settings, shocked: Settings) -> list[dict]:
    from features.store import feature_names

    features = feature_names(baseline, "churn_v1")
    meta = json.loads((shocked.raw_dir / "meta.json").read_text())
    # Labels look 90 days ahead: the model learns only from horizons that end before the shock.
    before = pd.Timestamp(f"{meta['shock_month']}-01", tz="UTC") - pd.DateOffset(months=3)
    score = fit_stand_in(baseline, features, before)
    return rate_shock_drift(baseline, shocked, features=features, score=score)


@pytest.fixture(scope="module")
def shocked_twin(feature_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    baseline_meta = json.loads((feature_settings.raw_dir / "meta.json").read_text())
    assert baseline_meta["start_month"] == "2024-01"
    return _bank(
        tmp_path_factory.mktemp("rate_shock"), "rate_shock", BANK_CUSTOMERS, BANK_MONTHS, BANK_SEED
    )


def test_rate_shock_is_red_where_it_hit_and_baseline_stays_green(
    feature_settings: Settings, shocked_twin: Settings
) -> None:
    rows = _drift(feature_settings, shocked_twin)
    shocked = [r for r in rows if r["scenario"] == "rate_shock"]
    baseline = [r for r in rows if r["scenario"] == "baseline"]
    assert len(shocked) >= 3
    # Every baseline month is green on every feature, score and segment (value tier and
    # lifecycle stage, as `clm monitor drift` judges them), and says why.
    assert all(r["verdict"] == "green" for r in baseline), baseline
    assert all(r["reason"].startswith("GREEN: no PSI above") for r in baseline), baseline
    assert all(r["reason"].startswith("RED: ") for r in shocked[1:]), shocked
    # Once the shock has run a full month, affluent balances/outflows are red every month,
    # and the churn score has left green (the movers look risky to a pre-shock model).
    for r in shocked[1:]:
        assert r["affluent_affected_red"], r
        assert r["verdict"] == "red"
        assert r["churn_band"] != "green", r
    # And the shocked bank's churn score moves more than the baseline's, month by month.
    for s, b in zip(shocked, baseline, strict=True):
        assert s["churn_psi"] > 5 * b["churn_psi"], (s, b)
        assert s["affluent_churn_psi"] > b["affluent_churn_psi"]


@pytest.mark.slow
def test_rate_shock_turns_the_churn_score_red_at_realistic_size(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("rate_shock_realistic")
    seed = 11
    baseline = _bank(home / "baseline", "baseline", REALISTIC_CUSTOMERS, REALISTIC_MONTHS, seed)
    shocked = _bank(home / "rate_shock", "rate_shock", REALISTIC_CUSTOMERS, REALISTIC_MONTHS, seed)
    rows = _drift(baseline, shocked)
    settled = [r for r in rows if r["scenario"] == "rate_shock"][1:]
    assert len(settled) >= 2
    # Baseline months green; from the second post-shock month, red on the affluent
    # balances/outflows and on the churn score over the whole book.
    checks = expectation_checks(rows)
    assert all(checks.values()), (checks, rows)
    red = baseline.monitoring.psi_red
    assert all(r["churn_psi"] > red for r in settled), settled
