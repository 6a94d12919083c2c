"""`clm simulate`: a retail bank whose customers' lifecycle truth is known.

The bank is simulated in chunks of customers (each with its own child seed), one
month at a time, and written as the raw tables of docs/contracts.md under
`settings.raw_dir`, with the ground truth (`truth/`, never read by features) and
`meta.json` (period, seed, scenario, oracle AUCs). The whole raw directory is
built in a temporary sibling and swapped in at the end.

Conventions worth knowing downstream:
- Balances are the customer's position per product: assets positive, debts
  (`credit_card`, `consumer_loan`, `mortgage`) negative.
- Holdings open and close on days 2..27 of a month, so "within 90 days of the
  snapshot" is exactly "in the three months after the snapshot month".
- Truth: `churn_hazard_90d` and `p_adopt_<product>_90d` are 0 for a customer
  in the month it churns; `p_adopt_<product>_90d` is null while the product is
  held. Truth rows exist for every customer active in the month (including the
  churn month); the rate shock is unforeseen, so truth before the shock month
  equals the baseline's.
- Onboarding (campaign `onboarding`): new customers randomised 50/50; contact
  lowers honeymoon churn for middle-class, young-parent and young-digital
  customers who are not payroll customers, and does nothing for the others.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from clm import atomic
from clm.domain import PROPENSITY_PRODUCTS, SCENARIOS
from clm.errors import ClmError
from clm.progress import step_progress
from clm.settings import Settings

CHUNK_CUSTOMERS = 50_000


class SimulationError(ClmError):
    """Bad simulation parameters."""


def run_simulation(
    settings: Settings,
    *,
    customers: int,
    months: int,
    seed: int,
    scenario: str = "baseline",
    shock_month: int | None = None,
    start_month: str = "2024-01",
    progress: bool = True,
    execute: int | None = None,
) -> dict[str, Any]:
    """Simulate the bank and write its raw tables; returns the meta dict (also raw/meta.json).

    `execute`: a campaign id; the bank it was drawn on is reproduced and its treatment
    group contacted (features/simulation/execution.py)."""
    if scenario == "retail_purchases":  # transaction-only log: features/simulation/retail.py
        from features.simulation.retail import run_retail

        if execute is not None:
            raise SimulationError(
                "--execute needs the full simulated bank (campaigns contact its customers); "
                "retail_purchases is a transaction-only log"
            )
        _validate(customers, months, seed, "baseline", shock_month, start_month)
        retail = run_retail(
            settings, customers=customers, months=months, seed=seed, start_month=start_month
        )
        if progress:
            _summary(retail, settings.raw_dir)
        return retail
    from features.simulation import tables
    from features.simulation.bank import ChunkBank
    from features.simulation.execution import chunk_ranges, load_executor
    from features.simulation.oracle import StreamingAUC
    from features.simulation.population import Calendar, draw_population, signup_months

    start, shock = _validate(customers, months, seed, scenario, shock_month, start_month)
    began = time.perf_counter()
    calendar = Calendar(start, months)
    executor = None
    if execute is not None:
        executor = load_executor(settings, execute, calendar.label(0))
        executor.check(
            seed=seed,
            customers=customers,
            months=months,
            start_month=calendar.label(0),
            scenario=scenario,
            shock_month=shock,
        )
    signups = signup_months(_rng(seed, 0, 0), customers, months)
    total = len(signups)
    raw_dir = settings.raw_dir
    rows = {name: 0 for name in tables.SCHEMAS}
    churn_auc = StreamingAUC()
    adopt_auc = {p: StreamingAUC() for p in PROPENSITY_PRODUCTS}
    at_risk = churned = 0
    customer_parts, holding_parts, campaign_parts = [], [], []
    # An executed campaign's bank keeps the original run's chunks (same generators).
    chunks = chunk_ranges(signups, executor.origin.months if executor else months, CHUNK_CUSTOMERS)
    tmp = atomic.new_staging_dir(raw_dir)
    try:
        with step_progress("simulating the bank", len(chunks) * months, progress) as advance:
            for part, (lo, hi) in enumerate(chunks):
                numbers = np.arange(lo, hi)
                rng = _rng(seed, 1, part)
                pop = draw_population(rng, numbers, signups[numbers])
                bank = ChunkBank(pop, rng, _rng(seed, 2, part), calendar, shock)
                ids = tables.customer_ids(numbers)
                for m in range(months):
                    act = bank.month(m)
                    if executor is not None:
                        executor.after_month(bank, ids, m, calendar)
                    label = calendar.label(m)
                    first_day = int(calendar.month_start(m))
                    month_end = int(calendar.month_end(m))
                    written = {
                        "transactions": tables.transactions(
                            ids,
                            first_day,
                            *(
                                np.concatenate(x) if x else np.zeros(0)
                                for x in (
                                    act.txn_idx,
                                    act.txn_day,
                                    act.txn_amount,
                                    act.txn_category,
                                    act.txn_channel,
                                    act.txn_product,
                                )
                            ),
                        )
                        if act.txn_idx
                        else _empty(tables.SCHEMAS["transactions"]),
                        "app_sessions": tables.sessions(
                            ids, first_day, act.session_idx, act.session_day, act.session_duration
                        ),
                        "balances": tables.balances(
                            ids, month_end, act.balance_idx, act.balance_product, act.balance
                        ),
                        "truth": tables.truth(
                            ids,
                            month_end,
                            act.truth_idx,
                            act.truth_stage,
                            act.truth_engagement,
                            act.truth_churn,
                            act.truth_adopt,
                        ),
                    }
                    for name, table in written.items():
                        tables.write_part(table, tmp, name, label, part)
                        rows[name] += table.num_rows
                    advance()
                customer_parts.append(
                    tables.customers(
                        ids, pop, calendar.month_start(pop.signup_month) + pop.signup_day - 1
                    )
                )
                holding_parts.append(_holdings(tables, ids, bank))
                campaign_parts.append(_campaigns(tables, ids, bank, calendar))
                _score_oracle(bank, months, churn_auc, adopt_auc)
                at_risk += int(bank.alive_months.sum())
                churned += int(bank.churn_events.sum())
        for name, parts in (
            ("customers", customer_parts),
            ("holdings", holding_parts),
            ("campaigns", campaign_parts),
        ):
            table = _concat(parts, tables.SCHEMAS[name])
            tables.write(table, tmp / f"{name}.parquet")
            rows[name] = table.num_rows
        if executor is not None:
            tables.write(executor.truth_table(), tmp / "campaign_truth.parquet")
        monthly = churned / max(at_risk, 1)
        meta: dict[str, Any] = {
            "source": "simulator",
            "seed": seed,
            "customers": customers,
            "customers_total": total,
            "months": months,
            "start_month": calendar.label(0),
            "end_month": calendar.label(months - 1),
            "scenario": scenario,
            "shock_month": calendar.label(shock) if shock is not None else None,
            "shock_month_index": shock,
            "annual_churn_rate": round(1 - (1 - monthly) ** 12, 4),
            "oracle_auc": {"churn_90d": _round(churn_auc.auc())}
            | {f"adopt_{p}_90d": _round(a.auc()) for p, a in adopt_auc.items()},
            "oracle_positives": {"churn_90d": churn_auc.positives}
            | {f"adopt_{p}_90d": a.positives for p, a in adopt_auc.items()},
            "rows": rows,
            "executed_campaign": executor.meta() if executor is not None else None,
            "seconds": round(time.perf_counter() - began, 1),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        atomic.replace_dir(tmp, raw_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        _summary(meta, raw_dir)
    return meta


def _validate(
    customers: int, months: int, seed: int, scenario: str, shock_month: int | None, start_month: str
) -> tuple[np.datetime64, int | None]:
    if scenario not in SCENARIOS:
        raise SimulationError(f"unknown scenario {scenario!r}; use one of: {', '.join(SCENARIOS)}")
    match = re.fullmatch(r"(\d{4})-(\d{2})", start_month or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise SimulationError(
            f"start month {start_month!r} is not a month; write it as YYYY-MM, e.g. 2024-01"
        )
    if customers < 1:
        raise SimulationError(f"customers must be at least 1 (got {customers})")
    if months < 4:
        raise SimulationError(
            f"months must be at least 4 so that 90-day outcomes exist (got {months})"
        )
    if seed < 0:
        raise SimulationError(f"seed must be a non-negative integer (got {seed})")
    if scenario == "baseline":
        if shock_month is not None:
            raise SimulationError("--shock-month only applies with --scenario rate_shock")
        return np.datetime64(start_month, "M"), None
    shock = (2 * months) // 3 if shock_month is None else shock_month
    if not 1 <= shock < months:
        raise SimulationError(
            f"shock month {shock} must be between 1 and {months - 1} (0-based month index)"
        )
    return np.datetime64(start_month, "M"), shock


def _rng(seed: int, stream: int, part: int) -> np.random.Generator:
    """Independent generators: stream 0 = arrivals, 1 = a chunk's bank, 2 = its rate shock."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, part)))
    )


def _holdings(tables, ids, bank):  # type: ignore[no-untyped-def]
    closed = bank.closed_holdings
    idx = [c[0] for c in closed]
    prod = [c[1] for c in closed]
    opened = [c[2] for c in closed]
    close = [c[3] for c in closed]
    still_idx, still_prod = np.nonzero(bank.held)
    idx.append(still_idx)
    prod.append(still_prod)
    opened.append(bank.open_day[still_idx, still_prod])
    close.append(np.zeros(len(still_idx), np.int64))
    is_open = np.concatenate(
        [np.zeros(sum(len(i) for i in idx[:-1]), bool), np.ones(len(still_idx), bool)]
    )
    return tables.holdings(
        ids,
        np.concatenate(idx),
        np.concatenate(prod).astype(np.int64),
        np.concatenate(opened),
        np.concatenate(close),
        is_open,
    )


def _campaigns(tables, ids, bank, calendar):  # type: ignore[no-untyped-def]
    """Campaign contacts; `responded` = the product was opened within 60 days after contact."""
    if not bank.campaign_rows:
        return _empty(tables.SCHEMAS["campaigns"])
    idx = np.concatenate([r[0] for r in bank.campaign_rows])
    month = np.concatenate([r[1] for r in bank.campaign_rows])
    contact = calendar.month_start(month) + np.concatenate([r[2] for r in bank.campaign_rows]) - 1
    name = np.concatenate([np.full(len(r[0]), r[3], dtype=object) for r in bank.campaign_rows])
    product = np.concatenate([np.full(len(r[0]), r[4]) for r in bank.campaign_rows])
    group = np.concatenate([r[5] for r in bank.campaign_rows])
    channel = np.concatenate([np.full(len(r[0]), r[6]) for r in bank.campaign_rows])
    # First opening of the product after contact, found by binary search on (customer, product, day).
    if bank.adoptions:
        a_idx, a_prod, a_day = (np.concatenate([a[k] for a in bank.adoptions]) for k in range(3))
        keys = np.sort((a_idx * 16 + a_prod) * 100_000 + a_day)
    else:
        keys = np.zeros(0, np.int64)
    query = (idx * 16 + product) * 100_000 + contact
    pos = np.searchsorted(keys, query, side="right")
    # (A chunk of late arrivals may have campaigns but no adoption yet: no keys at all.)
    found = keys[np.minimum(pos, len(keys) - 1)] if len(keys) else np.full(len(query), -1)
    found = np.where(pos < len(keys), found, -1)
    responded = (found > query) & (found <= query + 60) & (product >= 0)
    response = np.where(responded, found % 100_000, -1)
    order = np.lexsort((idx, contact))
    return tables.campaigns(
        ids,
        idx[order],
        contact[order],
        name[order].tolist(),
        group[order],
        product[order],
        channel[order],
        responded[order],
        response[order],
    )


def _score_oracle(bank, months, churn_auc, adopt_auc) -> None:  # type: ignore[no-untyped-def]
    """Add the snapshots whose 90-day horizon lies inside the simulated period."""
    for m in range(months - 3):
        h = bank.truth_churn[:, m]
        ok = ~np.isnan(h)
        happened = (bank.churn_month > m) & (bank.churn_month <= m + 3)
        churn_auc.add(h[ok], happened[ok])
        opened = bank.opened[:, m + 1 : m + 4].any(axis=1)
        for j, auc in enumerate(adopt_auc.values()):
            p = bank.truth_adopt[:, m, j]
            ok = ~np.isnan(p)
            auc.add(p[ok], opened[ok, j])


def _concat(parts, schema):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.concat_tables(parts) if parts else schema.empty_table()


def _empty(schema):  # type: ignore[no-untyped-def]
    return schema.empty_table()


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _summary(meta: dict[str, Any], raw_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"Simulated bank ({meta['scenario']}, seed {meta['seed']})", show_header=False
    )
    table.add_row("customers", f"{meta['customers_total']:,} ({meta['customers']:,} at the start)")
    table.add_row(
        "period", f"{meta['start_month']} .. {meta['end_month']} ({meta['months']} months)"
    )
    if meta["shock_month"]:
        table.add_row("rate shock from", meta["shock_month"])
    table.add_row("annual churn rate", f"{meta['annual_churn_rate']:.1%}")
    for name, auc in meta["oracle_auc"].items():
        table.add_row(f"oracle AUC {name}", "-" if auc is None else f"{auc:.3f}")
    for name, n in meta["rows"].items():
        table.add_row(f"rows {name}", f"{n:,}")
    table.add_row("written to", str(raw_dir))
    table.add_row("seconds", str(meta["seconds"]))
    console.print(table)
