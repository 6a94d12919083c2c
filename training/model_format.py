"""Write a family's model directory into MLflow (see docs/contracts.md, Registry).

Churn and stage are logged with `mlflow.lightgbm.log_model`, so `mlflow models
serve --env-manager local` serves them as is; propensity (a booster per product)
is a pyfunc whose `loader_module` is `booster_model.py`, shipped in the
directory. Boosters are LightGBM native text, never pickles. Next to them:
`manifest.json`, `golden.parquet` and `reference/validation_sample.parquet`.
"""

from __future__ import annotations

import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm.families import spec
from training.booster_model import MANIFEST, BoosterModel

if TYPE_CHECKING:
    import lightgbm as lgb
    import pandas as pd

MODEL_NAME = "model"
GOLDEN = "golden.parquet"
REFERENCE = "reference/validation_sample.parquet"
GOLDEN_ROWS = 20
REFERENCE_ROWS = 5000
# What inference needs, pinned to the versions that trained the model. Passed
# explicitly: MLflow's own inference of requirements costs ~10 s per model.
_REQUIREMENTS = ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "scikit-learn")


def pip_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in _REQUIREMENTS]


def manifest_for(
    family: str, feature_service: str, features: list[str], booster_paths: dict[str, str]
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "family": family,
        "feature_service": feature_service,
        "features": list(features),
        "boosters": dict(booster_paths),
        "golden_rows": GOLDEN,
        "reference": REFERENCE,
    }
    manifest.update(spec(family).manifest_extras(list(booster_paths)))
    return manifest


def golden_rows(model: BoosterModel, rows: pd.DataFrame) -> pd.DataFrame:
    """A few rows (ids, features, expected scores) serving replays before a swap."""
    sample = rows.head(GOLDEN_ROWS).reset_index(drop=True)
    out = sample[["customer_id", *model.features]].copy()
    return out.join(model.score(sample[model.features]))


def log_family_model(
    family: str,
    feature_service: str,
    features: list[str],
    boosters: dict[str, lgb.Booster],
    golden_source: pd.DataFrame,
    reference: pd.DataFrame,
    mlflow_client: Any,
) -> str:
    """Log the model directory to the active run (inside `clm.mlflow_access.fluent_tracking`)
    and its extra files with `mlflow_client`; returns its model URI (`models:/<id>`)."""
    import mlflow
    from mlflow.models import infer_signature

    example = golden_source[features].head(5).astype("float64").reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="clm-model-") as tmp:
        extra = Path(tmp) / "extra"
        extra.mkdir()
        if spec(family).task != "per_product":
            booster = boosters[family]
            signature = infer_signature(example, booster.predict(example.to_numpy()))
            info = mlflow.lightgbm.log_model(
                booster,
                name=MODEL_NAME,
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            # mlflow.lightgbm writes the booster as native text to model.lgb.
            paths = {family: "model.lgb"}
        else:
            # The boosters and a manifest relative to them go in the pyfunc's data
            # directory (data/propensity/), which MLflow hands to the loader module.
            data_dir = extra.parent / "propensity"
            (data_dir / "boosters").mkdir(parents=True)
            local = {key: f"boosters/{key}.txt" for key in boosters}
            for key, booster in boosters.items():
                booster.save_model(str(data_dir / local[key]))
            (data_dir / MANIFEST).write_text(
                json.dumps(manifest_for(family, feature_service, features, local), indent=2)
            )
            loader = Path(__file__).with_name("booster_model.py")
            signature = infer_signature(example, BoosterModel.load(data_dir).score(example))
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                loader_module="booster_model",
                data_path=str(data_dir),
                code_paths=[str(loader)],
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            paths = {key: f"data/propensity/{path}" for key, path in local.items()}
        manifest = manifest_for(family, feature_service, features, paths)
        model = BoosterModel(manifest, boosters)
        (extra / MANIFEST).write_text(json.dumps(manifest, indent=2))
        golden_rows(model, golden_source).to_parquet(extra / GOLDEN, index=False)
        (extra / "reference").mkdir()
        reference.to_parquet(extra / REFERENCE, index=False)
        mlflow_client.log_model_artifacts(info.model_id, str(extra))
    return str(info.model_uri)
