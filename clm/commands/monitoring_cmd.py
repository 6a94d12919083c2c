"""`clm monitor drift | performance | report`: risk-team outputs (exit 1 when red)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clm.context import State, user_errors

monitor_app = typer.Typer(
    help="Drift, performance and risk reports for model risk management.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")


@monitor_app.command("drift")
def drift(
    ctx: typer.Context,
    model: Annotated[
        Literal["churn", "propensity", "stage"] | None,
        typer.Option("--model", help="One model family (default: every family with a champion)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="30d|START:END",
            help="Prediction-log window, e.g. 30d, or START:END dates.",
        ),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option(
            "--current", help="A batch-scored parquet file to compare instead of the log."
        ),
    ] = None,
    traffic: Annotated[
        str,
        typer.Option(
            "--traffic",
            help="Log rows judged: production (/score and batch, default), score_features, shadow or all.",
        ),
    ] = "production",
) -> None:
    """PSI/CSI against the champion's reference sample, data quality, Evidently report; exit 1 if red."""
    state: State = ctx.obj
    with user_errors():
        from monitoring.drift import run_drift

        code = run_drift(
            state.settings, model=model, window=window, current=current, traffic=traffic
        )
    raise typer.Exit(code)


ScoresOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--scores",
        help="Back-test a batch-scored file (`clm score-batch --out`), dated by its snapshot; repeatable.",
    ),
]
AsOfOption = Annotated[
    list[str] | None,
    typer.Option(
        "--as-of",
        help="Back-test the month end DATE: the champions score that snapshot first; repeatable.",
    ),
]


@monitor_app.command("performance")
def performance(
    ctx: typer.Context,
    model: Annotated[
        Literal["churn", "propensity", "stage"] | None,
        typer.Option("--model", help="One model family (default: every family with a champion)."),
    ] = None,
    scores: ScoresOption = None,
    as_of: AsOfOption = None,
) -> None:
    """AUC, KS, Gini and calibration on matured outcomes, AUC estimated before them; exit 1 if red."""
    state: State = ctx.obj
    with user_errors():
        from monitoring.performance import run_performance

        code = run_performance(state.settings, model=model, scores=scores or [], as_of=as_of or [])
    raise typer.Exit(code)


@monitor_app.command("report")
def report(
    ctx: typer.Context,
    model: Annotated[
        Literal["churn", "propensity", "stage"] | None,
        typer.Option("--model", help="One model family (default: every family with a champion)."),
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            metavar="YYYY-MM|START:END",
            help="YYYY-MM, or START:END dates (default: the last 30 days of the log).",
        ),
    ] = None,
    scores: ScoresOption = None,
    as_of: AsOfOption = None,
) -> None:
    """One self-contained HTML risk report per model per period, under $CLM_HOME/reports."""
    state: State = ctx.obj
    with user_errors():
        from monitoring.report import run_report

        code = run_report(
            state.settings, model=model, period=period, scores=scores or [], as_of=as_of or []
        )
    raise typer.Exit(code)
