"""The whole loop on the shared small bank: create a list with a holdout -> export it ->
the simulator executes it (same seed, more months) -> features rebuilt -> evaluate, and
the interval covers the simulator's true effect.

The shared bank's workspace is never written: the loop runs in a copy of its raw tables
and features, reading the shared champions from the shared MLflow registry.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clm.cli import app
from clm.settings import Settings
from tests.fixtures.bank import BANK_CUSTOMERS, BANK_MONTHS, BANK_SEED

AS_OF = "2025-06-30"  # the shared bank's last month end (18 months from 2024-01)
EXTRA_MONTHS = 3


@pytest.fixture(scope="module")
def loop_home(trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("campaign-loop")
    for part in ("raw", "features"):
        shutil.copytree(trained_settings.home / part, home / part)
    return home


@pytest.fixture(scope="module")
def loop_env(trained_settings: Settings, loop_home: Path) -> dict[str, str]:
    # The shared champions, read where they are; everything else in the copy.
    return {
        "CLM_HOME": str(loop_home),
        "MLFLOW_TRACKING_URI": trained_settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": trained_settings.registry_uri,
    }


def _clm(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.timeout(900)
def test_create_export_execute_rebuild_evaluate(loop_env: dict[str, str], loop_home: Path) -> None:
    from features.catalog import FEATURE_FILE

    env = loop_env
    out = _clm(
        env, "campaign", "create", "retain-june", "--as-of", AS_OF, "--scene", "lifecycle",
        "--select", "churn_probability > 0 and tenure_months >= 0", "--holdout", "0.5",
        "--seed", "3", "--channel", "call",
    )  # fmt: skip
    campaign_id = int(out.strip().splitlines()[-1])
    shown = json.loads(_clm(env, "campaign", "show", str(campaign_id), "--json"))
    n = shown["n_treatment"] + shown["n_control"]
    assert n > 1000 and abs(shown["n_control"] / n - 0.5) <= 0.01
    assert shown["contact_month"] == "2025-07"

    export = loop_home / "list.csv"
    _clm(env, "campaign", "export", str(campaign_id), "--out", str(export))
    exported = pd.read_csv(export)
    assert len(exported) == shown["n_treatment"]
    assert exported["why"].str.len().min() > 0  # every row has its reasons in words

    # Outcomes are not known before the bank has lived through the horizon.
    result = CliRunner().invoke(app, ["campaign", "evaluate", str(campaign_id)], env=env)
    assert result.exit_code == 2 and "raw data ends 2025-06-30" in result.output

    before = pq.read_table(loop_home / "features" / FEATURE_FILE).to_pandas()
    _clm(
        env, "simulate", "--customers", str(BANK_CUSTOMERS), "--seed", str(BANK_SEED),
        "--months", str(BANK_MONTHS + EXTRA_MONTHS), "--execute", str(campaign_id),
    )  # fmt: skip
    truth = pq.read_table(loop_home / "raw" / "campaign_truth.parquet").to_pandas()
    assert len(truth) == n and truth.loc[truth.group == "control", "contacted"].sum() == 0
    assert truth.loc[truth.group == "treatment", "contacted"].mean() > 0.99
    # Annoyed customers exist: some true effects raise churn.
    assert (truth.true_effect > 0).any() and (truth.true_effect < 0).any()

    _clm(env, "features", "build")
    after = pq.read_table(loop_home / "features" / FEATURE_FILE).to_pandas()
    # History up to the list date is reproduced exactly: every feature row at or before it.
    cut = before["event_timestamp"].max()
    old = before.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    new = after[after["event_timestamp"] <= cut]
    new = new.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(old, new[old.columns], check_dtype=False)

    evaluation = json.loads(
        _clm(env, "campaign", "evaluate", str(campaign_id), "--json", "--no-mlflow")
    )
    for key in (
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
        "n_treatment",
        "n_control",
        "true_effect",
    ):
        assert evaluation[key] is not None, key
    assert evaluation["n_treatment"] == shown["n_treatment"]
    assert evaluation["ci_low"] <= evaluation["true_effect"] <= evaluation["ci_high"]
    assert evaluation["true_effect"] < 0  # the calls do keep customers, on average
    assert np.isclose(
        evaluation["effect"], evaluation["rate_treatment"] - evaluation["rate_control"]
    )
    assert evaluation["treated"]["reached_share"] > 0.99
    assert len(evaluation["by_decile"]) == 10
    report = Path(evaluation["report"])
    assert report.is_file() and "data:image/png;base64," in report.read_text()
    assert json.loads(_clm(env, "campaign", "show", str(campaign_id), "--json"))["evaluations"]
