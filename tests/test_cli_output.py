"""What `clm` prints: no deprecation noise, choices in --help, global options anywhere,
score-batch's warnings, dates, versions, risk bands, CSV and top lists."""

from __future__ import annotations

import csv
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clm.cli import app, hoist_global_options
from clm.context import configure_output
from clm.settings import Settings


def test_deprecations_stay_quiet_even_after_a_library_resets_the_filters() -> None:
    shown: list[type[Warning]] = []
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, category, *rest, **kw: shown.append(category)
        configure_output()
        configure_output()  # idempotent: one wrapper, not two
        # What importing Feast does, ahead of the CLI's filters:
        warnings.simplefilter("once", DeprecationWarning)
        warnings.simplefilter("always", UserWarning)
        warnings.warn("fetch_arrow_table() is deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("this API is deprecated", UserWarning, stacklevel=1)
        warnings.warn("the data has only 3 months", UserWarning, stacklevel=1)
    assert shown == [UserWarning]


# --- help, global options and score-batch output (issue 14, item 5) ---

WIDE = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def every_command() -> list[list[str]]:
    import typer.main

    root = typer.main.get_command(app)
    found: list[list[str]] = [[]]

    def walk(group: object, path: list[str]) -> None:
        for name, command in getattr(group, "commands", {}).items():
            found.append([*path, name])
            walk(command, [*path, name])

    walk(root, [])
    return found


def test_help_lists_choices_and_shows_no_type_placeholders() -> None:
    runner = CliRunner()
    commands = every_command()
    assert ["features", "materialize"] in commands and ["status"] in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env=WIDE)
        assert result.exit_code == 0, (command, result.output)
        for placeholder in ("<str>", "<bool>", "<text>"):
            assert placeholder not in result.output, (command, placeholder, result.output)
    train = runner.invoke(app, ["train", "--help"], env=WIDE).output
    assert "churn|propensity|stage|all" in train
    drift = runner.invoke(app, ["monitor", "drift", "--help"], env=WIDE).output
    assert "churn|propensity|stage" in drift
    simulate = runner.invoke(app, ["simulate", "--help"], env=WIDE).output
    assert "baseline|rate_shock" in simulate
    batch = runner.invoke(app, ["score-batch", "--help"], env=WIDE).output
    assert "parquet|csv" in batch and "--top" in batch and "--by" in batch
    # A choice outside the list is refused by the parser, naming the choices.
    wrong = runner.invoke(app, ["train", "lifetime_value"], env=WIDE)
    assert wrong.exit_code == 2 and "churn" in wrong.output


def test_global_options_are_moved_in_front_of_the_command() -> None:
    assert hoist_global_options(["simulate", "--home", "X", "-n", "5"]) == [
        "--home",
        "X",
        "simulate",
        "-n",
        "5",
    ]
    assert hoist_global_options(["monitor", "drift", "--config=c.yaml", "--model", "churn"]) == [
        "--config=c.yaml",
        "monitor",
        "drift",
        "--model",
        "churn",
    ]
    # Past `--` nothing moves.
    assert hoist_global_options(["x", "--", "--home", "Y"]) == ["x", "--", "--home", "Y"]


def test_home_is_accepted_after_the_command(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "elsewhere"
    for args in (["status", "--home", str(home)], ["--home", str(home), "status"]):
        result = runner.invoke(app, [*args, "--json"], env=WIDE)
        assert result.exit_code == 0, result.output
        assert f'"home": "{home}"' in result.stdout


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads the environment: an earlier test's MLflow URIs must not leak in.
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "CLM_CONFIG", "CLM_PROFILE"):
        monkeypatch.delenv(variable, raising=False)


def month_ends(settings: Settings) -> list[str]:
    import pyarrow.parquet as pq

    stamps = pq.read_table(
        settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )["event_timestamp"].to_pylist()
    return sorted({(ts.date() - timedelta(days=1)).isoformat() for ts in stamps})


@pytest.mark.usefixtures("clean_environment")
def test_score_batch_mid_month_warns_and_writes_a_top_list_as_csv(
    trained_settings: Settings, tmp_path: Path
) -> None:
    last = month_ends(trained_settings)[-1]
    mid_month = last[:8] + "15"  # the 15th of the month after the previous month end
    previous = month_ends(trained_settings)[-2]
    out = tmp_path / "top.csv"
    result = CliRunner().invoke(
        app,
        [
            "score-batch",
            "--as-of",
            mid_month,
            "--out",
            str(out),
            "--format",
            "csv",
            "--top",
            "7",
            "--by",
            "propensity_credit_card",
            "--home",
            str(trained_settings.home),
        ],
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    assert f"--as-of {mid_month} is not a month end" in result.stderr
    assert previous in result.stderr
    # Dates as dates, versions readably.
    assert f"at the {previous} snapshot" in result.stdout
    assert "T00:00" not in result.stdout and "{" not in result.stdout
    assert "churn v1, propensity v1, stage v1" in result.stdout
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7
    assert not [c for c in rows[0] if c.startswith("f_")]
    scores = [float(r["propensity_credit_card"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["risk_band"] for r in rows} <= {"low", "medium", "high"}


def test_risk_bands_of_a_batch_match_the_api() -> None:
    from serving.batch import band_column
    from serving.scoring import DEFAULT_RISK_BANDS, risk_band

    p = np.array([0.0, 0.0999, 0.10, 0.2999, 0.30, 0.95, 1.0, np.nan])
    got = band_column(p, DEFAULT_RISK_BANDS).to_pylist()
    assert got[:-1] == [risk_band(float(x)) for x in p[:-1]]
    assert got[-1] is None
