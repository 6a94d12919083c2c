"""clm.mlflow_access: workspaces in one process never share MLflow state.

`mlflow.set_tracking_uri` writes MLFLOW_TRACKING_URI into os.environ, and
environment variables win over mlflow.yaml: a library function that set it made a
later `Settings.load(home=B)` use workspace A's registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clm import mlflow_access
from clm.settings import Settings
from tests.fixtures.bank import make_settings

URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# Before any fixture of this session ran (collection imports this module first).
ENV_AT_START = {name: os.environ.get(name) for name in URI_VARIABLES}


def _uri_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in URI_VARIABLES}


def _versions(settings: Settings, family: str) -> list[str]:
    name = settings.models.family(family).registered_name
    found = mlflow_access.client(settings).search_model_versions(f"name='{name}'")
    return sorted((str(v.version) for v in found), key=int)


def test_fluent_tracking_puts_mlflow_and_the_environment_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    settings = make_settings(tmp_path / "a")
    for name in URI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = mlflow.get_tracking_uri()
    with mlflow_access.fluent_tracking(settings):
        assert mlflow.get_tracking_uri() == settings.tracking_uri
        assert mlflow.get_registry_uri() == settings.registry_uri
        assert os.environ["MLFLOW_TRACKING_URI"] == settings.tracking_uri
    assert _uri_env() == dict.fromkeys(URI_VARIABLES)
    assert mlflow.get_tracking_uri() == before != settings.tracking_uri
    # A value the user exported survives too.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    with pytest.raises(KeyError), mlflow_access.fluent_tracking(settings):
        raise KeyError("a failing run")
    assert _uri_env() == {
        "MLFLOW_TRACKING_URI": "sqlite:////elsewhere/mlflow.db",
        "MLFLOW_REGISTRY_URI": None,
    }


def test_two_workspaces_in_one_process_never_see_each_others_models(
    trained_settings: Settings, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from features.store import feature_names
    from monitoring import inputs
    from monitoring.runlog import log_to_mlflow
    from serving.models import ModelRefused, load_version
    from tests.serving import registry_tools
    from training import registry

    a = trained_settings
    # Training and registering in A (the session's trained bank) left no URI behind.
    assert _uri_env() == ENV_AT_START
    a_versions = _versions(a, "churn")
    a_champion = registry_tools.champion(a, "churn")
    a_run = mlflow_access.client(a).get_model_version("clm-churn", a_champion).run_id

    # Workspace B, loaded the way the CLI loads settings (the environment wins).
    b = Settings.load(home=tmp_path / "b", env=dict(os.environ))
    assert b.tracking_uri != a.tracking_uri and (tmp_path / "b").as_posix() in b.tracking_uri
    copy = registry_tools.download_version(a, "churn", a_champion, tmp_path / "from-a")
    b_version = registry_tools.register_dir(b, "churn", copy)
    registry_tools.set_champion(b, "churn", b_version)
    b_run = mlflow_access.client(b).get_model_version("clm-churn", b_version).run_id

    assert b_version == "1" and _versions(b, "churn") == ["1"]
    assert _versions(a, "churn") == a_versions  # nothing of B landed in A
    assert b_run != a_run
    location = mlflow_access.version_artifact_uri(mlflow_access.client(b), "clm-churn", "1")
    assert b.artifact_location.removeprefix("file://") in location

    # Each reader, in B then in A: monitoring, serving, promotion.
    expected = lambda service: feature_names(a, service)  # noqa: E731
    for settings, run in ((b, b_run), (a, a_run)):
        champion = inputs.load_champion(settings, "churn")
        assert champion.run_id == run
        assert settings.home.resolve() in champion.model_dir.resolve().parents
        version = "1" if settings is b else a_champion
        served = load_version(settings, "churn", version, expected_features=expected)
        assert served.version == version
        assert registry.load_version(settings, "churn", version).features == list(served.features)
    with pytest.raises(ModelRefused, match="cannot download clm-churn version"):
        load_version(b, "churn", str(int(a_versions[-1]) + 1), expected_features=expected)

    # A monitoring run logged in B is in B's experiment only.
    run_id = log_to_mlflow(
        b, run_name="isolation", tags={"clm.monitor": "test"}, metrics={}, artifacts=[]
    )
    b_client = mlflow_access.client(b)
    monitoring = b_client.get_experiment_by_name(b.mlflow.monitoring_experiment)
    assert b_client.get_run(run_id).info.experiment_id == monitoring.experiment_id
    with pytest.raises(MlflowException, match=run_id):
        mlflow_access.client(a).get_run(run_id)

    assert _uri_env() == ENV_AT_START
    assert mlflow.get_tracking_uri() not in (a.tracking_uri, b.tracking_uri)
