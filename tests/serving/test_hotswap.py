"""Hot-swap over real HTTP: alias flips under load, refused versions, a registry gone.

One service per module, on a clone of the trained workspace (these tests move
the champion alias and register broken versions; the shared workspace stays as
it was).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from clm import mlflow_access
from clm.settings import Settings
from tests.fixtures.service import RunningService, clone_workspace, service_config, start_service
from tests.serving.conftest import inline_row
from tests.serving.registry_tools import (
    champion,
    copy_version,
    download_version,
    remove_champion,
    set_champion,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swap_service(
    trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    directory = tmp_path_factory.mktemp("swap")
    workspace = clone_workspace(trained_settings, directory / "workspace")
    with start_service(workspace, service_config(directory), directory) as service:
        yield service


@pytest.fixture(scope="module")
def row(
    trained_settings: Settings, online_rows: dict[str, dict[str, Any]], known_customers: list[str]
) -> dict[str, Any]:
    return inline_row(trained_settings, online_rows, known_customers[0])


def models(service: RunningService) -> dict[str, Any]:
    response = httpx.get(f"{service.url}/models", headers=service.headers(), timeout=10)
    assert response.status_code == 200
    return response.json()["models"]  # type: ignore[no-any-return]


def reload(service: RunningService) -> dict[str, Any]:
    response = httpx.post(
        f"{service.url}/admin/reload", headers=service.headers(admin=True), timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()["models"]  # type: ignore[no-any-return]


def wait_for(service: RunningService, family: str, version: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while models(service)[family]["version"] != version:
        assert time.monotonic() < deadline, (
            f"{family} version {version} not served: {models(service)[family]}"
        )
        time.sleep(0.1)


def churn_probability(service: RunningService, row: dict[str, Any]) -> tuple[str, float]:
    response = httpx.post(
        f"{service.url}/score_features", json={"rows": [row]}, headers=service.headers(), timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["model_versions"]["churn"], body["results"][0]["churn"]["probability"]


def test_swap_under_load(swap_service: RunningService, row: dict[str, Any], tmp_path: Path) -> None:
    """Steady traffic while the churn champion moves 6 times (with a rollback): no error, and
    each response's churn score is exactly what the version it names gives."""
    import lightgbm as lgb

    settings = swap_service.settings
    original = champion(settings, "churn")
    copy_a = copy_version(settings, "churn", original, tmp_path)
    rescaled = copy_version(settings, "churn", original, tmp_path, corrupt="rescaled")
    copy_b = copy_version(settings, "churn", original, tmp_path)
    versions = [original, copy_a, rescaled, copy_b]
    # What each version must answer for this row (the copies answer like the original).
    expected: dict[str, float] = {}
    for version in set(versions):
        root = download_version(settings, "churn", version, tmp_path / f"v{version}")
        manifest = json.loads((root / "manifest.json").read_text())
        booster = lgb.Booster(model_file=str(root / manifest["boosters"]["churn"]))
        x = np.array(
            [
                [
                    np.nan if row["features"].get(f) is None else row["features"][f]
                    for f in manifest["features"]
                ]
            ]
        )
        expected[version] = float(booster.predict(x)[0])

    stop = threading.Event()
    seen: list[tuple[int, str, float, float]] = []  # status, version, probability, latency
    failures: list[str] = []

    def traffic() -> None:
        with httpx.Client(headers=swap_service.headers(), timeout=30) as http:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    response = http.post(f"{swap_service.url}/score_features", json={"rows": [row]})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                latency = time.perf_counter() - started
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                body = response.json()
                seen.append(
                    (response.status_code, body["model_versions"]["churn"],
                     body["results"][0]["churn"]["probability"], latency)
                )  # fmt: skip

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    # 6 moves: forward to new versions, then rollbacks to earlier ones (alias moved back).
    plan = [copy_a, rescaled, copy_b, rescaled, original, copy_a]
    champions = {original}
    try:
        time.sleep(0.5)
        for i, version in enumerate(plan):
            set_champion(settings, "churn", version)
            champions.add(version)
            if i % 2:
                reload(swap_service)  # half picked up by /admin/reload, half by polling
            wait_for(swap_service, "churn", version)
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        set_champion(settings, "churn", original)
        wait_for(swap_service, "churn", original)

    assert failures == []
    assert len(seen) > 50
    served = {version for _, version, _, _ in seen}
    assert served <= champions
    assert len(served) >= 3 and rescaled in served
    assert expected[rescaled] != pytest.approx(expected[original], abs=1e-6)
    for _, version, probability, _ in seen:
        assert probability == pytest.approx(expected[version], abs=1e-9), version


def test_corrupt_versions_are_refused(
    swap_service: RunningService, row: dict[str, Any], tmp_path: Path
) -> None:
    settings = swap_service.settings
    good = champion(settings, "churn")
    good_version, good_probability = churn_probability(swap_service, row)
    assert good_version == good
    for corruption in ("booster", "truncated", "nan_leaves", "features", "golden"):
        bad = copy_version(settings, "churn", good, tmp_path, corrupt=corruption)
        set_champion(settings, "churn", bad)
        status = reload(swap_service)["churn"]
        assert status["version"] == good, corruption
        assert status["last_load_error"] and f"version {bad}" in status["last_load_error"], status
        if corruption in ("truncated", "nan_leaves"):
            assert "LightGBM crashed" in status["last_load_error"], status
        # The poller does not retry it every interval, and the old version keeps serving.
        time.sleep(1.0)
        assert models(swap_service)["churn"]["last_load_error"] == status["last_load_error"]
        assert churn_probability(swap_service, row) == (good, good_probability)
    set_champion(settings, "churn", good)
    status = reload(swap_service)["churn"]
    assert status["version"] == good and status["last_load_error"] is None


def test_a_restored_registry_file_is_noticed(
    swap_service: RunningService, row: dict[str, Any], tmp_path: Path
) -> None:
    """mlflow.db replaced under the running service (a backup restored: a new inode) whose
    churn champion is another version: the service re-opens the file and serves it."""
    import os
    import shutil
    import sqlite3

    settings = swap_service.settings
    db = settings.home / "mlflow" / "mlflow.db"
    name = settings.models.churn.registered_name
    good = champion(settings, "churn")
    other = copy_version(settings, "churn", good, tmp_path, corrupt="rescaled")
    assert reload(swap_service)["churn"]["version"] == good  # the service's connection is open
    restored = db.with_name("mlflow-restored.db")
    shutil.copyfile(db, restored)
    with contextlib.closing(sqlite3.connect(restored)) as conn, conn:
        conn.execute(
            "UPDATE registered_model_aliases SET version = ? WHERE name = ? AND alias = ?",
            (int(other), name, settings.aliases.champion),
        )
    try:
        os.replace(restored, db)
        wait_for(swap_service, "churn", other)
        assert churn_probability(swap_service, row)[0] == other
        assert models(swap_service)["churn"]["last_registry_error"] is None
    finally:
        # This process's own MLflow connection still reads the replaced file (the defect
        # the service no longer has): re-open before moving the alias back.
        mlflow_access.reopen_registry(settings, force=True)
        set_champion(settings, "churn", good)
        assert reload(swap_service)["churn"]["version"] == good


def test_registry_down_keeps_serving(swap_service: RunningService, row: dict[str, Any]) -> None:
    """The MLflow database becomes unreadable: a warning and /models, nothing else."""
    db = swap_service.settings.home / "mlflow" / "mlflow.db"
    before = models(swap_service)
    served = churn_probability(swap_service, row)
    saved = db.read_bytes()
    try:
        with open(db, "r+b") as fh:  # same file, garbage header: "file is not a database"
            fh.write(b"\0not a database anymore\0" * 8)
            fh.flush()
        deadline = time.monotonic() + 15
        while not models(swap_service)["churn"]["last_registry_error"]:
            assert time.monotonic() < deadline, models(swap_service)
            time.sleep(0.2)
        status = models(swap_service)
        for family in ("churn", "propensity", "stage"):
            assert status[family]["version"] == before[family]["version"]
            assert status[family]["loaded_at"] == before[family]["loaded_at"]
        for _ in range(20):
            assert churn_probability(swap_service, row) == served
        response = httpx.post(
            f"{swap_service.url}/admin/reload", headers=swap_service.headers(admin=True), timeout=60
        )
        assert response.status_code == 200
        assert "registry" in response.text
    finally:
        db.write_bytes(saved)
    deadline = time.monotonic() + 15
    while models(swap_service)["churn"]["last_registry_error"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "registry unreachable" in swap_service.log_text()


def test_a_family_without_champion_is_left_out(
    swap_service: RunningService,
    row: dict[str, Any],
    known_customers: list[str],
) -> None:
    """The propensity champion alias is removed: churn and stage keep serving, propensity
    is absent from every result and /models says why; its alias back, it serves again."""
    settings = swap_service.settings
    url, headers = swap_service.url, swap_service.headers()
    version = champion(settings, "propensity")
    remove_champion(settings, "propensity")
    try:
        status = reload(swap_service)
        assert not status["propensity"]["served"] and status["propensity"]["version"] is None
        assert "has no version with alias 'champion'" in status["propensity"]["reason"]
        assert status["churn"]["served"] and status["stage"]["served"]
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        response = httpx.post(
            f"{url}/score", json={"customer_ids": known_customers[:2]}, headers=headers, timeout=30
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body["model_versions"]) == {"churn", "stage"}
        for result in body["results"]:
            assert {"churn", "stage"} <= set(result)
            assert not {"propensity", "next_best_product"} & set(result)
        # Every family's features (as documented) are still accepted; reasons only for the served.
        response = httpx.post(
            f"{url}/score_features",
            json={"rows": [row], "explain": True},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert set(response.json()["results"][0]["reasons"]) == {"churn", "stage"}
    finally:
        set_champion(settings, "propensity", version)
        assert reload(swap_service)["propensity"]["served"]


def test_graceful_stop_keeps_every_acknowledged_prediction(
    swap_service: RunningService, row: dict[str, Any]
) -> None:
    """SIGTERM right after answering: every acknowledged row is in a parquet segment."""
    from clm.process import stop_process
    from serving.predlog import JOURNAL_DIR, read_predictions

    request_ids = []
    with httpx.Client(headers=swap_service.headers(), timeout=30) as http:
        for _ in range(30):
            response = http.post(f"{swap_service.url}/score_features", json={"rows": [row]})
            assert response.status_code == 200
            request_ids.append(response.json()["request_id"])
    stop_process(swap_service.process)  # last test of the module: the fixture finds it stopped
    assert swap_service.process.returncode is not None
    directory = swap_service.settings.predictions_dir
    assert list((directory / JOURNAL_DIR).glob("journal-*")) == []
    logged = set(
        read_predictions(directory, include_journals=False).column("request_id").to_pylist()
    )
    assert set(request_ids) <= logged
