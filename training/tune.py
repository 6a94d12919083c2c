"""Optuna (TPE) tuning of a family's LightGBM parameters, with pruning and early stopping.

One study per family and data (its name carries the feature service and the
snapshot range), in `settings.optuna_storage`: SQLite by default, PostgreSQL in
production so several workers can add trials to the same study. A trial trains
every booster of the family with the same parameters; its value is the family's
validation metric (mean AUC for binary families, multiclass log loss for stage).
The tuned parameters are kept only if they beat the defaults on validation.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clm.progress import step_progress
from training.train import DEFAULT_PARAMS, MAX_ROUNDS, Task, fit

if TYPE_CHECKING:
    import optuna

    from clm.settings import Settings

log = logging.getLogger(__name__)

# Trials train on at most this many rows per booster (a random sample of customers'
# training rows) and stop early on at most as many validation rows: tuning ranks
# parameters, it does not need every row, and the final booster is fitted on the
# whole training split and stopped on the whole validation split.
TUNING_MAX_ROWS = 50_000
# A family with more boosters than this (propensity: one per product) is tuned on this
# many of them, the ones with the most positive training rows, when its training rows
# are sampled: one parameter set serves all products, and eight boosters per trial made
# 20 trials take an hour at 20k customers. Defaults are scored on the same boosters.
TUNING_MAX_TASKS = 3
# Report to the pruner every few rounds: each report is a write to the study storage.
REPORT_EVERY = 25


@dataclass
class TuningResult:
    params: dict[str, Any]
    tuned: bool  # True when Optuna's best beat the defaults
    default_value: float
    best_value: float | None
    trials: int
    pruned: int
    study_name: str | None
    direction: str
    # The chosen parameters' boosters when they were fitted on every training row:
    # the final model then needs no refit.
    ready_boosters: dict[str, Any] | None = None


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        # From 0.05: rates below it won trials by a hair and made the final boosters 3x as
        # many trees (stage at 0.03: 1,152 rounds x 6 classes, the longest step of a run).
        "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 500, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-3, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def _pruning_callback(trial: optuna.Trial, task: Task, offset: int) -> Callable[..., None]:
    """LightGBM callback: report the validation metric to Optuna and stop a hopeless trial."""
    import optuna

    def callback(env: Any) -> None:
        if (env.iteration + 1) % REPORT_EVERY:
            return
        for data_name, metric, value, _ in env.evaluation_result_list:
            if data_name == "validation" and metric == task.metric:
                trial.report(float(value), offset + env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(
                        f"{task.key}: {metric}={value:.4f} at round {env.iteration + 1}"
                    )

    callback.order = 30  # type: ignore[attr-defined]  # after early stopping's bookkeeping
    return callback


def _sample(task: Task, split: str, seed: int, customers: np.ndarray) -> np.ndarray | None:
    """Positions of a sample of whole customers' rows of `split` (None: take them all).

    Whole customers, so a customer's months stay together as in the full split.
    `customers`: an integer code per row of the task's source (`_customer_codes`).
    """
    positions = task.positions[split]
    if len(positions) <= TUNING_MAX_ROWS:
        return None
    codes = customers[positions]
    unique = np.unique(codes)
    rng = np.random.default_rng(seed)
    share = TUNING_MAX_ROWS / len(positions)
    chosen = rng.choice(unique, size=max(1, int(len(unique) * share)), replace=False)
    # Integer codes: np.isin on the id strings (object arrays) compares every row with
    # every chosen id, 190 s of a 20k-customer run.
    return positions[np.isin(codes, chosen)]


def _customer_codes(task: Task) -> np.ndarray:
    """An integer per row of the task's source, one per customer, numbered in id order (as
    `np.unique` orders the ids, so a seed picks the same customers as it did on the ids)."""
    import pandas as pd

    codes, _ = pd.factorize(task.source["customer_id"], sort=True)
    return np.asarray(codes)


def _samples(
    tasks: list[Task], seed: int
) -> dict[str, tuple[np.ndarray | None, np.ndarray | None]]:
    """Each task's tuning rows (train, validation), drawn once so every trial sees the same."""
    out = {}
    codes: dict[int, np.ndarray] = {}  # tasks of a family share one source frame
    for task in tasks:
        if id(task.source) not in codes:
            codes[id(task.source)] = _customer_codes(task)
        customers = codes[id(task.source)]
        train = _sample(task, "train", seed, customers)
        # Validation is only sampled with training rows: a full-data trial's boosters are
        # reused as the final model and must have stopped on the whole validation split.
        out[task.key] = (
            train,
            None if train is None else _sample(task, "validation", seed + 1, customers),
        )
    return out


def tuning_tasks(tasks: list[Task]) -> list[Task]:
    """The boosters a trial trains: all, or the `TUNING_MAX_TASKS` with most positives when
    the family is large (sampled) and has more boosters than that."""
    sampled = any(len(task.positions["train"]) > TUNING_MAX_ROWS for task in tasks)
    if not sampled or len(tasks) <= TUNING_MAX_TASKS:
        return tasks

    def positives(task: Task) -> float:
        targets = task.targets if task.targets is not None else task.target(task.source)
        return float(np.nansum(targets[task.positions["train"]]))

    ranked = sorted(tasks, key=lambda t: (-positives(t), t.key))
    return ranked[:TUNING_MAX_TASKS]


def evaluate(
    tasks: list[Task],
    features: list[str],
    params: dict[str, Any],
    *,
    seed: int,
    trial: optuna.Trial | None = None,
    samples: dict[str, tuple[np.ndarray | None, np.ndarray | None]] | None = None,
    threads: int = 1,
    pool: Executor | None = None,
) -> tuple[float, dict[str, Any]]:
    """Family validation value of `params` (mean of its boosters' best validation metric), and
    the boosters; the boosters train side by side on `pool` when one is given."""
    samples = _samples(tasks, seed) if samples is None else samples

    def one(i: int, task: Task) -> tuple[Any, float]:
        callbacks = [_pruning_callback(trial, task, i * MAX_ROUNDS)] if trial is not None else None
        train, validation = samples[task.key]
        return fit(
            task,
            features,
            params,
            seed=seed,
            train=train,
            validation=validation,
            callbacks=callbacks,
            threads=threads,
        )

    if pool is None or len(tasks) == 1:
        results = [one(i, task) for i, task in enumerate(tasks)]
    else:
        futures = [pool.submit(one, i, task) for i, task in enumerate(tasks)]
        results = [future.result() for future in futures]  # a pruned booster raises here
    boosters = {task.key: booster for task, (booster, _) in zip(tasks, results, strict=True)}
    return float(np.mean([best for _, best in results])), boosters


def study_name(family: str, feature_service: str, lineage: dict[str, Any]) -> str:
    splits = lineage.get("splits", {})
    first = splits.get("train", {}).get("first_snapshot", "na")
    last = splits.get("test", {}).get("last_snapshot", "na")
    return f"clm-{family}-{feature_service}-{first}-{last}"


def _storage(settings: Settings) -> Any:
    import optuna

    url = settings.optuna_storage
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # A heartbeat lets a shared study mark trials of a crashed worker as failed. One at a
    # time: families tune side by side, and on a new database each storage creates the
    # tables ("table studies already exists" for all but the first).
    with _STORAGE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=120)


_STORAGE_LOCK = threading.Lock()


def tune(
    settings: Settings,
    family: str,
    tasks: list[Task],
    features: list[str],
    *,
    trials: int,
    name: str,
    progress: bool = True,
    pool: Executor | None = None,
    advance: Callable[[], None] | None = None,
) -> TuningResult:
    """Run `trials` Optuna trials (0: defaults only) and pick the better of tuned vs defaults.

    Trials run one after the other (each sees the ones before it, so a seed gives the same
    study); a trial's boosters train side by side on `pool`. `advance` is called after each
    trial (default: a progress bar of its own when `progress`).
    """
    seed = settings.training.seed
    higher = tasks[0].higher_is_better
    direction: Literal["maximize", "minimize"] = "maximize" if higher else "minimize"
    full = all(len(task.positions["train"]) <= TUNING_MAX_ROWS for task in tasks)
    if trials <= 0 and not full:
        # Nothing to compare: the final fit on every row is all that is needed.
        return TuningResult(
            dict(DEFAULT_PARAMS), False, float("nan"), None, 0, 0, None, direction, None
        )
    tasks = tuning_tasks(tasks)
    samples = _samples(tasks, seed)
    threads = settings.training.threads
    default_value, boosters = evaluate(
        tasks, features, DEFAULT_PARAMS, seed=seed, samples=samples, threads=threads, pool=pool
    )
    default_boosters = boosters if full else None
    if trials <= 0:
        return TuningResult(
            dict(DEFAULT_PARAMS),
            False,
            default_value,
            None,
            0,
            0,
            None,
            direction,
            default_boosters,
        )

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=_storage(settings),
        direction=direction,
        load_if_exists=True,  # several workers share one study
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=REPORT_EVERY * 2),
    )

    # Boosters of this worker's best trial, when trials see every training row: the
    # final model is then the trial's, with no refit.
    kept: dict[int, dict[str, Any]] = {}
    best_so_far = [default_value]

    def objective(trial: optuna.Trial) -> float:
        value, trial_boosters = evaluate(
            tasks,
            features,
            search_space(trial),
            seed=seed,
            trial=trial,
            samples=samples,
            threads=threads,
            pool=pool,
        )
        better = value > best_so_far[0] if higher else value < best_so_far[0]
        if full and better:
            kept.clear()
            kept[trial.number] = trial_boosters
            best_so_far[0] = value
        return value

    with step_progress(f"tuning {family}", trials, progress and advance is None) as step:
        tick = advance or step
        study.optimize(
            objective, n_trials=trials, callbacks=[lambda s, t: tick()], gc_after_trial=True
        )

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    if not done:
        return TuningResult(
            dict(DEFAULT_PARAMS),
            False,
            default_value,
            None,
            len(study.trials),
            pruned,
            name,
            direction,
            default_boosters,
        )
    best = study.best_trial
    best_value = float(best.value) if best.value is not None else float("nan")
    beats = best_value > default_value if higher else best_value < default_value
    params = {**DEFAULT_PARAMS, **best.params} if beats else dict(DEFAULT_PARAMS)
    log.info(
        "%s: defaults %.4f, best of %d trials %.4f -> keeping %s",
        family,
        default_value,
        len(study.trials),
        best_value,
        "tuned" if beats else "defaults",
    )
    return TuningResult(
        params,
        beats,
        default_value,
        best_value,
        len(study.trials),
        pruned,
        name,
        direction,
        kept.get(best.number) if beats else default_boosters,
    )
