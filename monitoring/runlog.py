"""Where monitoring outputs go: a dated folder under the reports folder, a progress
bar, and a run in the MLflow monitoring experiment holding the same files."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clm.settings import Settings


def report_folder(settings: Settings, kind: str) -> Path:
    """`reports/<kind>/<UTC timestamp>/`, created (one folder per run keeps history)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = settings.reports_dir / kind / stamp
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def stage(progress: bool, description: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar over `total` steps (a no-op when progress is off)."""
    if not progress:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def log_to_mlflow(
    settings: Settings,
    *,
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float | None],
    artifacts: list[Path],
) -> str:
    """One run in the monitoring experiment; returns its run id."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    name = settings.mlflow.monitoring_experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(
            name, artifact_location=f"{settings.artifact_location}/{name}"
        )
    else:
        experiment_id = experiment.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(tags)
        clean = {_metric_name(k): float(v) for k, v in metrics.items() if v is not None}
        if clean:
            mlflow.log_metrics(clean)
        for path in artifacts:
            if path.exists():
                mlflow.log_artifact(str(path))
        return str(run.info.run_id)


def _metric_name(name: str) -> str:
    # MLflow allows letters, digits, _ - . / and spaces only.
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)
