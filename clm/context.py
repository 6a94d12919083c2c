"""What every command gets: the settings, loaded once, and a uniform error exit."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from clm.settings import Settings


@dataclass
class State:
    config: Path | None = None
    home: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from clm.settings import Settings, SettingsError

            try:
                self._settings = Settings.load(config=self.config, home=self.home)
            except SettingsError as exc:
                fail(str(exc))
        assert self._settings is not None
        return self._settings


def fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


OUR_LOGGERS = ("clm", "features", "training", "serving", "monitoring")


def configure_output() -> None:
    """Quiet the libraries for a command-line run: our INFO lines, their warnings only.

    Only the CLI calls this (a library never configures logging itself).
    """
    import os
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*[Dd]eprecat.*")
    # Those filters are not enough: importing Feast inserts `simplefilter("once",
    # DeprecationWarning)` ahead of them, and ibis then printed a deprecation warning per
    # chunk of every training-set fetch. Whatever the filters say later, deprecation
    # notices are for library authors, not for someone running `clm`.
    if not getattr(warnings.showwarning, "_clm_quiet", False):
        shown = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
                return
            if "deprecat" in str(message).lower():
                return
            shown(message, category, filename, lineno, file, line)

        showwarning._clm_quiet = True  # type: ignore[attr-defined]
        warnings.showwarning = showwarning
    # MLflow's own tqdm bars would interleave with ours, and its INFO lines (uv files
    # copied, input example validated, ...) buried ours; its warnings still show.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the packages' actionable errors into a message and exit code 2 (no traceback)."""
    from clm.errors import ClmError

    configure_output()
    try:
        yield
    except ClmError as exc:
        fail(str(exc), exc.exit_code)
