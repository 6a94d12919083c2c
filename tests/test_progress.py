"""clm.progress: one progress bar for every long step, on stderr."""

from __future__ import annotations

import pytest

from clm.progress import step_progress


def test_the_bar_counts_steps_on_stderr_and_leaves_stdout_clean(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with step_progress("simulating the bank", 4, True) as advance:
        advance()
        advance(2)
        advance(description="writing tables")
    out, err = capsys.readouterr()
    assert out == ""
    assert "writing tables" in err and "4/4" in err


def test_an_unknown_total_shows_no_count(capsys: pytest.CaptureFixture[str]) -> None:
    with step_progress("training set churn_v1: 10 rows", None, True) as advance:
        advance(0, description="asking the offline store")
    err = capsys.readouterr().err
    assert "asking the offline store" in err and "/" not in err.split("store", 1)[1]


def test_disabled_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with step_progress("scoring", 3, False) as advance:
        advance()
        advance(description="done")
    assert capsys.readouterr() == ("", "")


def test_a_transient_bar_disappears(capsys: pytest.CaptureFixture[str]) -> None:
    with step_progress("drift", 2, True, transient=True) as advance:
        advance(2)
    assert "2/2" not in capsys.readouterr().err
