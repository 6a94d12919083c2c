"""`clm demo`: simulate, build, apply, train, serve, score over HTTP, report."""

from __future__ import annotations

from typing import Annotated

import typer

from clm.context import State, user_errors


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    customers: Annotated[
        int, typer.Option("--customers", help="Size of the simulated bank.")
    ] = 3000,
    months: Annotated[int, typer.Option("--months", help="Months of history.")] = 18,
    trials: Annotated[int, typer.Option("--trials", help="Optuna trials per model.")] = 5,
) -> None:
    """Run the whole loop end to end on a small simulated bank and say where everything is."""
    state: State = ctx.obj
    with user_errors():
        from clm.demo import run_demo

        run_demo(state.settings, customers=customers, months=months, trials=trials)
