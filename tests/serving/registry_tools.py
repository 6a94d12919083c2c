"""Registry moves the serving tests make: copy a version, break it, move the alias.

Serving never imports training; these helpers only use MLflow's public client and
the registry contract (docs/contracts.md), the way an operator's script would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clm.settings import Settings

EXPERIMENT = "clm-serving-tests"


def client(settings: Settings):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def champion(settings: Settings, family: str) -> str:
    name = settings.models.family(family).registered_name
    return str(client(settings).get_model_version_by_alias(name, settings.aliases.champion).version)


def set_champion(settings: Settings, family: str, version: str) -> None:
    name = settings.models.family(family).registered_name
    client(settings).set_registered_model_alias(name, settings.aliases.champion, version)


def download_version(settings: Settings, family: str, version: str, dst: Path) -> Path:
    """The version's model directory (the folder holding manifest.json)."""
    import mlflow.artifacts

    from serving.models import use_registry

    use_registry(settings)  # models:/ downloads resolve through the global tracking URI
    name = settings.models.family(family).registered_name
    dst.mkdir(parents=True, exist_ok=True)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(dst),
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.registry_uri,
        )
    )
    manifest = next(iter(sorted(local.rglob("manifest.json"))))
    return manifest.parent


def register_dir(settings: Settings, family: str, model_dir: Path) -> str:
    """Log a model directory as a run's artifacts and register it as a new version (no alias)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = settings.models.family(family).registered_name
    mlflow_client = client(settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name)
    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else mlflow_client.create_experiment(
            EXPERIMENT, artifact_location=settings.artifact_location
        )
    )
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    version = mlflow_client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(version.version)


def copy_version(
    settings: Settings, family: str, version: str, work: Path, *, corrupt: str | None = None
) -> str:
    """Register a copy of `version`, optionally broken: "booster" (garbage text model),
    "features" (feature list that differs from the feature service) or "golden" (wrong
    expected scores); or "rescaled": a valid churn version that scores differently."""
    source = download_version(settings, family, version, work / f"src-{family}-{version}")
    target = work / f"copy-{family}-{version}-{corrupt or 'ok'}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if corrupt == "booster":
        for relative in manifest["boosters"].values():
            (target / relative).write_text("tree\nthis is not a LightGBM model\n")
    elif corrupt == "features":
        manifest["features"] = list(reversed(manifest["features"]))
        manifest_path.write_text(json.dumps(manifest))
    elif corrupt == "golden":
        import pandas as pd

        golden = pd.read_parquet(target / manifest["golden_rows"])
        for column in golden.columns:
            if column.startswith(("churn_probability", "propensity_", "stage_prob_")):
                golden[column] = 1.0 - golden[column]
        golden.to_parquet(target / manifest["golden_rows"], index=False)
    elif corrupt == "rescaled":
        # Not broken: a different valid churn model (leaf values scaled, golden rows re-scored).
        import lightgbm as lgb
        import pandas as pd

        path = target / manifest["boosters"]["churn"]
        # tree_sizes (byte lengths of the tree blocks) would no longer match: drop it.
        lines = [x for x in path.read_text().splitlines() if not x.startswith("tree_sizes=")]
        for i, line in enumerate(lines):
            if line.startswith("leaf_value="):
                values = [float(v) * 0.7 for v in line.split("=", 1)[1].split()]
                lines[i] = "leaf_value=" + " ".join(repr(v) for v in values)
        path.write_text("\n".join(lines) + "\n")
        booster = lgb.Booster(model_file=str(path))
        golden = pd.read_parquet(target / manifest["golden_rows"])
        golden["churn_probability"] = booster.predict(
            golden[manifest["features"]].to_numpy(dtype="float64")
        )
        golden.to_parquet(target / manifest["golden_rows"], index=False)
    elif corrupt is not None:
        raise ValueError(f"unknown corruption {corrupt!r}")
    return register_dir(settings, family, target)
