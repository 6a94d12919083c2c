"""What a data scientist sees in MLflow after `clm train`: a model-development experiment,
runs named by family, data window and trials, with a description, Optuna trials as child
runs, and a registered version that says what it was trained on and how it did."""

from __future__ import annotations

import re

from clm import mlflow_access
from clm.settings import Settings
from tests.fixtures.trained import TRAINED_TRIALS
from training import tracking


def test_training_runs_are_named_described_and_hold_their_trials(
    trained_settings: Settings,
) -> None:
    client = mlflow_access.client(trained_settings)
    experiment = client.get_experiment_by_name(trained_settings.mlflow.training_experiment)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    for family in ("churn", "propensity", "stage"):
        name = trained_settings.models.family(family).registered_name
        version = client.get_model_version_by_alias(name, "champion")
        run = client.get_run(version.run_id)
        window = r"\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}"
        assert re.fullmatch(rf"{family} {window} {TRAINED_TRIALS} trials?", run.info.run_name)
        description = run.data.tags.get("mlflow.note.content", "")
        assert f"**{family}**" in description and "Tuning:" in description, description
        children = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
        )
        assert len(children) == TRAINED_TRIALS, family
        for child in children:
            assert child.info.run_name.startswith(f"{family} trial ")
            assert child.data.params, "a trial's parameters"
            assert "learning_rate" in child.data.params
            if child.data.tags["optuna.state"] == "complete":
                assert "objective" in child.data.metrics
        text = client.get_model_version(name, version.version).description
        assert text.startswith(f"Trained on {version.tags['clm.feature_service']}"), text
        assert "train " in text and "test " in text
    churn = client.get_model_version_by_alias("clm-churn", "champion").description
    # The simulated bank has an oracle: the version says how far below it the model is.
    assert "oracle" in churn and "constant score" in churn
    stage = client.get_model_version_by_alias("clm-stage", "champion").description
    assert "stays in its stage" in stage


def test_run_name_words() -> None:
    lineage = {
        "splits": {
            "train": {"first_snapshot": "2024-02-01", "last_snapshot": "2024-12-01", "rows": 10},
            "validation": {"first_snapshot": "2025-01-01", "last_snapshot": "2025-03-01"},
            "test": {"first_snapshot": "2025-04-01", "last_snapshot": "2025-04-01", "rows": 5},
        }
    }
    assert tracking.run_name("churn", lineage, 20) == "churn 2024-01-31..2025-03-31 20 trials"
    assert tracking.run_name("stage", lineage, 1) == "stage 2024-01-31..2025-03-31 1 trial"
    words = tracking.result_words(
        "churn",
        {
            "test_auc": 0.676,
            "oracle_auc": 0.767,
            "test_auc_oracle_rows": 0.676,
            "oracle_auc_gap": 0.091,
        },
    )
    assert "AUC 0.676" in words and "0.767" in words and "gap 0.091" in words
