"""`clm serve` and `clm score-batch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clm.context import State, user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("score-batch")(score_batch)


def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
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
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Families to score, comma-separated (e.g. churn,stage); each needs a champion. "
            "Default: every family that has one (the others are skipped, with the reason).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score every customer with the champion models from the offline store."""
    state: State = ctx.obj
    with user_errors():
        from clm.families import parse_families
        from serving.batch import run_score_batch

        families = parse_families(models) if models is not None else None
        summary = run_score_batch(
            state.settings, as_of=as_of, out=out, compiled=compiled, families=families
        )
    for family, why in summary["skipped"].items():
        typer.echo(f"{family}: skipped, {why}", err=True)
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
