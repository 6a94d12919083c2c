"""Optuna tuning: pruning through LightGBM's callback, defaults kept unless beaten, shared studies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clm.settings import Settings, TrainingSettings
from tests.training import synthetic
from training.train import DEFAULT_PARAMS, tasks_for
from training.tune import TuningResult, _pruning_callback, tune

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def test_pruning_callback_stops_a_hopeless_trial() -> None:
    import optuna

    from training.train import fit

    ts = synthetic.training_set("churn", customers=300, months=8)
    task = tasks_for(ts)[0]
    # Any validation AUC below 1.0 is "hopeless" for this pruner.
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.0)
    )
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="auc"):
        fit(
            task,
            ts.features,
            {"learning_rate": 0.01},
            seed=0,
            callbacks=[_pruning_callback(trial, task, 0)],
        )


def _check_choice(result: TuningResult) -> None:
    if result.tuned:
        assert result.best_value is not None
        better = result.best_value > result.default_value
        assert better if result.direction == "maximize" else not better
        assert result.params != DEFAULT_PARAMS
    else:
        assert result.params == DEFAULT_PARAMS


def test_tuning_keeps_the_better_of_tuned_and_defaults(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, env={})
    ts = synthetic.training_set("churn", customers=300, months=8)
    result = tune(
        settings, "churn", tasks_for(ts), ts.features, trials=3, name="t-churn", progress=False
    )
    assert result.trials == 3 and result.study_name == "t-churn"
    _check_choice(result)
    assert (tmp_path / "optuna" / "studies.db").is_file()
    none = tune(
        settings, "churn", tasks_for(ts), ts.features, trials=0, name="unused", progress=False
    )
    assert none.params == DEFAULT_PARAMS and none.trials == 0 and none.ready_boosters


@pytest.fixture
def postgres_db() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"clm_optuna_test_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}: {exc}")
    yield f"{POSTGRES}/{name}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.integration
def test_workers_share_a_study_on_postgresql(tmp_path: Path, postgres_db: str) -> None:
    """Two tuning runs (as two workers would) add their trials to the same PostgreSQL study."""
    import optuna

    settings = Settings.load(home=tmp_path, env={}).model_copy(
        update={"training": TrainingSettings(optuna_storage=postgres_db)}
    )
    ts = synthetic.training_set("stage", customers=200, months=8)
    tasks = tasks_for(ts)
    first = tune(settings, "stage", tasks, ts.features, trials=2, name="shared", progress=False)
    second = tune(settings, "stage", tasks, ts.features, trials=2, name="shared", progress=False)
    assert first.trials == 2 and second.trials == 4
    _check_choice(second)
    study = optuna.load_study(study_name="shared", storage=postgres_db)
    assert len(study.trials) == 4
    assert not (tmp_path / "optuna").exists()  # nothing went to the SQLite default


def test_big_families_tune_a_few_boosters_on_the_same_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past TUNING_MAX_ROWS a trial trains the products with most positives on a fixed sample
    of whole customers; the final model is then refitted on every row (no ready boosters)."""
    import numpy as np

    from training import tune as tuning

    ts = synthetic.training_set("propensity", customers=300, months=8)
    tasks = tasks_for(ts)
    assert len(tasks) > tuning.TUNING_MAX_TASKS
    monkeypatch.setattr(tuning, "TUNING_MAX_ROWS", 300)
    chosen = tuning.tuning_tasks(tasks)
    assert len(chosen) == tuning.TUNING_MAX_TASKS
    positives = {t.key: np.nansum(t.targets[t.positions["train"]]) for t in tasks}  # type: ignore[index]
    assert min(positives[t.key] for t in chosen) >= max(
        v for k, v in positives.items() if k not in {t.key for t in chosen}
    )
    samples = tuning._samples(chosen, seed=0)
    again = tuning._samples(chosen, seed=0)  # every trial sees the same rows
    assert all(
        np.array_equal(a, b)  # type: ignore[arg-type]
        for key in samples
        for a, b in zip(samples[key], again[key], strict=True)
    )
    customers = ts.frame["customer_id"].to_numpy()
    for task in chosen:
        train, validation = samples[task.key]
        assert train is not None and validation is not None
        assert 0 < len(train) < len(task.positions["train"])
        assert set(train) <= set(task.positions["train"])
        # whole customers: every training row of a sampled customer is in the sample
        picked = set(customers[train])
        every = task.positions["train"][np.isin(customers[task.positions["train"]], list(picked))]
        assert np.array_equal(np.sort(train), np.sort(every))
    settings = Settings.load(home=tmp_path, env={})
    result = tune(settings, "propensity", tasks, ts.features, trials=2, name="p", progress=False)
    assert result.trials == 2 and result.ready_boosters is None
    _check_choice(result)


def test_families_open_a_new_study_storage_at_the_same_time(tmp_path: Path) -> None:
    """`clm train all` tunes the families side by side: on a new SQLite database every
    storage creates Optuna's tables, and all but the first failed ("table studies already
    exists") before the storages were opened one at a time."""
    import threading

    from training.tune import _storage

    settings = Settings.load(home=tmp_path, env={})
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_storage() -> None:
        start.wait()
        try:
            _storage(settings)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_storage) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
