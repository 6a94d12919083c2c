"""A rich progress bar over a known number of steps, shared by the long-running parts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def step_progress(
    description: str, total: int, enabled: bool, *, transient: bool = False
) -> Iterator[Callable[[], None]]:
    """Yield `advance()`, which moves the bar one step; a no-op when `enabled` is off."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=transient,
    ) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda: bar.advance(task_id)
