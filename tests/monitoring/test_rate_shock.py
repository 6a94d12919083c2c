"""The rate-shock check on the shared bank: the shocked twin (same seed) drifts red
where the shock hit, the baseline bank stays green. The realistic-size run
(20,000 customers) is `python -m monitoring.shock_check` (bench/results-monitoring.md)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from clm.settings import Settings
from monitoring.shock_check import fit_stand_in, rate_shock_drift
from tests.fixtures.bank import BANK_CUSTOMERS, BANK_MONTHS, BANK_SEED, make_settings


@pytest.fixture(scope="module")
def shocked_twin(feature_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from features.pipeline import run_build
    from features.simulator import run_simulation

    settings = make_settings(tmp_path_factory.mktemp("rate_shock"))
    baseline_meta = json.loads((feature_settings.raw_dir / "meta.json").read_text())
    run_simulation(
        settings,
        customers=BANK_CUSTOMERS,
        months=BANK_MONTHS,
        seed=BANK_SEED,
        scenario="rate_shock",
        shock_month=None,
        start_month=baseline_meta["start_month"],
        progress=False,
    )
    run_build(settings, progress=False)
    return settings


def test_rate_shock_is_red_where_it_hit_and_baseline_stays_green(
    feature_settings: Settings, shocked_twin: Settings
) -> None:
    from features.store import feature_names

    features = feature_names(feature_settings, "churn_v1")
    meta = json.loads((shocked_twin.raw_dir / "meta.json").read_text())
    before = pd.Timestamp(f"{meta['shock_month']}-01", tz="UTC") - pd.DateOffset(months=3)
    score = fit_stand_in(feature_settings, features, before)
    rows = rate_shock_drift(feature_settings, shocked_twin, features=features, score=score)
    shocked = [r for r in rows if r["scenario"] == "rate_shock"]
    baseline = [r for r in rows if r["scenario"] == "baseline"]
    assert len(shocked) >= 3
    # Every baseline month is green on every feature, score and segment.
    assert all(r["verdict"] == "green" for r in baseline), baseline
    # Once the shock has run a full month, affluent balances/outflows are red every month.
    for r in shocked[1:]:
        assert r["affluent_affected_red"], r
        assert r["verdict"] == "red"
    # And the shocked bank's churn score moves more than the baseline's, month by month.
    for s, b in zip(shocked[1:], baseline[1:], strict=True):
        assert s["affluent_churn_psi"] > b["affluent_churn_psi"]
