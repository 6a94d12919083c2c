"""`clm serve` and `clm score-batch`."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from clm.commands.features_cmd import Engine
from clm.context import State, user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("score-batch")(score_batch)


def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port.")] = 3000,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface to bind.")
    ] = "127.0.0.1",
) -> None:
    """Start the BentoML scoring service (needs CLM_API_KEYS; CLM_ADMIN_TOKEN for admin routes).

    Serves every family whose champion loads; GET /models says why any other is absent."""
    state: State = ctx.obj
    with user_errors():
        from serving.launch import run_serve

        run_serve(state.settings, host=host, port=port)


def score_batch(
    ctx: typer.Context,
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            metavar="YYYY-MM-DD",
            help="A month end: its snapshot is scored. Another day scores the latest month end "
            "before it (with a warning).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file (parquet or CSV, --format).")],
    output_format: Annotated[
        Literal["parquet", "csv"],
        typer.Option(
            "--format",
            help="parquet: the prediction log's columns with every feature; csv: the scores "
            "only, sorted by --by, for spreadsheets.",
        ),
    ] = "parquet",
    top: Annotated[
        int | None,
        typer.Option("--top", min=1, metavar="N", help="Only the N customers highest in --by."),
    ] = None,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            metavar="FIELD",
            help="The score to rank by: churn_probability, propensity_<product> or "
            "stage_prob_<stage>.",
        ),
    ] = "churn_probability",
    compiled: Annotated[
        bool | None,
        typer.Option(
            "--compiled/--no-compiled",
            help="Score with compiled trees (compiled once per model version, cached under "
            "$CLM_HOME/compiled; equal to LightGBM within 1e-9) or with LightGBM itself. "
            "Default: compile from 200,000 customers, else use trees already compiled.",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Families to score, comma-separated (e.g. churn,stage); each needs a champion. "
            "Default: every family that has one (the others are skipped, with the reason).",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="duckdb: this process (default); spark: inside Spark with LightGBM "
            "(spark.master in mlflow.yaml; docs/scale.md).",
        ),
    ] = Engine.duckdb,
) -> None:
    """Score every customer with the champion models from the offline store."""
    state: State = ctx.obj
    with user_errors():
        from clm.families import parse_families
        from serving.batch import parse_as_of

        families = parse_families(models) if models is not None else None
        day = parse_as_of(as_of)
        month_end = last_month_end(day)
        if month_end != day:
            say(
                f"[yellow]warning:[/] --as-of {day} is not a month end: scoring the snapshot "
                f"of {month_end} (or the latest one before it)"
            )
        if engine is Engine.spark:
            from clm.errors import ClmError
            from serving.spark_batch import run_score_batch_spark

            if compiled:
                raise ClmError("--compiled is for the default engine; Spark scores with LightGBM")
            summary = run_score_batch_spark(
                state.settings,
                as_of=as_of,
                out=out,
                output_format=output_format,
                top=top,
                by=by,
                families=families,
            )
        else:
            from serving.batch import run_score_batch

            summary = run_score_batch(
                state.settings,
                as_of=as_of,
                out=out,
                compiled=compiled,
                families=families,
                output_format=output_format,
                top=top,
                by=by,
            )
    for family, why in summary["skipped"].items():
        typer.echo(f"{family}: skipped, {why}", err=True)
    fallback = {
        k: v
        for k, v in summary["compiled"].items()
        if v.startswith("lightgbm") and not v.endswith("not compiled yet")
    }
    for booster, why in fallback.items():
        say(f"[yellow]warning:[/] {booster} scored by LightGBM, not compiled ({why})")
    snapshot = snapshot_date(summary["snapshot_ts"])
    typer.echo(
        f"scored {summary['rows']:,} customers at the {snapshot} snapshot with "
        f"{versions_text(summary['model_versions'])} in {summary['seconds']:.1f} s "
        f"-> {summary['out']}"
    )


def say(message: str) -> None:
    """A line on stderr (rich markup), leaving stdout to the command's result."""
    from rich.console import Console

    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


def last_month_end(day: date) -> date:
    """`day` itself when it ends its month, else the month end before it."""
    following = day + timedelta(days=1)
    return day if following.month != day.month else day.replace(day=1) - timedelta(days=1)


def snapshot_date(snapshot_ts: str) -> date:
    """A snapshot's timestamp is the first instant after its month end: name the month end."""
    return (datetime.fromisoformat(snapshot_ts) - timedelta(microseconds=1)).date()


def versions_text(versions: dict[str, str]) -> str:
    """{"churn": "4", ...} -> "churn v4, propensity v2, stage v3"."""
    return ", ".join(f"{family} v{version}" for family, version in versions.items())
