"""`clm`: a thin command line over the packages. Heavy imports happen inside commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clm.commands import (
    campaign_cmd,
    data,
    features_cmd,
    monitoring_cmd,
    serving_cmd,
    training_cmd,
)
from clm.context import State

app = typer.Typer(
    name="clm",
    help="Customer lifecycle scoring for retail banks: simulate or ingest data, build "
    "Feast features, train and promote models, serve them, monitor drift.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Settings file (default: $CLM_CONFIG, ./mlflow.yaml, the repo's)."
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="Workspace folder for all run state (default: $CLM_HOME or ./workspace)."
        ),
    ] = None,
) -> None:
    ctx.obj = State(config=config, home=home)


data.register(app)
features_cmd.register(app)
training_cmd.register(app)
serving_cmd.register(app)
monitoring_cmd.register(app)
campaign_cmd.register(app)

from clm.commands import demo  # noqa: E402  (the demo runs the others)

demo.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
