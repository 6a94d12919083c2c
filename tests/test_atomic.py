"""clm.atomic: files and tables are replaced whole, and a killed writer loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clm import atomic
from clm.settings import Settings
from tests.fixtures.bank import make_settings

DEAD_PID = 2**22 + 1  # above Linux's largest pid: no live process has it

# Runs `writer` in a child process whose os.rename/os.replace kill it (like kill -9) right
# after the target table is moved aside: the crash between the swap's two renames.
KILL_AFTER_ASIDE = """
import os, sys
from pathlib import Path
target = Path(sys.argv[1]).resolve()
real_rename, real_replace = os.rename, os.replace

def dying(real):
    def move(src, dst, *a, **k):
        real(src, dst, *a, **k)
        if Path(src).resolve() == target:
            os._exit(137)
    return move

os.rename, os.replace = dying(real_rename), dying(real_replace)
"""


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _run_killed(code: str, target: Path) -> None:
    script = KILL_AFTER_ASIDE + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 137, done.stderr[-2000:]
    assert not target.exists(), "the child was meant to die between the two renames"


def test_a_failed_file_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    killed = tmp_path / "out" / f".report.json-tmp-{DEAD_PID}-cafe0000"
    killed.parent.mkdir()
    killed.write_text('{"verd')  # what a writer killed mid-write left
    atomic.write_json(target, {"verdict": "green"})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text('{"verdict": "re')
        raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "verdict": "green"\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_a_failed_table_build_leaves_the_old_table(tmp_path: Path) -> None:
    target = tmp_path / "features"
    with atomic.staged_dir(target) as staging:
        (staging / "a.parquet").write_text("old")
    with pytest.raises(ValueError), atomic.staged_dir(target) as staging:
        (staging / "a.parquet").write_text("half")
        raise ValueError("bad input")
    assert _tree(target) == {"a.parquet": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["features"]
    with atomic.staged_dir(target) as staging:
        (staging / "b.parquet").write_text("new")
    assert _tree(target) == {"b.parquet": b"new"}  # replaced whole, not merged


def test_a_writer_killed_between_the_two_renames_loses_no_table(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    with atomic.staged_dir(target) as staging:
        (staging / "customers.parquet").write_text("the bank's table")
    before = _tree(target)
    _run_killed(
        """
        from clm import atomic
        with atomic.staged_dir(target) as staging:
            (staging / "customers.parquet").write_text("new table")
        """,
        target,
    )
    # The next run repairs first: the old table is back, the dead writer's copies are gone,
    # and a run that then fails leaves it as it was.
    with pytest.raises(ValueError), atomic.staged_dir(target):
        assert _tree(target) == before
        raise ValueError("the next run fails too")
    assert _tree(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_a_live_writers_files_are_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    live = tmp_path / f".raw-staging-{os.getpid()}-cafe0000"
    (live / "transactions").mkdir(parents=True)
    dead = tmp_path / f".raw-staging-{DEAD_PID}-cafe0000"
    dead.mkdir()
    atomic.recover_dir(target)
    assert live.is_dir() and not dead.exists()


def test_a_killed_simulation_is_recovered_by_the_next_ingest(tmp_path: Path) -> None:
    """Every table writer shares one recovery: a simulation killed mid-swap, then an ingest
    of bad files (which fails), leaves the simulated bank's raw tables in place."""
    from features.ingest import IngestError, run_ingest

    settings = make_settings(tmp_path / "home")
    _simulate(settings)
    before = _tree(settings.raw_dir)
    _run_killed(
        f"""
        from clm.settings import Settings
        from features.simulator import run_simulation
        settings = Settings.load(home={str(settings.home)!r}, env={{}})
        run_simulation(settings, customers=60, months=4, seed=2, scenario="baseline",
                       shock_month=None, start_month="2024-01", progress=False)
        """,
        settings.raw_dir,
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,timestamp,amount\n1,not a time,1\n")
    with pytest.raises(IngestError):
        run_ingest(settings, transactions=bad, progress=False)
    assert _tree(settings.raw_dir) == before
    assert sorted(p.name for p in settings.home.iterdir()) == ["raw"]


def _simulate(settings: Settings) -> None:
    from features.simulator import run_simulation

    run_simulation(
        settings,
        customers=60,
        months=4,
        seed=1,
        scenario="baseline",
        shock_month=None,
        start_month="2024-01",
        progress=False,
    )
