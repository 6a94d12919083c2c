"""`clm status`: the shared trained workspace at a glance, read without writing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clm.cli import app
from clm.commands.status import collect
from clm.settings import Settings
from tests.fixtures.service import RunningService, free_port


def test_status_of_a_trained_workspace(trained_settings: Settings) -> None:
    folder = trained_settings.reports_dir / "drift" / "20990101T000000000000Z"
    older = trained_settings.reports_dir / "drift" / "20980101T000000000000Z"
    try:
        for where, verdict in ((folder, "amber"), (older, "green")):
            where.mkdir(parents=True)
            (where / "churn-drift.json").write_text(
                json.dumps({"verdict": verdict, "version": "1", "created": "2099-01-01T00:00:00"})
            )
        facts = collect(trained_settings, url=f"http://127.0.0.1:{free_port()}", progress=False)
    finally:
        for where in (folder, older):
            (where / "churn-drift.json").unlink()
            where.rmdir()
    assert facts["home"] == str(trained_settings.home)
    assert facts["data"]["source"] == "simulator" and facts["data"]["first_month"] == "2024-01"
    features = facts["features"]
    assert features["snapshots"] > 10 and features["first_month_end"] == "2024-01-31"
    assert features["feast_applied"] is True
    for family in ("churn", "propensity", "stage"):
        champion = facts["models"][family]["champion"]
        assert champion is not None and champion["version"].isdigit(), family
        assert champion["metrics"], family
    assert 0.5 < facts["models"]["churn"]["champion"]["metrics"]["test_auc"] <= 1
    # The newest drift run's verdict, not an older one.
    assert facts["monitoring"]["drift"]["churn"]["verdict"] == "amber"
    assert facts["service"]["state"] == "not running"


def test_status_of_an_empty_workspace_says_what_to_run_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "CLM_CONFIG", "CLM_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    home = tmp_path / "empty"
    result = CliRunner().invoke(
        app,
        ["status", "--home", str(home), "--url", f"http://127.0.0.1:{free_port()}"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "run `clm simulate` or `clm ingest`" in result.stdout
    assert "run `clm train churn`" in result.stdout
    assert "not running" in result.stdout
    assert not home.exists()


def test_status_sees_a_running_service(scoring_service: RunningService) -> None:
    facts = collect(scoring_service.settings, url=scoring_service.url, progress=False)
    assert facts["service"] == {"url": scoring_service.url, "state": "ready", "status": 200}
