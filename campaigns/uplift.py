"""`clm train uplift`: who responds to a retention contact, learned from randomized history.

The history is the bank's own executed campaigns: every retention campaign in the
registry whose 90-day outcomes are known gives, per member, the features at the list
date, the group the member was randomized into and whether they churned. A T-learner
fits one LightGBM model of churn on the treatment group and one on the control group;
a customer's uplift is the churn the contact prevents, p_control(x) - p_treatment(x)
(negative: the contact drives them away).

Gate (like the other families): on held-out members (a random 30 %, by seed) the
uplift ranking's Qini coefficient must beat random targeting (> 0); only then does the
version become `champion` of `clm-uplift`. Reported beside it: the Qini of ranking by
churn risk, and, on a simulated bank, of the oracle (each member's true effect) and the
customers kept by contacting the top 30 % by uplift vs the top 30 % by churn risk,
from the simulator's truth.

Registered as `clm-uplift`: two LightGBM boosters in their native text format, a
manifest, the feature list in order (the `churn_v1` feature service).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.errors import ClmError

if TYPE_CHECKING:
    import pandas as pd

    from campaigns.registry import Registry
    from clm.settings import Settings

__all__ = ["UpliftError", "fit_t_learner", "train_response_model", "training_set"]

REGISTERED_NAME = "clm-uplift"
FEATURE_SERVICE = "churn_v1"
HOLDOUT_SHARE = 0.3
TOP_SHARE = 0.3
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "verbose": -1,
    "num_threads": 1,
}
ROUNDS = 150


class UpliftError(ClmError):
    """No randomized history to learn from, or the history cannot be read."""


def training_set(settings: Settings, registry: Registry) -> tuple[pd.DataFrame, list[str]]:
    """Members of every evaluable retention campaign: features at the list date, treated,
    churned within 90 days, and the true effect where the simulator recorded it."""
    import pandas as pd

    from campaigns.evaluation import EvaluationError, member_outcomes
    from features.store import feature_names
    from serving.batch import read_snapshot

    features = list(feature_names(settings, FEATURE_SERVICE))
    truth_path = settings.raw_dir / "campaign_truth.parquet"
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    parts, skipped = [], []
    for campaign in registry.campaigns():
        if campaign.measure != "retention":
            continue
        members = registry.members(campaign.id)
        ids = [m.customer_id for m in members]
        try:
            churned = member_outcomes(settings, campaign, ids, 90)
        except EvaluationError as exc:
            skipped.append(f"campaign {campaign.id}: {exc}")
            continue
        _, table = read_snapshot(settings, campaign.as_of.isoformat(), features)
        frame = table.to_pandas().set_index("customer_id").reindex(ids)
        frame = frame[features].astype(float)
        frame["campaign_id"] = campaign.id
        frame["treated"] = [m.group == "treatment" for m in members]
        frame["churned"] = churned
        frame["churn_score"] = [m.score for m in members]
        frame["true_effect"] = np.nan
        if truth is not None:
            own = truth[truth["campaign_id"] == campaign.id].set_index("customer_id")
            frame["true_effect"] = own["true_effect"].reindex(ids).to_numpy()
        parts.append(frame.reset_index())
    if not parts:
        why = ("; ".join(skipped)) if skipped else "no retention campaign in the registry"
        raise UpliftError(
            "no randomized retention history to learn from: create a retention campaign with a "
            "holdout, execute it (`clm simulate ... --execute ID`, or your CRM), and wait out "
            f"its 90 days ({why})"
        )
    return pd.concat(parts, ignore_index=True), features


def fit_t_learner(x: np.ndarray, treated: np.ndarray, churned: np.ndarray, seed: int) -> tuple:
    """One churn booster per arm (LightGBM)."""
    import lightgbm as lgb

    boosters = []
    for arm in (True, False):
        rows = treated == arm
        if churned[rows].sum() < 5 or (~churned[rows]).sum() < 5:
            raise UpliftError(
                f"the {'treatment' if arm else 'control'} group has too few churners "
                f"({int(churned[rows].sum())}) to learn from; run larger campaigns"
            )
        data = lgb.Dataset(x[rows], label=churned[rows].astype(float))
        boosters.append(lgb.train({**PARAMS, "seed": seed}, data, num_boost_round=ROUNDS))
    return boosters[0], boosters[1]


def _prevented_churn(treated_model: Any, control_model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(control_model.predict(x)) - np.asarray(treated_model.predict(x))


def _qini(order_score: np.ndarray, treated: np.ndarray, kept: np.ndarray) -> float:
    from campaigns.evaluation import qini_curve

    order = np.argsort(-order_score, kind="stable")
    return float(qini_curve(treated[order], kept[order])["qini_coefficient"])


def _kept_top(order_score: np.ndarray, true_effect: np.ndarray, share: float) -> float:
    """Customers kept (expected) by contacting the top `share` by `order_score`."""
    k = int(round(len(order_score) * share))
    top = np.argsort(-order_score, kind="stable")[:k]
    return float(-np.nansum(true_effect[top]))


def train_response_model(settings: Settings, *, seed: int | None = None) -> dict[str, Any]:
    """Fit, judge on held-out members, log to MLflow and register `clm-uplift`."""
    from campaigns.registry import Registry

    seed = settings.training.seed if seed is None else seed
    registry = Registry.for_settings(settings)
    try:
        data, features = training_set(settings, registry)
    finally:
        registry.close()
    rng = np.random.default_rng(seed)
    held = rng.random(len(data)) < HOLDOUT_SHARE
    x = data[features].to_numpy(float)
    treated = data["treated"].to_numpy(bool)
    churned = data["churned"].to_numpy(bool)
    model_t, model_c = fit_t_learner(x[~held], treated[~held], churned[~held], seed)
    uplift = _prevented_churn(model_t, model_c, x[held])
    kept = ~churned[held]
    metrics: dict[str, float] = {
        "rows_train": float((~held).sum()),
        "rows_holdout": float(held.sum()),
        "qini_uplift": _qini(uplift, treated[held], kept),
        "qini_churn_risk": _qini(data["churn_score"].to_numpy(float)[held], treated[held], kept),
    }
    true_effect = data["true_effect"].to_numpy(float)[held]
    if np.isfinite(true_effect).any():
        metrics["qini_oracle"] = _qini(-np.nan_to_num(true_effect), treated[held], kept)
        risk = data["churn_score"].to_numpy(float)[held]
        metrics["kept_top30_uplift"] = _kept_top(uplift, true_effect, TOP_SHARE)
        metrics["kept_top30_churn_risk"] = _kept_top(risk, true_effect, TOP_SHARE)
        metrics["kept_top30_oracle"] = _kept_top(-true_effect, true_effect, TOP_SHARE)
    passed = metrics["qini_uplift"] > 0.0
    version = _register(settings, model_t, model_c, features, metrics, passed, data)
    return {"version": version, "champion": passed, "metrics": metrics, "features": len(features)}


def _register(
    settings: Settings,
    model_t: Any,
    model_c: Any,
    features: list[str],
    metrics: dict[str, float],
    passed: bool,
    data: pd.DataFrame,
) -> str:
    from mlflow.exceptions import MlflowException

    from clm.mlflow_access import client, experiment_id

    mlflow = client(settings)
    run = mlflow.create_run(
        experiment_id(settings, settings.mlflow.training_experiment, mlflow_client=mlflow),
        run_name="uplift",
        tags={"clm.family": "uplift"},
    )
    run_id = str(run.info.run_id)
    mlflow.log_param(run_id, "learner", "T-learner (LightGBM, one booster per arm)")
    mlflow.log_param(run_id, "campaigns", json.dumps(sorted(set(data["campaign_id"].tolist()))))
    mlflow.log_param(run_id, "rounds", ROUNDS)
    for key, value in metrics.items():
        mlflow.log_metric(run_id, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        model_t.save_model(str(folder / "treatment.txt"))
        model_c.save_model(str(folder / "control.txt"))
        manifest = {
            "family": "uplift",
            "learner": "t-learner",
            "outcome": "churn_90d",
            "uplift": "p(churn | control) - p(churn | treatment)",
            "boosters": {"treatment": "treatment.txt", "control": "control.txt"},
            "features": features,
            "feature_service": FEATURE_SERVICE,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        mlflow.log_artifacts(run_id, str(folder), "model")
    mlflow.set_terminated(run_id)
    try:
        mlflow.get_registered_model(REGISTERED_NAME)
    except MlflowException:
        mlflow.create_registered_model(
            REGISTERED_NAME, description="Who a retention contact keeps (clm train uplift)."
        )
    source = f"{mlflow.get_run(run_id).info.artifact_uri}/model"
    version = str(
        mlflow.create_model_version(
            REGISTERED_NAME,
            source,
            run_id=run_id,
            tags={
                "clm.family": "uplift",
                "clm.feature_service": FEATURE_SERVICE,
                "clm.features": json.dumps(features),
                "clm.run_id": run_id,
                "clm.gate": "passed" if passed else "failed: held-out Qini not above random",
            },
        ).version
    )
    mlflow.set_registered_model_alias(REGISTERED_NAME, settings.aliases.challenger, version)
    if passed:
        mlflow.set_registered_model_alias(REGISTERED_NAME, settings.aliases.champion, version)
    return version
