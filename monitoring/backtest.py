"""Back-testing: monitor past month ends from batch scores, dated by their snapshot.

A prediction's `ts` is when it was made (wall-clock time); to judge past months
(and to show matured performance in a demo that ran today) monitoring needs
predictions dated by the *feature snapshot* they scored. `clm score-batch` records
that snapshot in the file (parquet metadata `clm.snapshot_ts`), so a batch file
is a set of predictions "made" at its snapshot: `ts` is replaced by the snapshot
time and the file then reads exactly like prediction-log rows of that month.

`--as-of DATE` scores the champions at that snapshot first (serving.batch, the
same code as `clm score-batch`), into `reports/backtest/scores-<snapshot>.parquet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from monitoring.inputs import MonitoringInputError, read_batch

if TYPE_CHECKING:
    from clm.settings import Settings


def snapshot_of(path: Path) -> pd.Timestamp:
    """The feature snapshot a batch-scored file holds (its `clm.snapshot_ts` metadata)."""
    import pyarrow.parquet as pq

    from serving.batch import SNAPSHOT_KEY

    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow errors: not parquet
        raise MonitoringInputError(f"{path}: not a readable parquet file ({exc})") from None
    value = metadata.get(SNAPSHOT_KEY.encode())
    if value is None:
        raise MonitoringInputError(
            f"{path}: no snapshot date ({SNAPSHOT_KEY} metadata); it was not written by "
            "`clm score-batch` (or by an older version): re-score it, or use --as-of DATE"
        )
    stamp = pd.Timestamp(value.decode())
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_scored_snapshot(path: Path) -> pd.DataFrame:
    """A batch-scored file as prediction-log rows dated at its snapshot."""
    snapshot = snapshot_of(path)
    frame = read_batch(path)
    frame["ts"] = snapshot
    frame["endpoint"] = "batch"
    return frame


def score_as_of(settings: Settings, as_of: str, progress: bool = False) -> Path:
    """Score the champions at the snapshot for `as_of` (a month end); the file's path."""
    from serving.batch import BatchError, run_score_batch

    folder = settings.reports_dir / "backtest"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"scores-as-of-{as_of}.parquet"
    try:
        run_score_batch(settings, as_of=as_of, out=out, progress=progress)
    except BatchError as exc:
        raise MonitoringInputError(f"--as-of {as_of}: {exc}") from None
    return out


def backtest_frame(
    settings: Settings,
    *,
    scores: Sequence[Path] = (),
    as_of: Sequence[str] = (),
    progress: bool = False,
) -> tuple[pd.DataFrame, list[Path]]:
    """Rows of every file and month end, dated by snapshot; and the files used."""
    files = [Path(p) for p in scores]
    files += [score_as_of(settings, day, progress) for day in as_of]
    if not files:
        raise MonitoringInputError("nothing to back-test: give --scores FILE or --as-of DATE")
    frames = [read_scored_snapshot(path) for path in files]
    return pd.concat(frames, ignore_index=True), files


def month_of(frame: pd.DataFrame) -> pd.Series:
    """YYYY-MM of each row's `ts` (the snapshot month in a back-test)."""
    return pd.to_datetime(frame["ts"], utc=True).dt.strftime("%Y-%m")
