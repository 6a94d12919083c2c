"""Issue 12 item 7: a family's challenger is scored in the background on /score traffic.

On a clone of the trained workspace, churn gets a second version (the champion's files,
rescaled so it scores differently) with the `challenger` alias. The service answers with the
champions only, `/models` shows the shadow, and the prediction log holds the
challenger's rows (`role = "shadow"`, its version) beside the champion's, which
monitoring keeps out of production verdicts and reads with traffic="shadow".
"""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from clm import mlflow_access
from clm.settings import Settings
from monitoring import inputs
from tests.fixtures.service import clone_workspace, service_config, start_service
from tests.serving.registry_tools import copy_version


def test_challenger_scores_in_the_shadow_and_the_response_names_only_champions(
    trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("shadow")
    workspace = clone_workspace(trained_settings, directory / "workspace")
    client = mlflow_access.client(workspace)
    name = workspace.models.family("churn").registered_name
    champion = client.get_model_version_by_alias(name, workspace.aliases.champion)
    second = copy_version(workspace, "churn", str(champion.version), directory, corrupt="rescaled")
    client.set_registered_model_alias(name, workspace.aliases.challenger, second)

    ids = pd.read_parquet(
        next((workspace.home / "features").glob("*.parquet")), columns=["customer_id"]
    )["customer_id"].unique()[:20]
    with start_service(workspace, service_config(directory), directory) as service:
        models = httpx.get(f"{service.url}/models", headers=service.headers(), timeout=30).json()
        churn = models["models"]["churn"]
        assert churn["version"] == str(champion.version)
        assert churn["shadow"]["version"] == second
        assert models["models"]["stage"]["shadow"]["version"] is None  # no challenger of its own
        answers = []
        for start in range(0, len(ids), 5):
            body = {"customer_ids": [str(c) for c in ids[start : start + 5]]}
            response = httpx.post(
                f"{service.url}/score", json=body, headers=service.headers(), timeout=30
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
        time.sleep(1.5)  # the shadow thread, then the log's flush
    assert all(a["model_versions"]["churn"] == str(champion.version) for a in answers)
    served = {r["customer_id"]: r["churn"]["probability"] for a in answers for r in a["results"]}

    production, window = inputs.read_prediction_log(workspace, window="1d")
    shadow, _ = inputs.read_prediction_log(workspace, window="1d", traffic="shadow")
    assert set(production["version_churn"]) == {str(champion.version)}
    assert set(shadow["version_churn"]) == {second}
    assert set(shadow["version_stage"]) == set(production["version_stage"])  # champions elsewhere
    assert set(shadow["request_id"]) == set(production["request_id"])
    assert sorted(shadow["customer_id"]) == sorted(production["customer_id"]) == sorted(served)
    # The response and the production rows are the champion's; the shadow's scores differ.
    merged = production.merge(shadow, on=["request_id", "customer_id"], suffixes=("", "_shadow"))
    assert len(merged) == len(served)
    for row in merged.itertuples():
        assert row.churn_probability == pytest.approx(served[row.customer_id], abs=1e-6)
    assert (merged["churn_probability"] - merged["churn_probability_shadow"]).abs().max() > 1e-3
    assert inputs.traffic_counts(workspace, window)["shadow"] == len(served)
