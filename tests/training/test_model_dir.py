"""What `clm train` leaves in MLflow: the registry contract serving and monitoring read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.settings import FAMILIES, Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dirs(
    trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    from clm import mlflow_access

    out = {}
    for family in FAMILIES:
        name = trained_settings.models.family(family).registered_name
        version = mlflow_access.client(trained_settings).get_model_version_by_alias(
            name, "champion"
        )
        out[family] = mlflow_access.download_version(
            trained_settings, name, version.version, tmp_path_factory.mktemp(family)
        )
    return out


def test_versions_have_aliases_and_tags(trained_settings: Settings) -> None:
    from clm.mlflow_access import client
    from features import store

    mlflow_client = client(trained_settings)
    for family in FAMILIES:
        config = trained_settings.models.family(family)
        champion = mlflow_client.get_model_version_by_alias(config.registered_name, "champion")
        challenger = mlflow_client.get_model_version_by_alias(config.registered_name, "challenger")
        assert champion.version == challenger.version  # the first version is both
        assert champion.tags["clm.family"] == family
        assert champion.tags["clm.feature_service"] == config.feature_service
        assert json.loads(champion.tags["clm.features"]) == store.feature_names(
            trained_settings, config.feature_service
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_model_dir_follows_contract(
    model_dirs: dict[str, Path], trained_settings: Settings, family: str
) -> None:
    from features import store

    root = model_dirs[family]
    manifest = json.loads((root / "manifest.json").read_text())
    service = trained_settings.models.family(family).feature_service
    assert manifest["family"] == family
    assert manifest["feature_service"] == service
    assert manifest["features"] == store.feature_names(trained_settings, service)
    for relative in manifest["boosters"].values():
        text = (root / relative).read_text()
        assert text.startswith("tree\n"), "booster must be LightGBM native text"
    if family == "propensity":
        assert manifest["products"] == list(manifest["boosters"])
        assert set(manifest["products"]) <= set(PROPENSITY_PRODUCTS)
        scores = [f"propensity_{p}" for p in manifest["products"]]
    elif family == "stage":
        assert manifest["classes"] == list(STAGES)
        assert list(manifest["boosters"]) == ["stage"]
        scores = [f"stage_prob_{s}" for s in STAGES]
    else:
        assert list(manifest["boosters"]) == ["churn"]
        scores = ["churn_probability"]
    golden = pd.read_parquet(root / manifest["golden_rows"])
    assert {"customer_id", *manifest["features"], *scores} <= set(golden.columns)
    reference = pd.read_parquet(root / "reference" / "validation_sample.parquet")
    assert {"customer_id", "value_tier", "stage", *manifest["features"], *scores} <= set(
        reference.columns
    )
    assert np.isfinite(reference[scores].to_numpy()).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_nothing_is_pickled(model_dirs: dict[str, Path], family: str) -> None:
    root = model_dirs[family]
    suspicious = [
        p for p in root.rglob("*") if p.suffix in {".pkl", ".pickle", ".joblib", ".cloudpickle"}
    ]
    assert not suspicious
    mlmodel = (root / "MLmodel").read_text()
    assert "python_model" not in mlmodel and "pickle" not in mlmodel


@pytest.mark.parametrize("family", FAMILIES)
def test_golden_rows_reproduce_through_mlflow(model_dirs: dict[str, Path], family: str) -> None:
    """MLflow's own loader (lightgbm flavor, or our loader module) gives the golden scores."""
    import mlflow

    root = model_dirs[family]
    manifest = json.loads((root / "manifest.json").read_text())
    golden = pd.read_parquet(root / manifest["golden_rows"])
    model = mlflow.pyfunc.load_model(str(root))
    predicted = model.predict(golden[manifest["features"]])
    expected = golden.drop(columns=["customer_id", *manifest["features"]]).to_numpy()
    assert np.allclose(
        np.asarray(predicted, dtype=float).reshape(expected.shape), expected, atol=1e-9
    )


def test_runs_carry_metrics_plots_and_lineage(trained_settings: Settings) -> None:
    from clm.mlflow_access import client

    mlflow_client = client(trained_settings)
    for family in FAMILIES:
        name = trained_settings.models.family(family).registered_name
        version = mlflow_client.get_model_version_by_alias(name, "champion")
        run = mlflow_client.get_run(version.run_id)
        m = run.data.metrics
        if family == "churn":
            for key in (
                "test_auc",
                "test_pr_auc",
                "test_log_loss",
                "test_brier",
                "test_ks",
                "test_gini",
                "test_top_decile_lift",
                "test_calibration_ece",
                "oracle_auc",
            ):
                assert key in m, key
        elif family == "propensity":
            assert "test_mean_auc" in m and "oracle_mean_auc" in m
        else:
            for key in (
                "test_log_loss",
                "test_macro_f1",
                "test_baseline_log_loss",
                "test_baseline_macro_f1",
            ):
                assert key in m, key
        assert "mlflow.source.git.commit" in run.data.tags
        artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
        assert {"settings.json", "lineage.json", "plots"} <= artifacts
        plots = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "plots")}
        assert any(p.endswith("feature_importance.png") for p in plots)
        assert len(run.inputs.dataset_inputs) == 3


def test_run_uri_reaches_the_same_model_dir(trained_settings: Settings, tmp_path: Path) -> None:
    """docs/contracts.md names the model `runs:/<run>/model`; MLflow 3 resolves it to the logged
    model, through the global tracking URI whatever the call passes (MLflow's
    ModelsArtifactRepository), as in a shell with MLFLOW_TRACKING_URI exported."""
    import mlflow

    from clm import mlflow_access

    version = mlflow_access.client(trained_settings).get_model_version_by_alias(
        "clm-churn", "champion"
    )
    with mlflow_access.fluent_tracking(trained_settings):
        local = mlflow.artifacts.download_artifacts(
            f"runs:/{version.run_id}/model",
            dst_path=str(tmp_path),
            tracking_uri=trained_settings.tracking_uri,
        )
    assert (Path(local) / "manifest.json").is_file() and (Path(local) / "model.lgb").is_file()
