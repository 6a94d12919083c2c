"""Batch scoring with any subset of families: a workspace where propensity has no
champion and stage's champion is refused (its booster aborts LightGBM). Churn is
scored when asked for; the corrupt champion stops a default run with a clear error;
`--out` never writes over what score-batch did not write. (The service side:
tests/serving/test_hotswap.py and test_model_dir.py.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clm.settings import Settings
from serving.batch import BatchError, run_score_batch
from tests.fixtures.service import clone_workspace
from tests.serving.registry_tools import (
    champion,
    copy_version,
    remove_champion,
    set_champion,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def partial(
    trained_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, dict[str, str]]:
    """A clone of the trained workspace: propensity without champion, stage's refused."""
    directory = tmp_path_factory.mktemp("partial")
    settings = clone_workspace(trained_settings, directory / "workspace")
    remove_champion(settings, "propensity")
    good = champion(settings, "stage")
    bad = copy_version(settings, "stage", good, directory, corrupt="truncated")
    set_champion(settings, "stage", bad)
    return settings, {"churn": champion(settings, "churn"), "stage": bad, "good_stage": good}


@pytest.fixture(scope="module")
def as_of(trained_settings: Settings) -> str:
    stamps = pq.read_table(
        trained_settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )["event_timestamp"].to_pylist()
    return (max(stamps).date() - timedelta(days=1)).isoformat()


def test_score_batch_scores_the_families_asked_for(
    partial: tuple[Settings, dict[str, str]], as_of: str, tmp_path: Path
) -> None:
    settings, versions = partial
    out = tmp_path / "churn.parquet"
    summary = run_score_batch(
        settings, as_of=as_of, out=out, progress=False, compiled=False, families=("churn",)
    )
    assert summary["model_versions"] == {"churn": versions["churn"]}
    frame = pd.read_parquet(out)
    assert len(frame) == summary["rows"] > 0
    assert set(frame["version_churn"]) == {versions["churn"]}
    assert frame["version_stage"].isna().all() and frame["stage_next"].isna().all()
    assert frame["churn_probability"].between(0, 1).all()
    # Asked for explicitly, a family without champion is an error, not a silent skip.
    with pytest.raises(BatchError, match="clm-propensity has no champion"):
        run_score_batch(
            settings, as_of=as_of, out=tmp_path / "p.parquet", progress=False,
            families=("propensity",),
        )  # fmt: skip


def test_score_batch_refuses_a_corrupt_champion_clearly(
    partial: tuple[Settings, dict[str, str]], as_of: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from clm.cli import app

    settings, versions = partial
    out = tmp_path / "all.parquet"
    args = ["--home", str(settings.home), "--config", str(settings.config_path)]
    result = CliRunner().invoke(app, [*args, "score-batch", "--as-of", as_of, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"clm-stage champion version {versions['stage']} cannot be used" in result.output
    assert "LightGBM crashed" in result.output and "--models churn" in result.output
    assert "Traceback" not in result.output and not out.exists()
    # --models picks the families; the family without champion is reported when skipped.
    result = CliRunner().invoke(
        app, [*args, "score-batch", "--as-of", as_of, "--out", str(out), "--models", "churn"]
    )
    assert result.exit_code == 0, result.output
    assert out.exists()
    result = CliRunner().invoke(
        app, [*args, "score-batch", "--as-of", as_of, "--out", str(out), "--models", "churm"]
    )
    assert result.exit_code == 2 and "unknown model family 'churm'" in result.output


def test_score_batch_out_never_overwrites_what_it_did_not_write(
    partial: tuple[Settings, dict[str, str]], as_of: str, tmp_path: Path
) -> None:
    settings, _ = partial
    raw = settings.feature_dir / "customer_features.parquet"
    before = raw.read_bytes()
    own = tmp_path / "transactions.parquet"
    pd.DataFrame({"customer_id": ["C1"], "amount": [1.0]}).to_parquet(own)
    cases = [
        (tmp_path, "is a directory"),
        (raw, "inside the workspace's own tables"),
        (settings.raw_dir / "transactions.parquet", "inside the workspace's own tables"),
        (own, "is not an earlier `clm score-batch` output"),
    ]
    for out, message in cases:
        with pytest.raises(BatchError, match=message):
            run_score_batch(settings, as_of=as_of, out=out, progress=False, families=("churn",))
    assert raw.read_bytes() == before
    assert pd.read_parquet(own)["amount"].tolist() == [1.0]


def test_score_batch_skips_a_family_without_champion(
    partial: tuple[Settings, dict[str, str]], as_of: str, tmp_path: Path
) -> None:
    """Last of the module: stage's good champion back, a default run scores churn and stage
    and says in one line why propensity was skipped."""
    from typer.testing import CliRunner

    from clm.cli import app

    settings, versions = partial
    set_champion(settings, "stage", versions["good_stage"])
    out = tmp_path / "default.parquet"
    args = ["--home", str(settings.home), "--config", str(settings.config_path)]
    result = CliRunner().invoke(
        app, [*args, "score-batch", "--as-of", as_of, "--out", str(out), "--no-compiled"]
    )
    assert result.exit_code == 0, result.output
    assert "propensity: skipped, clm-propensity has no champion" in result.output
    frame = pd.read_parquet(out)
    assert set(frame["version_stage"]) == {versions["good_stage"]}
    assert frame["version_propensity"].isna().all()
    assert frame["propensity_credit_card"].isna().all() and frame["next_best_product"].isna().all()
