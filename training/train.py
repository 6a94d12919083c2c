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


def lgb_params(task: Task, params: dict[str, Any], seed: int, threads: int = 1) -> dict[str, Any]:
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
        # `training.threads` (default 1; 0 = OpenMP's default, every core). Boosters run
        # side by side instead (`training.workers`). Importing `clm` sets
        # OMP_WAIT_POLICY=PASSIVE so idle threads sleep instead of spinning.
        "num_threads": threads,
    }
    if task.objective == "multiclass":
        out["num_class"] = task.num_class
    return out


@dataclass(frozen=True)
class Rows:
    """Positions into a task's rows, with a weight per row (None: all weigh 1)."""

    positions: np.ndarray
    weights: np.ndarray | None = None


def stratified_rows(task: Task, split: str, max_rows: int, seed: int) -> Rows:
    """At most about `max_rows` of a split: each class (0/1, or each stage) keeps its rows up
    to one common quota, larger classes are sampled down to it, and every kept row weighs
    1 / its class's sampling rate.

    The weights make the sample's weighted class mix the split's own, so probabilities stay
    calibrated and weighted metrics estimate the full split's; rare classes (churners,
    adopters, declining customers), where the information is, are all kept. `max_rows` 0 or
    a split no larger than it: every row, unweighted.
    """
    positions = task.positions[split]
    if max_rows <= 0 or len(positions) <= max_rows:
        return Rows(positions)
    if task.targets is None:
        task.targets = task.target(task.source)
    y = np.asarray(task.targets[positions]).astype(np.int64)
    counts = np.bincount(y)
    # The largest quota q with sum(min(count, q)) <= max_rows ("water filling").
    ordered = np.sort(counts)
    quota = max_rows
    for i, count in enumerate(ordered):
        share = (max_rows - ordered[:i].sum()) / (len(ordered) - i)
        if count > share:
            quota = int(share)
            break
    rate = np.minimum(1.0, quota / np.maximum(counts, 1))
    rng = np.random.default_rng(seed)
    keep = rng.random(len(y)) < rate[y]
    return Rows(positions[keep], (1.0 / rate[y[keep]]).astype(np.float32))


def fit(
    task: Task,
    features: list[str],
    params: dict[str, Any],
    *,
    seed: int,
    train: np.ndarray | Rows | None = None,
    validation: np.ndarray | Rows | None = None,
    callbacks: list[Callable[..., None]] | None = None,
    threads: int = 1,
) -> tuple[lgb.Booster, float]:
    """Train one booster with early stopping; returns it and its best validation metric.

    `train` / `validation` are positions into the task's rows, or `Rows` with weights
    (default: the whole training / validation split), e.g. a tuning trial's sample or a
    final booster's stratified sample (`stratified_rows`).
    """
    import lightgbm as lgb

    train_rows = _rows(task, "train", train)
    valid_rows = _rows(task, "validation", validation)
    x, y = task.xy(train_rows.positions, features)
    train_set = lgb.Dataset(
        x, label=y, weight=train_rows.weights, feature_name=features, free_raw_data=True
    )
    vx, vy = task.xy(valid_rows.positions, features)
    valid_set = lgb.Dataset(
        vx, label=vy, weight=valid_rows.weights, reference=train_set, free_raw_data=True
    )
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


def _rows(task: Task, split: str, given: np.ndarray | Rows | None) -> Rows:
    if given is None:
        return Rows(task.positions[split])
    return given if isinstance(given, Rows) else Rows(given)


def predict(
    task_objective: str, booster: lgb.Booster, rows: pd.DataFrame, features: list[str]
) -> np.ndarray:
    values = booster.predict(rows[features].to_numpy(dtype=np.float64))
    return np.asarray(values, dtype=float)
