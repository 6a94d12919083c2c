"""A transaction-only log: `clm train all` trains what the data supports, skips the rest
with its reason, and measures churn against recency and BG/NBD."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clm.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def purchase_log(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small retail_purchases log (3 columns only), features built and applied."""
    from features.pipeline import run_build
    from features.simulator import run_simulation
    from features.store import run_apply

    settings = Settings.load(home=tmp_path_factory.mktemp("purchase-log"), env={})
    run_simulation(
        settings, customers=4000, months=10, seed=3, scenario="retail_purchases", progress=False
    )
    run_build(settings, progress=False)
    run_apply(settings)
    return settings


@pytest.fixture(scope="module")
def train_all_output(purchase_log: Settings) -> str:
    """What `clm train all --trials 0` prints on the log (it must exit 0)."""
    from clm.cli import app

    result = CliRunner().invoke(
        app, ["--home", str(purchase_log.home), "train", "all", "--trials", "0"]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_train_all_skips_propensity_and_reports_the_baselines(train_all_output: str) -> None:
    out = train_all_output
    assert "propensity: skipped, no holdings table was ingested" in out
    churn_line = next(line for line in out.splitlines() if line.startswith("churn: clm-churn"))
    assert "recency" in churn_line and "BG/NBD" in churn_line and "oracle" in churn_line
    assert "stage: clm-stage version 1" in out


def test_a_family_the_data_cannot_support_is_an_error_when_asked_for(
    purchase_log: Settings,
) -> None:
    from training.pipeline import TrainingError, run_train

    with pytest.raises(TrainingError, match="propensity: cannot train: no holdings table"):
        run_train(purchase_log, model="propensity", trials=0, progress=False)


def test_churn_model_sits_beside_its_baselines_in_mlflow(
    purchase_log: Settings, train_all_output: str
) -> None:
    from clm.mlflow_access import client

    c = client(purchase_log)
    version = c.get_model_version_by_alias("clm-churn", "challenger")
    metrics = c.get_run(version.run_id).data.metrics
    for name in ("test_auc", "test_recency_auc", "test_bgnbd_auc", "test_base_rate_log_loss"):
        assert 0.0 < metrics[name] < 1.0 or name == "test_base_rate_log_loss"
    # On this log BG/NBD is the right model: it beats days-since-last-purchase.
    assert metrics["test_bgnbd_auc"] > metrics["test_recency_auc"]
    assert "clm.baseline_gates" in version.tags
