"""`clm train`: training set -> tuning -> final boosters -> evaluation -> MLflow run -> registry."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clm import mlflow_access
from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.errors import ClmError
from clm.progress import ParallelBars
from clm.settings import FAMILIES
from training import baselines, evaluate
from training.booster_model import BoosterModel
from training.data import TrainingSet, load_training_sets, stage_index, unsupported_reason
from training.model_format import REFERENCE_ROWS, log_family_model, manifest_for
from training.train import Task, fit, stratified_rows, tasks_for
from training.tune import TuningResult, study_name, tune

if TYPE_CHECKING:
    import pandas as pd

    from clm.settings import Settings

log = logging.getLogger(__name__)


class TrainingError(ClmError):
    """Training cannot produce a model from this data."""


@dataclass
class FamilyResult:
    """What `clm train` did for one family: the version, its gates and its baselines."""

    family: str
    registered_name: str
    version: str
    champion: bool
    # The test metrics a reader compares (auc / mean_auc / log_loss / macro_f1 ...).
    test: dict[str, float]
    # Baselines on the same test rows (recency_auc, bgnbd_auc, base_rate_log_loss, ...).
    baselines: dict[str, float]
    gates: list[dict[str, Any]]
    oracle: dict[str, float]

    @property
    def failed_gates(self) -> list[dict[str, Any]]:
        return [g for g in self.gates if not g["passed"]]


@dataclass
class TrainReport:
    """`run_train`'s outcome: trained families and, for the others, why not."""

    results: dict[str, FamilyResult]
    skipped: dict[str, str]

    @property
    def versions(self) -> dict[str, str]:
        return {family: r.version for family, r in self.results.items()}


def run_train(
    settings: Settings, *, model: str, trials: int | None, progress: bool = True
) -> TrainReport:
    """Train, log and register each family the data supports; skip the others with a reason.

    The families are tuned and fitted side by side, their boosters sharing one pool of
    `training.workers` threads (one LightGBM booster each); each family is evaluated,
    logged to MLflow and registered in this thread, in family order, as soon as its
    boosters are ready. `model="all"` trains what it can and raises only when nothing
    trained; a family asked for by name raises when it cannot be trained.
    """
    import pandas as pd

    from features import store

    families: tuple[str, ...] = FAMILIES if model == "all" else (model,)
    if model != "all" and model not in FAMILIES:
        raise TrainingError(
            f"unknown model {model!r}; expected one of {', '.join(FAMILIES)} or all"
        )
    n_trials = settings.training.trials if trials is None else trials
    if n_trials < 0:
        raise TrainingError(f"--trials must be >= 0, got {n_trials}")
    labels = store.load_labels(settings)
    labels["snapshot_ts"] = pd.to_datetime(labels["snapshot_ts"], utc=True)
    skipped: dict[str, str] = {}
    for family in families:
        reason = unsupported_reason(settings, labels, family)
        if reason is not None:
            skipped[family] = reason
    del labels
    if model != "all" and skipped:
        raise TrainingError(f"{model}: cannot train: {skipped[model]}")
    families = tuple(f for f in families if f not in skipped)
    results: dict[str, FamilyResult] = {}
    if families:
        # Families sharing a feature set share one Feast join. Every set is read before the
        # families start: they train at the same time anyway, and the fetch's progress bar
        # cannot be drawn beside the families' (rich draws one live display at a time).
        training_sets = list(load_training_sets(settings, families, progress=progress))
        with (
            _booster_pool(settings) as pool,
            ThreadPoolExecutor(max_workers=len(families), thread_name_prefix="clm-family") as each,
            ParallelBars(progress) as bars,
        ):
            fitting: dict[str, Future[Fitted]] = {
                training_set.family: each.submit(
                    fit_family, settings, training_set, trials=n_trials, pool=pool, bars=bars
                )
                for training_set in training_sets
            }
            del training_sets
            for family in list(fitting):
                try:
                    fitted = fitting.pop(family).result()
                except ClmError as exc:
                    if model != "all":
                        raise
                    skipped[family] = str(exc)
                    continue
                results[family] = log_family(settings, fitted, trials=n_trials)
                del fitted  # its frame and boosters are freed once logged
    if not results:
        raise TrainingError(
            "no model family could be trained: "
            + "; ".join(f"{f}: {why}" for f, why in skipped.items())
        )
    return TrainReport(results, skipped)


def worker_count(settings: Settings) -> int:
    """Boosters trained at once: `training.workers`, 0 = one per core."""
    return settings.training.workers or os.cpu_count() or 1


@contextmanager
def _booster_pool(settings: Settings) -> Iterator[ThreadPoolExecutor]:
    # Threads suffice: LightGBM releases the GIL while it trains (ctypes calls).
    with ThreadPoolExecutor(
        max_workers=worker_count(settings), thread_name_prefix="clm-booster"
    ) as pool:
        yield pool


@dataclass
class Fitted:
    """A family's final boosters and how they were chosen, ready to evaluate and log."""

    training_set: TrainingSet
    tuning: TuningResult
    boosters: dict[str, Any]


def _fit_all(
    tasks: list[Task],
    features: list[str],
    params: dict[str, Any],
    settings: Settings,
    pool: Executor,
    advance: Callable[[], None],
) -> dict[str, Any]:
    """The final boosters, side by side on `pool`: each trains on a stratified sample of at
    most `training.final_max_rows` training rows and stops early on as many validation rows
    (`stratified_rows`: weighted by 1/rate, every rare-class row kept)."""
    seed = settings.training.seed
    limit = settings.training.final_max_rows

    def one(task: Task) -> Any:
        booster, _ = fit(
            task,
            features,
            params,
            seed=seed,
            train=stratified_rows(task, "train", limit, seed),
            validation=stratified_rows(task, "validation", limit, seed + 1),
            threads=settings.training.threads,
        )
        advance()
        return booster

    futures = {task.key: pool.submit(one, task) for task in tasks}
    return {key: future.result() for key, future in futures.items()}


def fit_family(
    settings: Settings,
    training_set: TrainingSet,
    *,
    trials: int,
    pool: Executor,
    bars: ParallelBars,
) -> Fitted:
    """Tune a family and fit its final boosters (on `pool`)."""
    family = training_set.family
    features = training_set.features
    tasks = tasks_for(training_set)
    if not tasks:
        raise TrainingError(
            f"{family}: no label has both outcomes in the train and validation splits; "
            "simulate or ingest more customers or months"
        )
    name = study_name(family, training_set.feature_service, training_set.lineage)
    tuning = tune(
        settings,
        family,
        tasks,
        features,
        trials=trials,
        name=name,
        progress=False,
        pool=pool,
        advance=bars.step(family, "tuning", trials) if trials > 0 else None,
    )
    boosters = tuning.ready_boosters or _fit_all(
        tasks,
        features,
        tuning.params,
        settings,
        pool,
        bars.step(family, f"training {len(tasks)} booster(s)", len(tasks)),
    )
    return Fitted(training_set, tuning, boosters)


def train_family(
    settings: Settings, training_set: TrainingSet, *, trials: int, progress: bool = True
) -> FamilyResult:
    """Tune, fit, evaluate, log one family to MLflow and register it."""
    with _booster_pool(settings) as pool, ParallelBars(progress) as bars:
        fitted = fit_family(settings, training_set, trials=trials, pool=pool, bars=bars)
    return log_family(settings, fitted, trials=trials)


def log_family(settings: Settings, fitted: Fitted, *, trials: int) -> FamilyResult:
    """Evaluate a fitted family against its baselines, log it to MLflow and register it.

    The version may become `champion` (when there is none) only if it passes its
    baseline gates (training.baselines); otherwise it is `challenger` only, with the
    failed gates in its tags.
    """
    import mlflow

    from training import registry, tracking

    training_set, tuning, boosters = fitted.training_set, fitted.tuning, fitted.boosters
    family = training_set.family
    features = training_set.features
    seed = settings.training.seed
    model = BoosterModel(
        manifest_for(
            family, training_set.feature_service, features, {k: f"{k}.txt" for k in boosters}
        ),
        boosters,
    )

    test = training_set.part("test")
    validation = training_set.part("validation")
    test_scores = model.score(test)
    test_metrics = evaluate.family_metrics(family, test_scores, test)
    val_metrics = evaluate.family_metrics(family, model.score(validation), validation)
    logged: dict[str, float] = {f"test_{k}": v for k, v in test_metrics.items()}
    logged.update({f"validation_{k}": v for k, v in val_metrics.items()})
    truth = tracking.simulated_truth(settings)
    oracle: dict[str, float] = {}
    compared = baselines.compare(training_set, test, test_scores)
    if family == "stage":
        logged.update({f"test_{k}": v for k, v in compared.items() if k.startswith("baseline_")})
        logged["baseline_stay_rate"] = compared["stay_rate"]
    else:
        logged.update(
            {
                f"test_{k}": v
                for k, v in compared.items()
                if "recency" in k or "bgnbd" in k or "base_rate" in k
            }
        )
        oracle = _oracle(family, truth, test, test_scores)
        logged.update(oracle)
        if "oracle_auc" in oracle:
            logged["oracle_auc_gap"] = oracle["oracle_auc"] - oracle["test_auc_oracle_rows"]
        if "oracle_mean_auc" in oracle:
            logged["oracle_mean_auc_gap"] = (
                oracle["oracle_mean_auc"] - oracle["test_mean_auc_oracle_rows"]
            )

    gates = baselines.baseline_gates(family, compared)
    eligible = all(g["passed"] for g in gates)

    lineage = training_set.lineage
    split_info = lineage["splits"]
    experiment_id = mlflow_access.experiment_id(settings, settings.mlflow.training_experiment)
    # The fluent API (runs, log_model, registering a logged model) needs MLflow's globals:
    # set for this block only, then put back.
    with (
        mlflow_access.fluent_tracking(settings),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=tracking.run_name(family, lineage, tuning.trials),
            description=tracking.run_description(
                family,
                training_set.feature_service,
                len(features),
                lineage,
                trials=tuning.trials,
                tuned=tuning.tuned,
                logged=logged,
            ),
        ) as run,
    ):
        tracking.log_trials(
            settings,
            mlflow_access.client(settings),
            experiment_id,
            run.info.run_id,
            family=family,
            study_name=tuning.study_name,
        )
        mlflow.set_tags(
            {
                "clm.family": family,
                "clm.feature_service": training_set.feature_service,
                **tracking.git_commit(),
            }
        )
        mlflow.log_params({f"lgb.{k}": v for k, v in tuning.params.items()})
        mlflow.log_params(
            {
                "family": family,
                "feature_service": training_set.feature_service,
                "n_features": len(features),
                "boosters": ",".join(boosters),
                "trials_requested": trials,
                "trials_in_study": tuning.trials,
                "trials_pruned": tuning.pruned,
                "tuned_params_kept": tuning.tuned,
                "optuna_study": tuning.study_name or "",
                "train_snapshots": f"{split_info['train']['first_snapshot']}..{split_info['train']['last_snapshot']}",
                "validation_snapshots": f"{split_info['validation']['first_snapshot']}..{split_info['validation']['last_snapshot']}",
                "test_snapshots": f"{split_info['test']['first_snapshot']}..{split_info['test']['last_snapshot']}",
            }
        )
        mlflow.log_metrics(
            {k: float(v) for k, v in logged.items() if v is not None and np.isfinite(v)}
        )
        mlflow.log_metrics(
            {
                # NaN when defaults were not scored on a sample (`--trials 0` on big data).
                **(
                    {"tuning_default_value": tuning.default_value}
                    if np.isfinite(tuning.default_value)
                    else {}
                ),
                **(
                    {"tuning_best_value": tuning.best_value}
                    if tuning.best_value is not None
                    else {}
                ),
                **{
                    f"rows_{s}": float(split_info[s]["rows"])
                    for s in ("train", "validation", "test")
                },
            }
        )
        mlflow.log_dict(settings.public_dict(), "settings.json")
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.log_dict({"features": features}, "features.json")
        _log_dataset(training_set)
        _log_plots(family, model, test, test_scores)
        reference = _reference_sample(training_set, model, seed)
        model_uri = log_family_model(
            family,
            training_set.feature_service,
            features,
            boosters,
            test,
            reference,
            mlflow_access.client(settings),
        )
        primary = settings.promotion.primary_metric[family]
        version = registry.register_version(
            settings,
            family,
            model_uri,
            run.info.run_id,
            features=features,
            feature_service=training_set.feature_service,
            extra_tags={
                f"clm.test_{primary}": f"{test_metrics.get(primary, float('nan')):.6f}",
                "clm.test_snapshots": json.dumps(split_info["test"]["snapshots"]),
                "clm.baseline_gates": json.dumps({g["gate"]: g["passed"] for g in gates}),
                "clm.baseline_failed": json.dumps([g["reason"] for g in gates if not g["passed"]])[
                    :5000
                ],
            },
            may_be_champion=eligible,
        )
        mlflow.set_tag("clm.registered_version", version)
        mlflow.set_tag("clm.baseline_gates_passed", str(eligible).lower())
        mlflow_access.client(settings).update_model_version(
            settings.models.family(family).registered_name,
            version,
            description=tracking.version_description(
                family, training_set.feature_service, lineage, logged
            ),
        )
    name = settings.models.family(family).registered_name
    champion = registry.is_champion(settings, family, version)
    log.info("%s: registered %s version %s (champion: %s)", family, name, version, champion)
    shown = ("auc", "mean_auc", "macro_f1", "log_loss")
    return FamilyResult(
        family=family,
        registered_name=name,
        version=version,
        champion=champion,
        test={k: float(v) for k, v in test_metrics.items() if k in shown},
        baselines={
            k: float(v) for k, v in compared.items() if k not in test_metrics and k != "stay_rate"
        },
        gates=gates,
        oracle=oracle,
    )


def _oracle(
    family: str, truth: pd.DataFrame | None, test: pd.DataFrame, scores: pd.DataFrame
) -> dict[str, float]:
    """The simulator's oracle AUC next to the model's AUC on the very same test rows."""
    from training.tracking import oracle_auc

    if truth is None:
        return {}
    if family == "churn":
        found = oracle_auc(
            truth, test, "churn_90d", "churn_hazard_90d", scores["churn_probability"].to_numpy()
        )
        if not found:
            return {}
        return {
            "oracle_auc": found["oracle_auc"],
            "test_auc_oracle_rows": found["model_auc"],
            "oracle_row_coverage": found["coverage"],
        }
    out: dict[str, float] = {}
    oracles, models = [], []
    for product in PROPENSITY_PRODUCTS:
        label = f"adopt_{product}_90d"
        column = f"propensity_{product}"
        if column not in scores.columns:
            continue
        known = test[label].notna().to_numpy()
        found = oracle_auc(
            truth,
            test[known],
            label,
            f"p_adopt_{product}_90d",
            scores.loc[known, column].to_numpy(),
        )
        if found:
            out[f"oracle_{product}_auc"] = found["oracle_auc"]
            out[f"test_{product}_auc_oracle_rows"] = found["model_auc"]
            oracles.append(found["oracle_auc"])
            models.append(found["model_auc"])
    if oracles:
        out["oracle_mean_auc"] = float(np.mean(oracles))
        out["test_mean_auc_oracle_rows"] = float(np.mean(models))
    return out


def _log_dataset(training_set: TrainingSet) -> None:
    """MLflow dataset lineage per split: schema and digest of the feature service's rows.

    MLflow infers the schema value by value, so it gets the first rows only; the full
    row counts, snapshot range and label rates are in lineage.json and the params.
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    columns = ["customer_id", "snapshot_ts", *training_set.features]
    frame = training_set.frame
    split = frame["split"].to_numpy()
    for name in ("train", "validation", "test"):
        # Positions, not `part(name)`: a float64 copy of the training split is ~1.5 GB at
        # 100k customers, for 1,000 rows.
        at = np.flatnonzero(split == name)
        head = frame.iloc[at[:1000]][columns].astype(
            dict.fromkeys(training_set.features, "float64")
        )
        dataset = from_pandas(head, name=f"{training_set.feature_service}:{name}")
        mlflow.log_input(dataset, context=name, tags={"rows": str(len(at))})


def _log_plots(family: str, model: BoosterModel, test: pd.DataFrame, scores: pd.DataFrame) -> None:
    from training import tracking

    tracking.log_importance_plot(family, model.boosters)
    if family == "churn":
        y = test["churn_90d"].astype(float).to_numpy()
        tracking.log_binary_plots("churn", {"churn": (y, scores["churn_probability"].to_numpy())})
    elif family == "propensity":
        curves = {}
        for product in model.boosters:
            label = f"adopt_{product}_90d"
            known = test[label].notna().to_numpy()
            y = test.loc[known, label].astype(float).to_numpy()
            if len(y) and y.min() != y.max():
                curves[product] = (y, scores.loc[known, f"propensity_{product}"].to_numpy())
        if curves:
            tracking.log_binary_plots("propensity", curves)
    else:
        y = stage_index(test["stage_next"])
        known = y >= 0
        tracking.log_stage_plot(
            y[known], scores[[f"stage_prob_{s}" for s in STAGES]].to_numpy()[known], list(STAGES)
        )


def _reference_sample(training_set: TrainingSet, model: BoosterModel, seed: int) -> pd.DataFrame:
    """Validation rows with features, scores, segments and labels: monitoring's reference."""
    from training.data import label_columns

    validation = training_set.part("validation")
    sample = validation.sample(n=min(REFERENCE_ROWS, len(validation)), random_state=seed)
    labels = [c for c in label_columns(training_set.family) if c in sample.columns]
    columns = ["customer_id", "snapshot_ts", *training_set.features]
    out = sample[columns].reset_index(drop=True)
    out = out.join(model.score(sample).reset_index(drop=True))
    out["value_tier"] = sample["value_tier"].to_numpy()
    out["stage"] = sample["stage"].to_numpy()
    for label in labels:
        if label not in out.columns:
            out[label] = sample[label].to_numpy()
    return out
