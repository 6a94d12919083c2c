"""Where monitoring outputs go: a dated folder under the reports folder and a run in
the MLflow monitoring experiment holding the same files."""

from __future__ import annotations

import datetime as dt
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


def log_to_mlflow(
    settings: Settings,
    *,
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float | None],
    artifacts: list[Path],
) -> str:
    """One run in the monitoring experiment; returns its run id."""
    from mlflow.entities import Metric, RunStatus
    from mlflow.tracking.context.registry import resolve_tags

    from clm import mlflow_access

    client = mlflow_access.client(settings)
    name = settings.mlflow.monitoring_experiment
    experiment_id = mlflow_access.experiment_id(
        settings,
        name,
        artifact_location=f"{settings.artifact_location}/{name}",
        mlflow_client=client,
    )
    # resolve_tags adds what `mlflow.start_run` would (user, source), without its globals.
    run = client.create_run(experiment_id, run_name=run_name, tags=resolve_tags(tags))
    run_id = str(run.info.run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                Metric(_metric_name(k), float(v), stamp, 0)
                for k, v in metrics.items()
                if v is not None
            ],
        )
        for path in artifacts:
            if path.exists():
                client.log_artifact(run_id, str(path))
        status = RunStatus.to_string(RunStatus.FINISHED)
    finally:
        client.set_terminated(run_id, status)
    return run_id


def _metric_name(name: str) -> str:
    # MLflow allows letters, digits, _ - . / and spaces only.
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)
