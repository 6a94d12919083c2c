"""Gated promotion and rollback, on a registry of its own (the shared one stays untouched)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clm.settings import MlflowSettings, Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry_settings(
    feature_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The shared features, with a private MLflow tracking store and registry."""
    root = tmp_path_factory.mktemp("promotion-mlflow")
    return feature_settings.model_copy(
        update={
            "mlflow": MlflowSettings(
                tracking_uri=f"sqlite:///{root}/mlflow.db",
                artifact_location=str(root / "artifacts"),
            )
        }
    )


@pytest.fixture(scope="module")
def churn_set(registry_settings: Settings):  # type: ignore[no-untyped-def]
    from training.data import load_training_set

    return load_training_set(registry_settings, "churn", progress=False)


def _shuffled(training_set, seed: int):  # type: ignore[no-untyped-def]
    """The same rows with labels permuted within each split: a model with no signal."""
    import copy

    out = copy.copy(training_set)
    frame = training_set.frame.copy()
    rng = np.random.default_rng(seed)
    for name in ("train", "validation"):
        mask = (frame["split"] == name).to_numpy()
        frame.loc[mask, "churn_90d"] = rng.permutation(frame.loc[mask, "churn_90d"].to_numpy())
    out.frame = frame
    return out


def _aliases(settings: Settings) -> tuple[str | None, str | None]:
    from clm.mlflow_access import client
    from training.registry import _alias_version

    c = client(settings)
    return _alias_version(c, "clm-churn", "champion"), _alias_version(c, "clm-churn", "challenger")


def _version_tags(settings: Settings, version: str) -> dict[str, str]:
    from clm.mlflow_access import client

    return client(settings).get_model_version("clm-churn", version).tags


def test_gates_promotion_and_rollback(registry_settings: Settings, churn_set) -> None:  # type: ignore[no-untyped-def]
    import copy

    from clm.mlflow_access import client
    from training.pipeline import train_family
    from training.registry import PromotionGateFailed, RegistryError, run_promote, run_rollback

    settings = registry_settings
    # v1: a deliberately useless first version (no signal) is NOT made champion: it fails
    # its baselines on the test split; the failed gate is in its tags and in the result.
    first = train_family(settings, _shuffled(churn_set, 1), trials=0, progress=False)
    assert first.version == "1" and not first.champion
    assert "beats_recency" in {g["gate"] for g in first.failed_gates}
    assert first.baselines["recency_auc"] > first.test["auc"]
    assert "bgnbd_auc" in first.baselines
    assert _aliases(settings) == (None, "1")
    tags = _version_tags(settings, "1")
    assert json.loads(tags["clm.baseline_gates"])["beats_recency"] is False
    assert "days-since-last-transaction" in tags["clm.baseline_failed"]
    # Promotion applies the same baseline gates: still no champion.
    with pytest.raises(PromotionGateFailed, match="days-since-last-transaction"):
        run_promote(settings, model="churn")
    assert _aliases(settings) == (None, "1")

    # v2: the real model beats its baselines -> champion at once (there was none).
    second = train_family(settings, churn_set, trials=0, progress=False)
    assert second.version == "2" and second.champion and not second.failed_gates
    assert _aliases(settings) == ("2", "2")
    run_promote(settings, model="churn")  # challenger is champion already: nothing to do
    assert _aliases(settings) == ("2", "2")

    # v3: shuffled labels again -> the primary-metric gate fails, champion unchanged, exit 1.
    assert train_family(settings, _shuffled(churn_set, 2), trials=0, progress=False).version == "3"
    with pytest.raises(PromotionGateFailed, match="auc") as failed:
        run_promote(settings, model="churn")
    assert failed.value.exit_code == 1
    assert _aliases(settings) == ("2", "3")
    tags = _version_tags(settings, "3")
    assert tags["clm.promotion.status"] == "failed"
    gates = json.loads(tags["clm.promotion.gates"])
    assert gates["auc_improves"] is False and gates["features_match_service"] is True
    assert gates["beats_recency"] is False
    reports = list((settings.reports_dir / "promotion").glob("churn-v3-*.md"))
    assert reports and "REJECTED" in reports[0].read_text()
    assert "recency_auc" in reports[0].read_text()

    # v4: fewer features than the service serves -> the feature-list gate fails.
    fewer = copy.copy(churn_set)
    fewer.features = churn_set.features[:-3]
    assert train_family(settings, fewer, trials=0, progress=False).version == "4"
    with pytest.raises(PromotionGateFailed, match="feature list differs"):
        run_promote(settings, model="churn")
    assert _aliases(settings)[0] == "2"
    assert (
        json.loads(_version_tags(settings, "4")["clm.promotion.gates"])["features_match_service"]
        is False
    )

    # Rollback: nothing before v2; after an alias moved by hand to v4, back to v2, recorded.
    with pytest.raises(RegistryError, match="no previous champion"):
        run_rollback(settings, model="churn")
    client(settings).set_registered_model_alias("clm-churn", "champion", "4")
    run_rollback(settings, model="churn")
    assert _aliases(settings)[0] == "2"
    model_tags = client(settings).get_registered_model("clm-churn").tags
    assert json.loads(model_tags["clm.rollbacks"])[-1] == {
        "from": "4",
        "to": "2",
        "at": json.loads(model_tags["clm.rollbacks"])[-1]["at"],
    }
    assert json.loads(model_tags["clm.champion_history"]) == ["2"]
    assert "clm.rolled_back_at" in _version_tags(settings, "4")


def test_segment_gate_catches_a_regression_in_one_tier(
    registry_settings: Settings, churn_set
) -> None:  # type: ignore[no-untyped-def]
    """A challenger that is better overall but random for mass-tier customers fails the segment gate."""
    from training.booster_model import BoosterModel
    from training.registry import evaluate_gates

    holdout = churn_set.part("test").reset_index(drop=True)

    class _Blind(BoosterModel):
        def score(self, rows):  # type: ignore[no-untyped-def]
            out = super().score(rows)
            mass = (rows["value_tier"] == "mass").to_numpy()
            out.loc[mass, "churn_probability"] = np.random.default_rng(0).random(mass.sum())
            return out

    from training.train import fit, tasks_for

    task = tasks_for(churn_set)[0]
    booster, _ = fit(task, churn_set.features, {}, seed=1)
    manifest = {
        "family": "churn",
        "feature_service": "churn_v2",
        "features": churn_set.features,
        "boosters": {"churn": "model.lgb"},
    }
    champion = BoosterModel(manifest, {"churn": booster})
    challenger = _Blind(manifest, {"churn": booster})
    settings = registry_settings.model_copy(
        update={"promotion": registry_settings.promotion.model_copy(update={"margin": -1.0})}
    )
    gates = {
        g["gate"]: g
        for g in evaluate_gates(
            settings, "churn", challenger, champion, holdout, churn_set.features
        )
    }
    assert gates["auc_improves"]["passed"]  # margin -1: overall is not the question here
    assert not gates["segments_within_tolerance"]["passed"]
    assert "value_tier=mass" in gates["segments_within_tolerance"]["reason"]
