"""Lists without models: the selection language, the holdout draw, suppression and the
registry under concurrent writers (SQLite here, PostgreSQL when the server is there)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campaigns.expression import ExpressionError, parse
from campaigns.lists import (
    CampaignError,
    CampaignSpec,
    ScoredMonth,
    assign_groups,
    export_treatment,
    record_campaign,
)
from campaigns.registry import Registry

POSTGRES = ("127.0.0.1", 5432)


def _frame(n: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "churn_probability": rng.random(n),
            "propensity_credit_card": rng.random(n) / 5,
            "holds_credit_card": (rng.random(n) < 0.3).astype(float),
            "is_payroll": (rng.random(n) < 0.4).astype(float),
            "aum": rng.lognormal(9, 1, n),
            "stage": rng.choice(["growing", "mature", "declining", "dormant", "churned"], n),
            "value_tier": rng.choice(["mass", "affluent", "private"], n, p=[0.7, 0.25, 0.05]),
        }
    )


def test_expression_selects_rows_like_the_condition_says() -> None:
    frame = _frame()
    fields = frame.columns
    expr = parse(
        "churn_probability > 0.5 and stage in ('declining', 'dormant') and not is_payroll", fields
    )
    got = expr.evaluate(frame)
    want = (
        (frame.churn_probability > 0.5)
        & frame.stage.isin(["declining", "dormant"])
        & (frame.is_payroll == 0)
    ).to_numpy()
    assert got.dtype == bool and (got == want).all() and want.any()
    chained = parse("0.2 < churn_probability <= 0.4 or aum * 2 > 40000", fields).evaluate(frame)
    assert (
        chained
        == (
            ((frame.churn_probability > 0.2) & (frame.churn_probability <= 0.4))
            | (frame.aum * 2 > 40000)
        ).to_numpy()
    ).all()


def test_expression_names_the_unknown_field_and_refuses_code() -> None:
    fields = _frame().columns
    with pytest.raises(
        ExpressionError, match=r"'churn_probabilty' \(did you mean churn_probability"
    ):
        parse("churn_probabilty > 0.3", fields)
    for bad in ("__import__('os').system('true')", "aum.real > 1", "[x for x in aum]", "aum >"):
        with pytest.raises(ExpressionError):
            parse(bad, fields)
    with pytest.raises(ExpressionError, match="not a condition"):
        parse("aum + 1", fields).evaluate(_frame())


def test_holdout_is_exact_stratified_and_reproducible() -> None:
    rng = np.random.default_rng(3)
    strata = rng.choice(
        ["mass/growing", "mass/declining", "affluent/mature", "private/dormant"], 5000
    )
    control = assign_groups(strata, 0.2, seed=11)
    assert abs(control.mean() - 0.2) < 0.001
    for stratum in set(strata):
        share = control[strata == stratum].mean()
        assert abs(share - 0.2) < 1.5 / (strata == stratum).sum() + 1e-9, stratum
    assert (assign_groups(strata, 0.2, seed=11) == control).all()
    assert (assign_groups(strata, 0.2, seed=12) != control).any()


def _month(frame: pd.DataFrame) -> ScoredMonth:
    return ScoredMonth(frame, np.zeros((len(frame), 1)), None, datetime(2025, 7, 1, tzinfo=UTC))  # type: ignore[arg-type]


def _record(registry: Registry, spec: CampaignSpec, frame: pd.DataFrame, cap: int = 2) -> int:
    return record_campaign(
        registry,
        spec,
        _month(frame),
        monthly_cap=cap,
        running_days=90,
        reasons=lambda rows: [f"reason {i}" for i in rows],
    )


def _spec(name: str, **kw: object) -> CampaignSpec:
    base = dict(
        name=name,
        as_of="2025-06-30",
        scene="lifecycle",
        select="churn_probability > 0.3",
        max_members=150,
        holdout=0.2,
        seed=5,
    )
    base.update(kw)
    return CampaignSpec(**base)  # type: ignore[arg-type]


def test_suppression_and_contact_cap(tmp_path: Path) -> None:
    frame = _frame()
    registry = Registry(f"sqlite:///{tmp_path / 'c.db'}")
    first = _record(registry, _spec("a"), frame)
    members = registry.members(first)
    assert len(members) == 150 and [m.rank for m in members] == list(range(1, 151))
    # Each member gets the reason of its own row, ranked by the score.
    assert all(m.reason == f"reason {int(m.customer_id[1:])}" for m in members)
    scores = [m.score for m in members]
    assert scores == sorted(scores, reverse=True)
    churned = set(frame.customer_id[frame.stage == "churned"])
    assert not churned & {m.customer_id for m in members}
    # Same measure while the first runs: nobody from either group of the first list.
    second = _record(registry, _spec("b", max_members=None), frame)
    overlap = {m.customer_id for m in registry.members(first)} & {
        m.customer_id for m in registry.members(second)
    }
    assert not overlap
    # A product list may take them, but the contact cap (1 per month) stops the treated ones.
    third = _record(
        registry,
        _spec("c", scene="product", product="credit_card", select="aum > 0", max_members=None),
        frame,
        cap=1,
    )
    treated_before = {m.customer_id for m in registry.members(first, "treatment")}
    third_ids = {m.customer_id for m in registry.members(third)}
    assert not third_ids & treated_before
    assert third_ids & {m.customer_id for m in registry.members(first, "control")}
    holders = set(frame.customer_id[frame.holds_credit_card == 1])
    assert not third_ids & holders
    with pytest.raises(CampaignError, match="leaves 0 customer"):
        _record(registry, _spec("d", select="churn_probability > 2"), frame)
    with pytest.raises(CampaignError, match="--rank-by names unknown field 'aumm'"):
        _record(registry, _spec("e", rank_by="aumm"), frame)
    # The export holds the treatment group only.
    out = tmp_path / "list.csv"
    n = export_treatment(registry, first, out)
    exported = pd.read_csv(out)
    assert n == len(exported) == len(registry.members(first, "treatment"))
    assert set(exported.customer_id) == treated_before and "why" in exported.columns


def _concurrent_writers(url: str) -> None:
    frame = _frame(600)
    registries = [Registry(url) for _ in range(4)]
    ids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def write(k: int) -> None:
        try:
            barrier.wait()
            ids.append(_record(registries[k], _spec(f"w{k}", max_members=None), frame))
        except CampaignError:
            pass  # a later writer may find nobody left: that is the rule working
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert ids
    seen: set[str] = set()
    for campaign_id in ids:
        members = {m.customer_id for m in registries[0].members(campaign_id)}
        assert not seen & members
        seen |= members
    for r in registries:
        r.close()


def test_concurrent_writers_never_double_enrol_sqlite(tmp_path: Path) -> None:
    _concurrent_writers(f"sqlite:///{tmp_path / 'c.db'}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    try:
        socket.create_connection(POSTGRES, timeout=1).close()
    except OSError:
        pytest.skip(f"PostgreSQL is not running on {POSTGRES[0]}:{POSTGRES[1]}")
    import sqlalchemy as sa

    name = f"clm_campaigns_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@{POSTGRES[0]}:{POSTGRES[1]}/postgres",
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as con:
        con.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+psycopg://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
    finally:
        with admin.connect() as con:
            con.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.integration
def test_concurrent_writers_never_double_enrol_postgres(postgres_url: str) -> None:
    _concurrent_writers(postgres_url)


def test_reasons_read_like_words() -> None:
    from campaigns.reasons import phrase

    assert phrase("days_since_last_txn", 45.0) == "no transaction for 45 days"
    assert phrase("salary_stopped_flag", 1.0) == "salary has stopped arriving"
    assert phrase("stage_code", 3.0) == "lifecycle stage: declining"
    assert phrase("holds_credit_card", 0.0) == "no credit card yet"
    assert phrase("txn_count_1m", 1.0) == "only 1 transaction last month"
    # A feature without a phrase falls back to its catalogue definition.
    assert phrase("net_flow_6m", 10.0).startswith("inflow - outflow in the last 6 month")


def test_execute_refuses_another_bank(tmp_path: Path) -> None:
    from campaigns.lists import BANK_KEYS
    from features.simulation.execution import ExecutionError
    from features.simulator import run_simulation
    from tests.fixtures.bank import make_settings

    settings = make_settings(tmp_path)
    registry = Registry.for_settings(settings)
    origin = dict(
        zip(BANK_KEYS, ("simulator", 7, 2000, 18, "2024-01", "baseline", None, None), strict=True)
    )
    campaign_id = record_campaign(
        registry,
        _spec("x"),
        _month(_frame()),
        monthly_cap=2,
        running_days=90,
        reasons=lambda rows: [""] * len(rows),
        bank=origin,
    )
    ask = dict(customers=2000, months=21, seed=7, start_month="2024-01", progress=False)
    with pytest.raises(ExecutionError, match=r"seed 8 \(the list's bank: 7\)"):
        run_simulation(settings, **{**ask, "seed": 8}, execute=campaign_id)
    with pytest.raises(ExecutionError, match="shorter than the bank"):
        run_simulation(settings, **{**ask, "months": 12}, execute=campaign_id)
    with pytest.raises(ExecutionError, match="contact month is after the simulated period"):
        run_simulation(settings, **{**ask, "months": 18}, execute=campaign_id)
    # A list drawn on a bank's own data is executed by the bank's CRM, not the simulator.
    bank_list = record_campaign(
        registry,
        _spec("y", scene="product", product="credit_card", select="aum > 0"),
        _month(_frame()),
        monthly_cap=5,
        running_days=90,
        reasons=lambda rows: [""] * len(rows),
        bank=None,
    )
    with pytest.raises(ExecutionError, match="through your CRM"):
        run_simulation(settings, **ask, execute=bank_list)
    assert not settings.raw_dir.exists()  # nothing written
