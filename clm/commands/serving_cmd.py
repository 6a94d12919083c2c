"""`clm serve` and `clm score-batch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clm.commands.features_cmd import Engine
from clm.context import State, user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("score-batch")(score_batch)


def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Start the BentoML scoring service (needs CLM_API_KEYS; CLM_ADMIN_TOKEN for admin routes)."""
    state: State = ctx.obj
    with user_errors():
        from serving.launch import run_serve

        run_serve(state.settings, host=host, port=port)


def score_batch(
    ctx: typer.Context,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Snapshot date, YYYY-MM-DD (the month end to score).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output parquet file.")],
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
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="duckdb: this process (default); spark: inside Spark with LightGBM "
            "(spark.master in mlflow.yaml; docs/scale.md).",
        ),
    ] = Engine.duckdb,
) -> None:
    """Score every customer with the three champion models from the offline store."""
    state: State = ctx.obj
    with user_errors():
        if engine is Engine.spark:
            from clm.errors import ClmError
            from serving.spark_batch import run_score_batch_spark

            if compiled:
                raise ClmError("--compiled is for the default engine; Spark scores with LightGBM")
            summary = run_score_batch_spark(state.settings, as_of=as_of, out=out)
        else:
            from serving.batch import run_score_batch

            summary = run_score_batch(state.settings, as_of=as_of, out=out, compiled=compiled)
    fallback = {
        k: v
        for k, v in summary["compiled"].items()
        if v.startswith("lightgbm") and not v.endswith("not compiled yet")
    }
    for booster, why in fallback.items():
        typer.echo(f"warning: {booster} scored by LightGBM, not compiled ({why})", err=True)
    typer.echo(
        f"scored {summary['rows']:,} customers at snapshot {summary['snapshot_ts']} "
        f"with versions {summary['model_versions']} in {summary['seconds']} s -> {summary['out']}"
    )
