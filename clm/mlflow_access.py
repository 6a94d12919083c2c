"""The one way the packages reach MLflow: clients, experiments, version downloads.

MLflow keeps a process-wide tracking and registry URI, and `mlflow.set_tracking_uri`
also writes `MLFLOW_TRACKING_URI` into `os.environ`. A library function that set
it pointed every later `Settings.load(home=B)` (environment variables win over
mlflow.yaml) and every bare `MlflowClient()` at workspace A's database. So:

- `client(settings)` is an `MlflowClient` with both URIs passed explicitly;
- `download_version` resolves a registered version's artifact location with that
  client and downloads from there (a `models:/name/version` URI would resolve the
  logged model behind it through the global tracking URI, whatever the call passes);
- the fluent API (`mlflow.start_run`, `mlflow.lightgbm.log_model`, ...) and
  registering a logged model (`models:/<model id>`) need the globals: only inside
  `fluent_tracking(settings)`, which restores MLflow's URIs and the environment
  variables on the way out.

MLflow is imported inside the functions (about 5 s).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clm.settings import Settings

__all__ = [
    "client",
    "download_version",
    "experiment_id",
    "fluent_tracking",
    "version_artifact_uri",
]

_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# MLflow 3's UI opens an experiment without a kind on its GenAI view (traces, an
# assistant); ours are classic model development (training, monitoring, campaigns).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"


def _ensure_sqlite_parent(uri: str) -> None:
    """A SQLite database's folder must exist before MLflow creates the file."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def client(settings: Settings) -> Any:
    """An `MlflowClient` on the workspace's tracking and registry URIs (no global state)."""
    from mlflow import MlflowClient

    for uri in (settings.tracking_uri, settings.registry_uri):
        _ensure_sqlite_parent(uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def experiment_id(
    settings: Settings,
    name: str,
    *,
    artifact_location: str | None = None,
    mlflow_client: Any = None,
) -> str:
    """The id of experiment `name`, created (artifacts under `artifact_location`, default the
    workspace's) when it does not exist yet, and marked as model development."""
    mlflow_client = mlflow_client or client(settings)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if (experiment.tags or {}).get(EXPERIMENT_KIND_TAG) is None:
            mlflow_client.set_experiment_tag(
                experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT
            )
        return str(experiment.experiment_id)
    location = artifact_location or settings.artifact_location
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
    return str(
        mlflow_client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT}
        )
    )


def version_artifact_uri(mlflow_client: Any, name: str, version: str) -> str:
    """Where a registered version's files are, resolved with this client only.

    The registry stores a logged model's artifact location with the version; a version
    whose location is still a `models:/<model id>` URI is resolved through the client's
    own tracking store."""
    location = str(mlflow_client.get_model_version_download_uri(name, str(version)))
    prefix = "models:/"
    if location.startswith(prefix) and "/" not in location[len(prefix) :].strip("/"):
        model_id = location[len(prefix) :].strip("/")
        location = str(mlflow_client.get_logged_model(model_id).artifact_location)
    return location


def download_version(
    settings: Settings,
    name: str,
    version: str,
    dst_path: str | os.PathLike[str] | None = None,
    *,
    mlflow_client: Any = None,
) -> Path:
    """The files of registered model `name` version `version`, downloaded to `dst_path`
    (or, for a local artifact store without `dst_path`, where they already are)."""
    import mlflow.artifacts

    mlflow_client = mlflow_client or client(settings)
    location = version_artifact_uri(mlflow_client, name, version)
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location,
            dst_path=None if dst_path is None else str(dst_path),
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.registry_uri,
        )
    )


@contextlib.contextmanager
def fluent_tracking(settings: Settings) -> Iterator[None]:
    """MLflow's global URIs point at this workspace inside the block, and are put back
    (with `MLFLOW_TRACKING_URI` / `MLFLOW_REGISTRY_URI` in os.environ) afterwards.

    For the fluent API only (`mlflow.start_run`, `mlflow.log_*`, `mlflow.<flavor>.log_model`,
    registering a `models:/<model id>`), which has no way to take a URI. Not thread-safe,
    like the fluent API itself: not for servers."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {name: os.environ.get(name) for name in _URI_VARIABLES}
    saved_tracking = tracking_utils._tracking_uri
    saved_registry = registry_utils._registry_uri
    for uri in (settings.tracking_uri, settings.registry_uri):
        _ensure_sqlite_parent(uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    try:
        yield
    finally:
        # None (never set) is what set_tracking_uri itself stores; it also resets the tracer
        # provider MLflow keeps per URI.
        mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
        registry_utils._registry_uri = saved_registry
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
