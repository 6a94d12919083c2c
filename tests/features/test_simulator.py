"""The simulated bank: contract schemas, determinism, plausible rates, truth vs observables."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from clm.domain import PROPENSITY_PRODUCTS
from clm.errors import ClmError
from clm.settings import Settings
from features.simulation.tables import PARTITIONED, SCHEMAS
from features.simulator import run_simulation
from tests.fixtures.bank import BANK_MONTHS, make_settings


def _simulate(home: Path, **kwargs: object) -> Settings:
    settings = make_settings(home)
    params: dict = {"customers": 300, "months": 6, "seed": 11, "progress": False} | kwargs
    run_simulation(settings, **params)
    return settings


def _table(settings: Settings, name: str) -> str:
    """A DuckDB relation expression for a raw table."""
    raw = settings.raw_dir
    if name in PARTITIONED:
        return f"read_parquet('{raw}/{name}/*/*.parquet', hive_partitioning = true)"
    return f"read_parquet('{raw}/{name}.parquet')"


def _query(settings: Settings, sql: str) -> list[tuple]:
    names = {name: _table(settings, name) for name in SCHEMAS}
    relation = duckdb.sql(sql.format(**names))
    assert relation is not None, sql
    return relation.fetchall()


@pytest.fixture(scope="module")
def meta(bank_settings: Settings) -> dict:
    return json.loads((bank_settings.raw_dir / "meta.json").read_text())


# ---------------------------------------------------------------- contract
def test_every_table_has_the_contract_schema(bank_settings: Settings) -> None:
    raw = bank_settings.raw_dir
    for name, schema in SCHEMAS.items():
        if name in PARTITIONED:
            months = sorted(p.name for p in (raw / name).iterdir())
            assert len(months) == BANK_MONTHS, name
            files = list((raw / name).glob("month=*/part-*.parquet"))
        else:
            files = [raw / f"{name}.parquet"]
        for path in files:
            assert pq.read_schema(path).remove_metadata().equals(schema), path
    ids = _query(
        bank_settings, "select min(customer_id), max(length(customer_id)) from {customers}"
    )[0]
    assert ids == ("C0000000", 8)


def test_meta_describes_the_run(meta: dict) -> None:
    assert meta["source"] == "simulator" and meta["scenario"] == "baseline"
    assert (meta["start_month"], meta["end_month"], meta["months"]) == ("2024-01", "2025-06", 18)
    assert meta["shock_month"] is None and meta["seed"] == 7
    assert set(meta["oracle_auc"]) == {"churn_90d"} | {
        f"adopt_{p}_90d" for p in PROPENSITY_PRODUCTS
    }


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_the_same_bank_and_another_seed_another(tmp_path: Path) -> None:
    first = _simulate(tmp_path / "a")
    again = _simulate(tmp_path / "b")
    other = _simulate(tmp_path / "c", seed=12)
    for name in ("customers", "holdings", "campaigns"):
        a = pq.read_table(first.raw_dir / f"{name}.parquet")
        assert a.equals(pq.read_table(again.raw_dir / f"{name}.parquet")), name
    for name in PARTITIONED:
        a = pq.read_table(first.raw_dir / name)
        assert a.equals(pq.read_table(again.raw_dir / name)), name
        assert not a.equals(pq.read_table(other.raw_dir / name)), name


def test_a_new_run_replaces_the_raw_directory_whole(tmp_path: Path) -> None:
    settings = _simulate(tmp_path, months=8)
    _simulate(tmp_path, months=5)
    assert len(list((settings.raw_dir / "transactions").iterdir())) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_parameters_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(ClmError, match="unknown scenario 'boom'"):
        run_simulation(settings, customers=10, months=6, seed=1, scenario="boom", progress=False)
    with pytest.raises(ClmError, match="YYYY-MM"):
        run_simulation(
            settings, customers=10, months=6, seed=1, start_month="2024-13", progress=False
        )
    with pytest.raises(ClmError, match="shock month"):
        run_simulation(
            settings,
            customers=10,
            months=6,
            seed=1,
            scenario="rate_shock",
            shock_month=6,
            progress=False,
        )
    assert not settings.raw_dir.exists()


# ---------------------------------------------------------------- plausibility
def test_churn_and_oracle_aucs_are_plausible(meta: dict) -> None:
    assert 0.07 <= meta["annual_churn_rate"] <= 0.20
    assert 0.68 <= meta["oracle_auc"]["churn_90d"] <= 0.90
    adoption = [v for k, v in meta["oracle_auc"].items() if k.startswith("adopt_")]
    assert 0.65 <= float(np.mean(adoption)) <= 0.90
    assert all(0.55 <= v <= 0.95 for v in adoption)


def test_activity_volume_is_moderate(bank_settings: Settings) -> None:
    per_month = _query(
        bank_settings,
        "select count(*) / count(distinct (customer_id, month)) from {transactions}",
    )[0][0]
    assert 10 <= per_month <= 25
    logins = _query(bank_settings, "select count(distinct customer_id) from {app_sessions}")[0][0]
    assert logins > 1000


def test_new_customers_arrive_every_month(bank_settings: Settings) -> None:
    arrivals = _query(
        bank_settings,
        "select strftime(signup_date, '%Y-%m') m, count(*) from {customers} "
        "where signup_date >= date '2024-01-01' group by m",
    )
    assert len(arrivals) == BANK_MONTHS and min(n for _, n in arrivals) >= 10
    honeymoon = _query(
        bank_settings,
        "select month, count(*) filter (where latent_stage = 'honeymoon') from {truth} group by month",
    )
    assert len(honeymoon) == BANK_MONTHS and min(n for _, n in honeymoon) > 0


# ---------------------------------------------------------------- truth vs observables
def test_churned_in_truth_exactly_when_every_holding_is_closed(bank_settings: Settings) -> None:
    mismatches = _query(
        bank_settings,
        """
        with last as (
            select customer_id, bool_and(closed_date is not null) all_closed, max(closed_date) closed
            from {holdings} group by customer_id)
        select count(*) from {truth} t join last using (customer_id)
        where (t.latent_stage = 'churned') != (last.all_closed and last.closed <= t.month_end)
        """,
    )[0][0]
    assert mismatches == 0
    churned = _query(bank_settings, "select count(*) from {truth} where latent_stage = 'churned'")[
        0
    ][0]
    assert churned > 50
    # The truth says nothing further once a customer has gone.
    after = _query(
        bank_settings,
        "select count(*) from (select customer_id, count(*) filter (where latent_stage = 'churned') n "
        "from {truth} group by customer_id) where n > 1",
    )[0][0]
    assert after == 0


def test_no_activity_after_the_last_holding_closes(bank_settings: Settings) -> None:
    gone = (
        "(select customer_id, max(closed_date) closed from {holdings} group by customer_id "
        "having bool_and(closed_date is not null))"
    )
    for table, column in (
        ("transactions", "timestamp"),
        ("app_sessions", "timestamp"),
        ("balances", "month_end"),
    ):
        late = _query(
            bank_settings,
            f"select count(*) from {{{table}}} x join {gone} g using (customer_id) "
            f"where x.{column}::date > g.closed",
        )[0][0]
        assert late == 0, table
    before = _query(
        bank_settings,
        "select count(*) from {transactions} x join {customers} c using (customer_id) "
        "where x.timestamp::date < c.signup_date",
    )[0][0]
    assert before == 0


def test_truth_hazards_match_what_happened(bank_settings: Settings) -> None:
    """Calibration in the large: predicted 90-day churn ~ observed, and risk ranks outcomes."""
    rows = _query(
        bank_settings,
        """
        with closed as (select customer_id, max(closed_date) closed from {holdings}
                        group by customer_id having bool_and(closed_date is not null)),
        outcome as (
            select t.churn_hazard_90d p,
                   coalesce(c.closed > t.month_end and c.closed <= t.month_end + 90, false)::int y
            from {truth} t left join closed c using (customer_id)
            where t.latent_stage != 'churned' and t.month_end <= date '2025-03-31')
        select avg(p), avg(y), corr(p, y) from outcome
        """,
    )[0]
    predicted, observed, corr = rows
    assert 0.6 * observed <= predicted <= 1.4 * observed
    assert corr > 0.1
    held = _query(
        bank_settings,
        """
        select count(*) from {truth} t join {holdings} h using (customer_id)
        where h.product = 'mortgage' and h.opened_date <= t.month_end
          and (h.closed_date is null or h.closed_date > t.month_end)
          and t.p_adopt_mortgage_90d is not null
        """,
    )[0][0]
    assert held == 0


def test_engagement_shows_in_behaviour(bank_settings: Settings) -> None:
    """Latent engagement is not observable, but activity and logins follow it."""
    corr = _query(
        bank_settings,
        """
        with act as (select customer_id, month, count(*) n from {transactions}
                     where category in ('card_spend', 'cash', 'bill_payment', 'transfer_out', 'transfer_in')
                     group by all)
        select corr(t.engagement, ln(1 + coalesce(a.n, 0))) from {truth} t
        left join act a using (customer_id, month) where t.latent_stage != 'churned'
        """,
    )[0][0]
    assert 0.3 < corr < 0.95


# ---------------------------------------------------------------- experiments
def test_control_groups_are_randomised(bank_settings: Settings) -> None:
    groups = dict(
        _query(
            bank_settings,
            "select campaign = 'onboarding', avg((\"group\" = 'treatment')::int) from {campaigns} group by 1",
        )
    )
    assert 0.4 <= groups[True] <= 0.6
    assert 0.62 <= groups[False] <= 0.78
    # Randomised: the groups look alike on what the bank knows about the customers.
    balance = _query(
        bank_settings,
        "select \"group\", avg((c.value_tier = 'affluent')::int), avg(c.is_payroll::int) "
        "from {campaigns} k join {customers} c using (customer_id) where campaign != 'onboarding' group by 1",
    )
    (_, tier_a, pay_a), (_, tier_b, pay_b) = balance
    assert abs(tier_a - tier_b) < 0.05 and abs(pay_a - pay_b) < 0.05
    onboarding = _query(
        bank_settings,
        "select count(*), count(*) filter (where contact_date >= signup_date) "
        "from {campaigns} k join {customers} c using (customer_id) where campaign = 'onboarding'",
    )[0]
    assert onboarding[0] > 100 and onboarding[0] == onboarding[1]


@pytest.mark.slow
def test_onboarding_contact_lowers_early_churn_for_some_customers(tmp_path: Path) -> None:
    settings = _simulate(tmp_path, customers=20_000, months=12, seed=5)
    rows = _query(
        settings,
        """
        with closed as (select customer_id, max(closed_date) closed from {holdings}
                        group by customer_id having bool_and(closed_date is not null))
        select c.segment in ('middle_class', 'young_parents', 'young_digital') and not c.is_payroll responsive,
               k."group", count(*),
               avg(coalesce(cl.closed <= c.signup_date + 180, false)::int)
        from {campaigns} k join {customers} c using (customer_id) left join closed cl using (customer_id)
        where k.campaign = 'onboarding' and c.signup_date <= date '2024-06-30'
        group by all
        """,
    )
    rate = {(responsive, group): (n, r or 0.0) for responsive, group, n, r in rows}
    uplift = rate[True, "control"][1] - rate[True, "treatment"][1]
    (n_c, r_c), (n_t, r_t) = rate[True, "control"], rate[True, "treatment"]
    pooled = (n_c * r_c + n_t * r_t) / (n_c + n_t)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    assert uplift > 3 * se
    placebo = rate[False, "control"][1] - rate[False, "treatment"][1]
    assert abs(placebo) < uplift / 2


def test_rate_shock_leaves_the_past_alone_and_pulls_affluent_deposits(tmp_path: Path) -> None:
    base = _simulate(tmp_path / "base", customers=1000, months=9, seed=3)
    shock = _simulate(
        tmp_path / "shock", customers=1000, months=9, seed=3, scenario="rate_shock", shock_month=6
    )
    for name in PARTITIONED:
        for month in ("2024-01", "2024-04", "2024-06"):
            a = pq.read_table(base.raw_dir / name / f"month={month}")
            assert a.equals(pq.read_table(shock.raw_dir / name / f"month={month}")), (name, month)
        assert not pq.read_table(base.raw_dir / name / "month=2024-09").equals(
            pq.read_table(shock.raw_dir / name / "month=2024-09")
        )

    def outflows(settings: Settings) -> dict[str, float]:
        return dict(
            _query(
                settings,
                "select c.value_tier, -sum(amount) from {transactions} t join {customers} c using (customer_id) "
                "where t.timestamp >= timestamp '2024-07-01' and amount < 0 "
                "and t.product in ('time_deposit', 'wealth_management', 'mutual_fund') group by 1",
            )
        )

    def invested(settings: Settings) -> float:
        return _query(
            settings,
            "select sum(balance) from {balances} where month_end = date '2024-09-30' "
            "and product in ('time_deposit', 'wealth_management', 'mutual_fund')",
        )[0][0]

    def savings_closed(settings: Settings) -> int:
        return _query(
            settings,
            "select count(*) from {holdings} where closed_date >= date '2024-07-01' "
            "and product in ('time_deposit', 'wealth_management', 'mutual_fund')",
        )[0][0]

    def activity(settings: Settings, table: str) -> float:
        """Customer-initiated transactions (or app sessions) in 2024-09."""
        where = (
            "category in ('card_spend', 'cash', 'bill_payment')"
            if table == "transactions"
            else "true"
        )
        return _query(
            settings,
            f"select count(*) from {{{table}}} where timestamp >= timestamp '2024-09-01' and {where}",
        )[0][0]

    def churned(settings: Settings) -> int:
        """Customers whose last holding closed after the shock (a churn closes everything)."""
        return _query(
            settings,
            "select count(*) from (select customer_id, bool_and(closed_date is not null) gone, "
            "max(closed_date) last from {holdings} group by 1) where gone and last >= date '2024-07-01'",
        )[0][0]

    before, after = outflows(base), outflows(shock)
    assert after["affluent"] > 2 * before.get("affluent", 0.0)
    # The rate war reaches beyond the affluent: mass-tier savers move deposits too.
    assert after["mass"] > 2 * before.get("mass", 0.0)
    assert invested(shock) < 0.8 * invested(base)
    # Observable behaviour: savings products closed, day-to-day activity and logins drop ...
    assert savings_closed(shock) > 3 * savings_closed(base)
    assert activity(shock, "transactions") < 0.9 * activity(base, "transactions")
    assert activity(shock, "app_sessions") < 0.9 * activity(base, "app_sessions")
    # ... and the churn that follows comes from those states (no hidden shock term).
    assert churned(shock) > 1.3 * churned(base)
    meta = json.loads((shock.raw_dir / "meta.json").read_text())
    assert meta["scenario"] == "rate_shock" and meta["shock_month"] == "2024-07"


def test_churn_hazard_has_no_hidden_rate_shock_term() -> None:
    """The shock raises churn only through observable states; the flag alone moves nothing."""
    from features.simulation import hazards as hz

    n = 4
    rng = np.random.default_rng(0)
    snap = hz.Snapshot(
        month=10,
        engagement=rng.normal(0, 1, n),
        level=rng.normal(0, 1, n),
        segment=np.arange(n),
        tier=np.array([0, 1, 2, 1]),
        signup_month=np.array([-30, -5, 2, -60]),
        products_held=rng.random((n, 9)) < 0.5,
        salary_active=np.array([True, False, True, False]),
        salary_stopped_month=np.array([-10_000, 9, -10_000, -10_000]),
        outflow_month=np.array([10, -10_000, 9, -10_000]),
        deposit_lost_month=np.array([-10_000, 10, -10_000, -10_000]),
        app_quiet=np.array([False, True, False, False]),
        empty_month=np.array([False, False, True, False]),
        onboarding_effect=np.zeros(n),
        campaign_until=np.full((n, 8), -10_000),
        shocked=np.zeros(n, bool),
        txn_rate=np.full(n, 10.0),
    )
    calm = hz.ninety_days(snap)[0]
    snap.shocked = np.ones(n, bool)
    assert np.array_equal(hz.ninety_days(snap)[0], calm)


def test_campaign_responses_without_any_adoption_in_the_chunk() -> None:
    """A chunk of late arrivals can have campaign contacts but no product opened yet."""
    from types import SimpleNamespace

    from features.simulation import tables
    from features.simulation.population import Calendar
    from features.simulator import _campaigns

    contacts = (
        np.array([0, 1]),
        np.array([2, 2]),
        np.array([5, 6]),
        "2024-03-credit_card",
        4,
        np.array([1, 0]),
        2,
    )
    bank = SimpleNamespace(campaign_rows=[contacts], adoptions=[])
    table = _campaigns(
        tables, tables.customer_ids(np.array([10, 11])), bank, Calendar(np.datetime64("2024-01"), 6)
    )
    assert table.column("responded").to_pylist() == [False, False]
    assert table.column("group").to_pylist() == ["treatment", "control"]
