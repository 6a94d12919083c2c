"""The MLflow UI, started the way the README says, shows the training runs and their plots.

The UI is a web page over MLflow's REST API: it lists runs with
`runs/search`, their files with `artifacts/list` and draws a plot from
`get-artifact`. The test asks the running server exactly those questions.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clm.process import stop_process, wait_for_http
from clm.settings import FAMILIES, Settings
from tests.fixtures.service import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# `mlflow ui` starts four uvicorn workers, each importing the MLflow server: 10-15 s on an
# idle machine, over 100 s on a loaded one (seen at load 9). Generous, so load is not a failure.
START_TIMEOUT = 300


@pytest.fixture(scope="module")
def mlflow_ui(
    trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:

    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-ui") / "ui.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(mlflow),
                "ui",
                "--backend-store-uri",
                trained_settings.tracking_uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        problem = wait_for_http(process, f"{url}/health", START_TIMEOUT)
        if problem is not None:
            pytest.fail(f"mlflow ui {problem}:\n{log.read_text()}")
        yield url
    finally:
        stop_process(process, timeout=20)


def test_ui_lists_each_family_run_with_its_metrics_and_plots(
    mlflow_ui: str, trained_settings: Settings
) -> None:
    import httpx

    api = f"{mlflow_ui}/api/2.0/mlflow"
    experiment = httpx.get(
        f"{api}/experiments/get-by-name",
        params={"experiment_name": trained_settings.mlflow.training_experiment},
    ).json()["experiment"]
    runs = httpx.post(
        f"{api}/runs/search", json={"experiment_ids": [experiment["experiment_id"]]}
    ).json()["runs"]
    by_family: dict[str, dict] = {}  # type: ignore[type-arg]
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        by_family.setdefault(tags.get("clm.family", ""), run)
    assert set(FAMILIES) <= set(by_family), sorted(by_family)

    headline = {"churn": "test_auc", "propensity": "test_mean_auc", "stage": "test_macro_f1"}
    for family in FAMILIES:
        run = by_family[family]
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert headline[family] in metrics, (family, sorted(metrics))
        run_id = run["info"]["run_id"]
        listing = httpx.get(
            f"{api}/artifacts/list", params={"run_id": run_id, "path": "plots"}
        ).json()
        plots = [f["path"] for f in listing.get("files", []) if f["path"].endswith(".png")]
        assert any(p.endswith("feature_importance.png") for p in plots), (family, plots)
        # Every plot the UI would draw comes back as a real PNG image.
        for path in plots:
            image = httpx.get(
                f"{mlflow_ui}/get-artifact", params={"path": path, "run_uuid": run_id}
            )
            assert image.status_code == 200, (family, path, image.text[:200])
            assert image.content.startswith(b"\x89PNG\r\n\x1a\n"), (family, path)
            assert len(image.content) > 5_000, (family, path, len(image.content))
