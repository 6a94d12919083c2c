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


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the packages' actionable errors into a message and exit code 2 (no traceback)."""
    from clm.errors import ClmError

    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        yield
    except ClmError as exc:
        fail(str(exc), exc.exit_code)
