"""Compiled trees (serving/compiled.py): LightGBM's scores within 1e-9, cached per version,
and a booster that cannot be compiled keeps LightGBM instead of crashing the caller."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clm.domain import STAGES
from clm.settings import Settings
from serving import compiled
from serving.models import LoadedModel

FEATURES = tuple(f"f{i}" for i in range(8))


def _data(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    x[:, 3] = rng.integers(0, 4, size=rows)  # a code-like column, as bank features have
    x[rng.random(x.shape) < 0.15] = np.nan  # missing values: LightGBM learns where they go
    return x


def _model(family: str, seed: int = 0) -> LoadedModel:
    import lightgbm as lgb

    x = _data(3000, seed)
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.isnan(x[:, 1]) + 0.3 * x[:, 3]
    params = {"verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 20, "seed": seed}
    if family == "stage":
        y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, len(STAGES) + 1)[1:-1]))
        params |= {"objective": "multiclass", "num_class": len(STAGES)}
        key, classes = "stage", STAGES
    else:
        y = (signal + np.random.default_rng(seed).normal(size=len(signal)) > 1).astype(float)
        params |= {"objective": "binary"}
        key, classes = "churn", ()
    booster = lgb.train(params, lgb.Dataset(x, label=y, feature_name=list(FEATURES)), 20)
    return LoadedModel(
        family=family,
        registered_name=f"clm-{family}",
        version="7",
        feature_service=f"{family}_v1",
        features=FEATURES,
        boosters={key: booster},
        classes=classes,
    )


@pytest.mark.parametrize("family", ["churn", "stage"])
def test_compiled_scores_equal_lightgbm_with_missing_values(tmp_path: Path, family: str) -> None:
    settings = Settings.load(home=tmp_path, env={})
    model = _model(family)
    fast, outcomes = compiled.compiled_model(settings, model, _data(200, 1))
    assert [o.status for o in outcomes] == ["compiled"], outcomes
    key = next(iter(model.boosters))
    assert isinstance(fast.fast[key], compiled.CompiledPredict)
    rows = _data(5000, 2)
    rows[:50] = np.nan  # whole rows missing
    rows[50:60] = 0.0
    expected = np.asarray(model.boosters[key].predict(rows))
    # Many rows (all cores) and few rows (one thread) take different paths.
    for part in (rows, rows[:7]):
        got = fast.predict(part)
        want = expected[: len(part)]
        assert got.shape == (want.shape if family == "stage" else (len(part),))
        assert np.max(np.abs(got - want)) <= compiled.TOLERANCE
    # Reasons still come from LightGBM's own contributions.
    classes = np.zeros(len(rows), dtype=int) if family == "stage" else None
    assert np.array_equal(
        fast.contributions(key, rows, classes), model.contributions(key, rows, classes)
    )


def test_compiled_trees_are_cached_per_version_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.load(home=tmp_path, env={})
    model = _model("churn")
    sample = _data(200, 1)
    compiled.compiled_model(settings, model, sample)
    folder = compiled.cache_dir(settings, "clm-churn", "7")
    objects = sorted(folder.glob("churn-*.o"))
    assert len(objects) == 1
    record = json.loads(objects[0].with_suffix(".json").read_text())
    assert record["max_difference"] <= compiled.TOLERANCE and record["check_rows"] > 200

    def no_compiler(*args: object) -> dict[str, object]:
        raise AssertionError("a cached booster was compiled again")

    with monkeypatch.context() as patch:
        patch.setattr(compiled, "_compile_in_child", no_compiler)
        again, outcomes = compiled.compiled_model(settings, model, sample)
    assert [o.status for o in outcomes] == ["cached"]
    rows = _data(300, 3)
    assert np.max(np.abs(again.predict(rows) - model.predict(rows))) <= compiled.TOLERANCE

    # A damaged object is never loaded: its digest no longer matches, so it is rebuilt.
    objects[0].write_bytes(b"\0" * 64)
    _, outcomes = compiled.compiled_model(settings, model, sample)
    assert [o.status for o in outcomes] == ["compiled"]
    # Another booster under the same version (a re-registered version) gets its own entry.
    _, outcomes = compiled.compiled_model(settings, _model("churn", seed=5), sample)
    assert [o.status for o in outcomes] == ["compiled"]
    assert len(list(folder.glob("churn-*.o"))) == 2


def test_a_booster_that_cannot_be_compiled_keeps_lightgbm(tmp_path: Path) -> None:
    """A truncated model text (the kind that aborts LightGBM 4.7) fails in the compiler's
    child process; the caller gets LightGBM's predictor back and a reason."""
    model = _model("churn")
    text = model.boosters["churn"].model_to_string()
    outcome, predictor = compiled._one_booster(
        "churn",
        "churn",
        model.fast["churn"],
        text[: len(text) // 3],
        tmp_path / "cache",
        compiled.check_rows(_data(50, 1)),
    )
    assert predictor is None
    assert outcome.status == "lightgbm" and "compiler child failed" in outcome.reason
    assert not list((tmp_path / "cache").glob("*.o"))  # nothing half-written is cached
