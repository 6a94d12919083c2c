"""Reading a model directory and loading its boosters safely (clm/model_dir.py,
serving/models.py): a booster that would abort LightGBM is refused, never loaded
in this process. A tiny churn model built here (no bank needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from clm.model_dir import ModelDirError, open_model_dir, read_model_dir
from serving.models import ModelRefused, load_model_dir

FEATURES = [f"x{i}" for i in range(4)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid churn model directory: manifest, model.lgb, golden.parquet."""
    import lightgbm as lgb
    import pandas as pd

    root = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    y = (x[:, 0] + 0.3 * rng.random(400) > 0.6).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1},
        lgb.Dataset(pd.DataFrame(x, columns=FEATURES), y),
        num_boost_round=5,
    )
    booster.save_model(str(root / "model.lgb"))
    golden = pd.DataFrame(x[:10], columns=FEATURES)
    golden["churn_probability"] = booster.predict(x[:10])
    golden.to_parquet(root / "golden.parquet", index=False)
    manifest = {
        "family": "churn",
        "feature_service": "churn_v1",
        "features": FEATURES,
        "boosters": {"churn": "model.lgb"},
        "golden_rows": "golden.parquet",
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def broken_copy(source: Path, target: Path, how: str) -> Path:
    import shutil

    shutil.copytree(source, target)
    model = target / "model.lgb"
    text = model.read_text()
    if how == "truncated":
        # Cut inside the first tree (the tail of the file is only parameters).
        model.write_text(text[: text.index("leaf_value=") + 20])
    elif how == "nan_leaves":
        model.write_text(
            re.sub(
                r"leaf_value=([^\n]*)",
                lambda m: "leaf_value=" + " ".join("nan" for _ in m.group(1).split()),
                text,
            )
        )
    else:
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["golden_rows"] = how
        (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def load(directory: Path) -> object:
    return load_model_dir(
        directory,
        family="churn",
        registered_name="clm-churn",
        version="7",
        expected_features=lambda service: FEATURES,
    )


def test_a_valid_directory_loads_and_scores(model_dir: Path) -> None:
    model = load(model_dir)
    assert model.version == "7"  # type: ignore[attr-defined]
    scores = model.predict(np.zeros((2, len(FEATURES))))  # type: ignore[attr-defined]
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


@pytest.mark.parametrize("how", ["truncated", "nan_leaves"])
def test_a_booster_that_aborts_lightgbm_is_refused_without_crashing(
    model_dir: Path, tmp_path: Path, how: str
) -> None:
    broken = broken_copy(model_dir, tmp_path / how, how)
    # Loading it here would abort pytest itself (SIGABRT): the child takes the crash.
    with pytest.raises(ModelRefused, match="LightGBM crashed .*SIGABRT"):
        load(broken)
    with pytest.raises(ModelDirError, match="SIGABRT"):
        open_model_dir(broken, family="churn")


@pytest.mark.parametrize(
    "golden_rows", ["../golden.parquet", "/etc/hostname", "sub/../../golden.parquet"]
)
def test_golden_rows_outside_the_model_directory_are_refused(
    model_dir: Path, tmp_path: Path, golden_rows: str
) -> None:
    broken = broken_copy(model_dir, tmp_path / "outside", golden_rows)
    (tmp_path / "golden.parquet").write_bytes((model_dir / "golden.parquet").read_bytes())
    with pytest.raises(ModelDirError, match="golden_rows .* points outside the model directory"):
        read_model_dir(broken)
    with pytest.raises(ModelRefused, match="outside the model directory"):
        load(broken)


def test_a_manifest_of_another_family_is_refused(model_dir: Path) -> None:
    with pytest.raises(ModelDirError, match="manifest family is 'churn', expected 'stage'"):
        read_model_dir(model_dir, family="stage")
