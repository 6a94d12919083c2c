"""`clm train`, `clm promote`, `clm rollback`."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from clm.context import State, user_errors

Family = Literal["churn", "propensity", "stage"]


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("promote")(promote)
    app.command("rollback")(rollback)


def train(
    ctx: typer.Context,
    model: Annotated[
        Literal["churn", "propensity", "stage", "all"],
        typer.Argument(help="The model family to train, or all three."),
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
    with user_errors():
        from training.pipeline import run_train

        run_train(state.settings, model=model, trials=trials)


def promote(
    ctx: typer.Context,
    model: Annotated[Family, typer.Argument(help="The model family.")],
) -> None:
    """Promote the challenger to champion if it passes the gates of mlflow.yaml (exit 1 if not)."""
    state: State = ctx.obj
    with user_errors():
        from training.registry import run_promote

        run_promote(state.settings, model=model)


def rollback(
    ctx: typer.Context,
    model: Annotated[Family, typer.Argument(help="The model family.")],
) -> None:
    """Move the champion alias back to the previous champion version, and record it."""
    state: State = ctx.obj
    with user_errors():
        from training.registry import run_rollback

        run_rollback(state.settings, model=model)
