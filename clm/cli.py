"""`clm`: a thin command line over the packages. Heavy imports happen inside commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from clm.commands import (
    campaign_cmd,
    data,
    features_cmd,
    monitoring_cmd,
    serving_cmd,
    status,
    training_cmd,
)
from clm.context import State

# Options of the whole program that a user may also type after the subcommand
# (`clm simulate --home X`): they are moved in front of it before parsing.
GLOBAL_OPTIONS = ("--home", "--config")


class _HelpWithoutTypePlaceholders:
    """`--help` shows what to type, not Python types: flags (`--full`, `--help`) take no
    value, so nothing follows them; a free-text value without a metavar of its own shows its
    name (`--select SELECT`), not `<str>`. Choices (Literal types) list themselves."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.metavar is not None:
                continue
            if getattr(param, "is_bool_flag", False):
                param.metavar = ""
            elif param.display_type_rich(ctx) == "<str>":
                if getattr(param, "param_type_name", "") == "argument":
                    # An argument's name already says what to type (its metavar would
                    # rename it): show no type at all.
                    param.display_type_rich = _no_type
                else:
                    param.metavar = (param.name or "value").upper()
        return params


def _no_type(ctx: Any) -> None:
    return None


class ClmCommand(_HelpWithoutTypePlaceholders, TyperCommand):
    """Every `clm` command (set on all of them by `use_our_classes`)."""


class ClmGroup(_HelpWithoutTypePlaceholders, TyperGroup):
    """`clm` and its command groups; the root also accepts the global options anywhere."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(args)
        return super().parse_args(ctx, args)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move `--home X` / `--config=X` found after the subcommand to the front (not past `--`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            if "=" in arg:
                front.append(arg)
            else:
                front.extend(args[i : i + 2])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def use_our_classes(app: typer.Typer) -> None:
    """Give every command and group registered on `app` (recursively) our classes."""
    for command in app.registered_commands:
        if _unset(command.cls, TyperCommand):
            command.cls = ClmCommand
    for group in app.registered_groups:
        sub = group.typer_instance
        assert sub is not None
        if _unset(group.cls, TyperGroup) and _unset(sub.info.cls, TyperGroup):
            group.cls = ClmGroup
        use_our_classes(sub)


def _unset(cls: Any, default: type) -> bool:
    """Typer's own default (None, a DefaultPlaceholder or the default class), not a choice."""
    from typer.models import DefaultPlaceholder

    return cls is None or cls is default or isinstance(cls, DefaultPlaceholder)


app = typer.Typer(
    name="clm",
    cls=ClmGroup,
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
            "--config",
            help="Settings file (default: $CLM_CONFIG, ./mlflow.yaml, the repo's). "
            "Accepted before or after the command.",
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Workspace folder for all run state (default: $CLM_HOME or ./workspace). "
            "Accepted before or after the command.",
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
status.register(app)

from clm.commands import demo  # noqa: E402  (the demo runs the others)

demo.register(app)

use_our_classes(app)


if __name__ == "__main__":  # pragma: no cover
    app()
