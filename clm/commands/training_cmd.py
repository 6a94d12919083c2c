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

        report = run_train(state.settings, model=model, trials=trials)
        _print_summary(report)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_summary(report) -> None:  # type: ignore[no-untyped-def]
    """One line per family: version and alias, the model beside its baselines, why skipped."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    for family, r in report.results.items():
        alias = "champion" if r.champion else "challenger only"
        b = r.baselines
        if family == "stage":
            vs = (
                f"log loss {_fmt(r.test.get('log_loss'))} (stays-in-stage {_fmt(b.get('baseline_log_loss'))}), "
                f"macro-F1 {_fmt(r.test.get('macro_f1'))} (stays-in-stage {_fmt(b.get('baseline_macro_f1'))})"
            )
        else:
            prefix = "mean_" if family == "propensity" else ""
            vs = f"{prefix}AUC {_fmt(r.test.get(prefix + 'auc'))}, recency {_fmt(b.get(prefix + 'recency_auc'))}"
            if family == "churn":
                vs += f", BG/NBD {_fmt(b.get('bgnbd_auc'))}"
            oracle = r.oracle.get(f"oracle_{prefix}auc")
            if oracle is not None:
                vs += f", oracle {_fmt(oracle)}"
        console.print(
            f"{family}: {r.registered_name} version {r.version}, {alias}; test {vs}",
            highlight=False,
        )
        for gate in r.failed_gates:
            console.print(
                f"{family}: [red]FAILED[/] {gate['gate']}: {gate['reason']}", highlight=False
            )
    for family, why in report.skipped.items():
        console.print(f"{family}: skipped, {why}", highlight=False)


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
