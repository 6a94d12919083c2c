"""The progress bar every long step shows (simulate, ingest, features build, training-set
fetch, tuning, fitting, batch scoring, monitoring).

One look everywhere: description, bar, done/total and elapsed time, on stderr so
that a command's own output (JSON, a table, a file name) stays clean on stdout.
With an unknown total the bar pulses and shows no count. rich is imported only
when a bar is shown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Advance", "step_progress"]


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
