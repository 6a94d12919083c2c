"""LightGBM trainers for the three families, on an out-of-time training set.

A family is a list of tasks (churn: one binary task; propensity: one binary task
per product, on non-holders only; stage: one multiclass task). Every task trains
on the `train` split and stops early on `validation`; the test split is only
ever scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from training.data import TrainingDataError, TrainingSet, stage_index

if TYPE_CHECKING:
    import lightgbm as lgb
    import pandas as pd

MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 30
# Defaults that work on tabular bank data without tuning; `--trials 0` uses them.
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.08,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l1": 0.0,
    "lambda_l2": 1.0,
    # Coarser histograms than LightGBM's 255 bins: faster, and bank features rarely need more.
    "max_bin": 127,
}


@dataclass
class Task:
    """One booster to train: `key` is its name in the manifest."""

    key: str
    objective: str  # "binary" or "multiclass"
    label: str
    # Rows are positions into the family's shared frame, taken only when a booster is
    # fitted: eight propensity tasks holding their own copies cost gigabytes at 100k customers.
    source: pd.DataFrame
    positions: dict[str, np.ndarray]
    num_class: int = 1
    # The family's features as one float32 matrix (rows of `source`) and this task's
    # targets for every row, shared by all tasks: a fit gathers its rows from them.
    matrix: np.ndarray | None = None
    targets: np.ndarray | None = None

    def rows(self, split: str) -> pd.DataFrame:
        return self.source.iloc[self.positions[split]]

    @property
    def train(self) -> pd.DataFrame:
        return self.rows("train")

    @property
    def validation(self) -> pd.DataFrame:
        return self.rows("validation")

    @property
    def test(self) -> pd.DataFrame:
        return self.rows("test")

    @property
    def metric(self) -> str:
        # Early stopping and pruning follow the metric the family is judged on.
        return "auc" if self.objective == "binary" else "multi_logloss"

    @property
    def higher_is_better(self) -> bool:
        return self.objective == "binary"

    def target(self, part: pd.DataFrame) -> np.ndarray:
        if self.objective == "multiclass":
            return stage_index(part[self.label])
        return part[self.label].astype(float).to_numpy()

    def xy(self, positions: np.ndarray, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (float32) and targets of the rows at `positions` of `source`."""
        if self.matrix is None:
            self.matrix = self.source[features].to_numpy(dtype=np.float32)
        if self.targets is None:
            self.targets = self.target(self.source)
        return self.matrix[positions], self.targets[positions]


def tasks_for(training_set: TrainingSet) -> list[Task]:
    """Split a family's training set into its boosters' tasks."""
    family = training_set.family
    frame = training_set.frame
    split = frame["split"].to_numpy()
    # One float32 copy of the features for all of the family's boosters.
    matrix = frame[training_set.features].to_numpy(dtype=np.float32)

    def positions(keep: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: np.flatnonzero(keep & (split == name)) for name in ("train", "validation", "test")
        }

    if family == "churn":
        churn = frame["churn_90d"].to_numpy(dtype=float)
        for name in ("train", "validation"):
            outcomes = np.unique(churn[split == name])
            if len(outcomes) < 2:
                raise TrainingDataError(
                    f"churn: the {name} split has only one churn_90d outcome "
                    f"({outcomes.tolist()} in {int((split == name).sum())} rows); "
                    "check features/labels.parquet (`clm features build`) or use more months"
                )
        every = np.ones(len(frame), dtype=bool)
        return [Task("churn", "binary", "churn_90d", frame, positions(every), 1, matrix, churn)]
    if family == "stage":
        classes = stage_index(frame["stage_next"])
        return [
            Task(
                "stage",
                "multiclass",
                "stage_next",
                frame,
                positions(classes >= 0),
                len(STAGES),
                matrix,
                classes,
            )
        ]
    tasks = []
    for product in PROPENSITY_PRODUCTS:
        label = f"adopt_{product}_90d"
        # Null label = already held: those customers cannot adopt, so they are not rows.
        values = frame[label].to_numpy(dtype=float)
        own = positions(~np.isnan(values))
        if any(len(np.unique(values[own[name]])) < 2 for name in ("train", "validation")):
            continue  # no adoption in a split: nothing to learn or to stop on
        tasks.append(Task(product, "binary", label, frame, own, 1, matrix, values))
    return tasks


def lgb_params(task: Task, params: dict[str, Any], seed: int, threads: int = 0) -> dict[str, Any]:
    out = {
        **DEFAULT_PARAMS,
        **params,
        "objective": task.objective,
        "metric": task.metric,
        "verbosity": -1,
        "seed": seed,
        # Lets min_data_in_leaf change between trials on a fresh Dataset without warnings.
        "feature_pre_filter": False,
        "force_col_wise": True,
        # `training.threads`; 0 = OpenMP's default, every core. Importing `clm` sets
        # OMP_WAIT_POLICY=PASSIVE so idle threads sleep instead of spinning: on a box
        # busier than its cores spinning threads burned ~3x the CPU for the same trees.
        "num_threads": threads,
    }
    if task.objective == "multiclass":
        out["num_class"] = task.num_class
    return out


def fit(
    task: Task,
    features: list[str],
    params: dict[str, Any],
    *,
    seed: int,
    train: np.ndarray | None = None,
    validation: np.ndarray | None = None,
    callbacks: list[Callable[..., None]] | None = None,
    threads: int = 0,
) -> tuple[lgb.Booster, float]:
    """Train one booster with early stopping; returns it and its best validation metric.

    `train` / `validation` are positions into the task's rows (default: the whole
    training / validation split), e.g. a tuning trial's sample.
    """
    import lightgbm as lgb

    train_at = task.positions["train"] if train is None else train
    valid_at = task.positions["validation"] if validation is None else validation
    x, y = task.xy(train_at, features)
    train_set = lgb.Dataset(x, label=y, feature_name=features, free_raw_data=True)
    vx, vy = task.xy(valid_at, features)
    valid_set = lgb.Dataset(vx, label=vy, reference=train_set, free_raw_data=True)
    del x, vx  # the Datasets hold the only references: freed once binned
    booster = lgb.train(
        lgb_params(task, params, seed, threads=threads),
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False),
            *(callbacks or []),
        ],
    )
    best = booster.best_score["validation"][task.metric]
    # Keep only the trees up to the best iteration, so the saved model is what was validated.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    return booster, float(best)


def predict(
    task_objective: str, booster: lgb.Booster, rows: pd.DataFrame, features: list[str]
) -> np.ndarray:
    values = booster.predict(rows[features].to_numpy(dtype=np.float64))
    return np.asarray(values, dtype=float)
