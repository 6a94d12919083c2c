"""`clm features build | apply | materialize`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from clm.context import State, user_errors

features_app = typer.Typer(
    help="Feature tables, labels and the Feast feature store.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")


def _say(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


class Engine(StrEnum):
    """Where the feature build and batch scoring run (DESIGN.md, Engines)."""

    duckdb = "duckdb"
    spark = "spark"


@features_app.command("build")
def build(
    ctx: typer.Context,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="duckdb: one process (default); spark: the same SQL on Spark "
            "(spark.master in mlflow.yaml; docs/scale.md).",
        ),
    ] = Engine.duckdb,
) -> None:
    """Build the feature tables and labels from the raw tables (DuckDB SQL, or Spark)."""
    state: State = ctx.obj
    with user_errors():
        if engine is Engine.spark:
            from features.spark_engine import run_build_spark as run_build
        else:
            from features.pipeline import run_build

        summary = run_build(state.settings)
        _say(
            f"features: {summary['rows']:,} rows ({summary['customers']:,} customers x "
            f"{len(summary['snapshots'])} snapshots, {len(summary['features'])} features), "
            f"{summary['labelled_rows']:,} labelled, in {summary['seconds']:.1f}s -> {state.settings.feature_dir}"
        )


@features_app.command("apply")
def apply(ctx: typer.Context) -> None:
    """Register the Feast definitions (feast apply) for the configured profile."""
    state: State = ctx.obj
    with user_errors():
        import sys

        from clm.progress import step_progress

        # Importing Feast and planning the registry takes several seconds: show the step.
        with step_progress("feast apply", None, sys.stderr.isatty(), transient=True):
            from features.store import run_apply

            run_apply(state.settings)
        s = state.settings.features
        _say(f"feast apply: project {s.project!r}, profile {s.profile}")


@features_app.command("materialize")
def materialize(
    ctx: typer.Context,
    full: Annotated[
        bool, typer.Option("--full", help="Reload everything instead of incrementally.")
    ] = False,
) -> None:
    """Load the latest feature values into the online store (incremental by default)."""
    state: State = ctx.obj
    with user_errors():
        import sys

        from clm.progress import step_progress

        with step_progress("loading the online store", None, sys.stderr.isatty(), transient=True):
            from features.store import run_materialize

            run_materialize(state.settings, full=full)
        _say(
            f"online store loaded ({'full' if full else 'incremental'}, profile {state.settings.features.profile})"
        )
