"""`clm train`, `clm promote`, `clm rollback`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from clm.context import State, user_errors


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("promote")(promote)
    app.command("rollback")(rollback)


def train(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="churn, propensity, stage, all, or uplift (campaigns).")
    ],
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            min=0,
            help="Optuna trials (default from mlflow.yaml; 0 = default parameters only).",
        ),
    ] = None,
) -> None:
    """Train on Feast training sets, log to MLflow, register a version as challenger (and champion if none)."""
    state: State = ctx.obj
    if model == "uplift":  # learned from executed campaigns (campaigns/uplift.py)
        with user_errors():
            from campaigns.uplift import run_train_uplift

            summary = run_train_uplift(state.settings)
        typer.echo(json.dumps(summary, indent=2))
        return
    with user_errors():
        from training.pipeline import run_train

        run_train(state.settings, model=model, trials=trials)


def promote(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="churn, propensity or stage.")],
) -> None:
    """Promote the challenger to champion if it passes the gates of mlflow.yaml (exit 1 if not)."""
    state: State = ctx.obj
    with user_errors():
        from training.registry import run_promote

        run_promote(state.settings, model=model)


def rollback(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="churn, propensity or stage.")],
) -> None:
    """Move the champion alias back to the previous champion version, and record it."""
    state: State = ctx.obj
    with user_errors():
        from training.registry import run_rollback

        run_rollback(state.settings, model=model)
