"""Registry moves the serving tests make: copy a version, break it, move the alias.

Serving never imports training; these helpers only use MLflow's public client and
the registry contract (docs/contracts.md), the way an operator's script would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clm import mlflow_access
from clm.settings import Settings

EXPERIMENT = "clm-serving-tests"


def champion(settings: Settings, family: str) -> str:
    name = settings.models.family(family).registered_name
    return str(
        mlflow_access.client(settings)
        .get_model_version_by_alias(name, settings.aliases.champion)
        .version
    )


def set_champion(settings: Settings, family: str, version: str) -> None:
    name = settings.models.family(family).registered_name
    mlflow_access.client(settings).set_registered_model_alias(
        name, settings.aliases.champion, version
    )


def remove_champion(settings: Settings, family: str) -> None:
    name = settings.models.family(family).registered_name
    mlflow_access.client(settings).delete_registered_model_alias(name, settings.aliases.champion)


def download_version(settings: Settings, family: str, version: str, dst: Path) -> Path:
    """The version's model directory (the folder holding manifest.json)."""
    name = settings.models.family(family).registered_name
    local = mlflow_access.download_version(settings, name, version, dst)
    manifest = next(iter(sorted(local.rglob("manifest.json"))))
    return manifest.parent


def register_dir(settings: Settings, family: str, model_dir: Path) -> str:
    """Log a model directory as a run's artifacts and register it as a new version (no alias)."""
    from mlflow.exceptions import MlflowException

    name = settings.models.family(family).registered_name
    mlflow_client = mlflow_access.client(settings)
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name)
    experiment_id = mlflow_access.experiment_id(settings, EXPERIMENT, mlflow_client=mlflow_client)
    run = mlflow_client.create_run(experiment_id)
    mlflow_client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    mlflow_client.set_terminated(run.info.run_id)
    version = mlflow_client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(version.version)


def copy_version(
    settings: Settings, family: str, version: str, work: Path, *, corrupt: str | None = None
) -> str:
    """Register a copy of `version`, optionally broken: "booster" (garbage text model),
    "truncated" or "nan_leaves" (model files that abort LightGBM),
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
    elif corrupt == "truncated":
        # LightGBM aborts the process (SIGABRT) on a model file cut inside a tree.
        for relative in manifest["boosters"].values():
            text = (target / relative).read_text()
            (target / relative).write_text(text[: text.index("leaf_value=") + 20])
    elif corrupt == "nan_leaves":
        # So it does on `nan` leaf values.
        for relative in manifest["boosters"].values():
            lines = (target / relative).read_text().splitlines()
            lines = [
                "leaf_value=" + " ".join("nan" for _ in x.split("=", 1)[1].split())
                if x.startswith("leaf_value=")
                else x
                for x in lines
            ]
            (target / relative).write_text("\n".join(lines) + "\n")
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
