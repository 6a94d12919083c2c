"""`feast -c features ui` works from the lock: the gRPC packages it imports are installed,
and the UI serves the shared workspace's feature services (README: "Feast UI")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from clm.process import stop_process, wait_for_http
from clm.settings import REPO_ROOT, Settings
from tests.fixtures.service import free_port


def test_the_modules_feast_ui_imports_are_installed() -> None:
    # Feast's CLI imports its registry server (grpc, grpc_health, grpc_reflection) for `ui`.
    import feast.registry_server  # noqa: F401
    import feast.ui_server  # noqa: F401
    import grpc  # noqa: F401
    from grpc_health.v1 import health  # noqa: F401
    from grpc_reflection.v1alpha import reflection  # noqa: F401


def test_feast_ui_serves_the_workspace_feature_services(
    feature_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    feast = Path(sys.executable).with_name("feast")
    env = {**os.environ, "CLM_HOME": str(feature_settings.home)}
    log = tmp_path / "feast-ui.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(feast), "-c", "features", "ui", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        problem = wait_for_http(process, f"{url}/health", timeout=120)
        assert problem is None, f"{problem}; see {log}: {log.read_text()[-2000:]}"
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        project = feature_settings.features.project
        services = httpx.get(
            f"{url}/api/v1/feature_services", params={"project": project}, timeout=10
        ).json()
        names = {s["spec"]["name"] for s in services["featureServices"]}
        assert {"churn_v1", "propensity_v1", "stage_v1"} <= names
    finally:
        stop_process(process)
