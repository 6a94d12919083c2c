"""The progress bar every long step shows (simulate, ingest, features build, training-set
fetch, tuning, fitting, batch scoring, monitoring).

One look everywhere: description, bar, done/total and elapsed time, on stderr so
that a command's own output (JSON, a table, a file name) stays clean on stdout.
With an unknown total the bar pulses and shows no count. rich is imported only
when a bar is shown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

__all__ = ["Advance", "ParallelBars", "step_progress"]


class Advance(Protocol):
    """Moves the bar `steps` forward (0 to only change the description)."""

    def __call__(self, steps: float = 1, *, description: str | None = None) -> None: ...


def _no_progress(steps: float = 1, *, description: str | None = None) -> None:
    return None


@contextlib.contextmanager
def step_progress(
    description: str, total: float | None, enabled: bool, *, transient: bool = False
) -> Iterator[Advance]:
    """A bar over `total` steps (None: unknown) that yields `advance`; a no-op when `enabled`
    is off. `transient` bars disappear when done (steps inside a larger command)."""
    if not enabled:
        yield _no_progress
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    with Progress(*columns, transient=transient, console=Console(stderr=True)) as bar:
        task_id = bar.add_task(description, total=total)

        def advance(steps: float = 1, *, description: str | None = None) -> None:
            if description is None:
                bar.advance(task_id, steps)
            else:
                bar.update(task_id, advance=steps, description=description)

        yield advance


class ParallelBars:
    """One bar per row key (e.g. per model family: tuning trials, then final boosters), drawn
    together: rich draws one live display at a time, so work running side by side shares it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._rows: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ParallelBars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            # On stderr, as clm.progress draws every bar: stdout stays the command's output.
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, key: str, description: str, total: int) -> Callable[[], None]:
        """Show `key: description` with `total` steps; returns the function advancing it."""
        if self._bar is None:
            return lambda: None
        with self._lock:
            row = self._rows.get(key)
            text = f"{key}: {description}"
            if row is None:
                row = self._rows[key] = self._bar.add_task(text, total=total)
            else:
                self._bar.reset(row, total=total, description=text)
        bar = self._bar
        return lambda: bar.advance(row)
