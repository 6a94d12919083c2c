"""`clm simulate` and `clm ingest`: the raw tables of a bank."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clm.context import State, user_errors


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("ingest")(ingest)


def simulate(
    ctx: typer.Context,
    customers: Annotated[
        int,
        typer.Option(
            "--customers", "-n", min=1, help="Customers at the start (new ones arrive monthly)."
        ),
    ] = 2000,
    months: Annotated[
        int, typer.Option("--months", "-m", min=4, help="Months of history to simulate.")
    ] = 24,
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Random seed: the same seed gives the same bank.")
    ] = 7,
    scenario: Annotated[
        Literal["baseline", "rate_shock", "retail_purchases"],
        typer.Option(
            "--scenario",
            help="baseline; rate_shock: a competitor's rate move part-way through; "
            "retail_purchases: a transaction-only purchase log.",
        ),
    ] = "baseline",
    shock_month: Annotated[
        int | None,
        typer.Option(
            "--shock-month",
            help="rate_shock: month index (0-based) the competitor moves; default two thirds through.",
        ),
    ] = None,
    start_month: Annotated[
        str,
        typer.Option("--start-month", metavar="YYYY-MM", help="First simulated month, YYYY-MM."),
    ] = "2024-01",
    execute: Annotated[
        int | None,
        typer.Option(
            "--execute",
            help="Campaign id: rebuild the bank it was drawn on (same seed, more months) and "
            "contact its treatment group (docs/campaigns.md).",
        ),
    ] = None,
) -> None:
    """Write the raw tables of a simulated retail bank (and its ground truth) under $CLM_HOME/raw."""
    state: State = ctx.obj
    with user_errors():
        from features.simulator import run_simulation

        run_simulation(
            state.settings,
            customers=customers,
            months=months,
            seed=seed,
            scenario=scenario,
            shock_month=shock_month,
            start_month=start_month,
            execute=execute,
        )


def ingest(
    ctx: typer.Context,
    transactions: Annotated[
        Path | None,
        typer.Option(
            "--transactions",
            help="Transaction log, CSV or parquet (customer_id, timestamp, amount; more optional). "
            "Required except when only --contacts is given.",
        ),
    ] = None,
    customers: Annotated[
        Path | None,
        typer.Option(
            "--customers", help="Customer table, CSV or parquet (customer_id; more optional)."
        ),
    ] = None,
    holdings: Annotated[
        Path | None,
        typer.Option(
            "--holdings",
            help="Product holdings, CSV or parquet (customer_id, product, opened_date[, closed_date]).",
        ),
    ] = None,
    contacts: Annotated[
        Path | None,
        typer.Option(
            "--contacts",
            help="Who the bank's CRM contacted, CSV or parquet (customer_id, campaign_id, "
            "contacted_at[, channel]). Alone: replaces only the contacts of the existing raw tables.",
        ),
    ] = None,
    max_line_bytes: Annotated[
        int,
        typer.Option(
            "--max-line-bytes",
            min=1024,
            help="Longest CSV line accepted, in bytes (default 1 MiB); a longer line is an error.",
        ),
    ] = 1 << 20,
) -> None:
    """Import a bank's own data (docs/data-schema.md) into the raw tables; all or nothing.

    With --transactions: a full load replacing every raw table. With only --contacts:
    the CRM's contact log is added to (or replaced in) the existing raw tables.
    """
    state: State = ctx.obj
    with user_errors():
        from features.ingest import run_ingest

        run_ingest(
            state.settings,
            transactions=transactions,
            customers=customers,
            holdings=holdings,
            contacts=contacts,
            max_line_bytes=max_line_bytes,
        )
