"""The prediction log: every scored row, appended durably under `predictions/`.

Requests only queue what they scored (no I/O on the request path). A writer
thread appends the queue every `prediction_log_flush_seconds` as one Arrow IPC
record batch to a journal (`predictions/.journal/journal-<unix_ms>-<pid>.arrows`)
and fsyncs it, so a crash loses at most one flush interval. An IPC stream is a
sequence of length-prefixed messages: a crash mid-write leaves at most a torn
last message, which the reader drops, so no torn record is ever read.

Every requested customer gets a row: `status` is "scored" for a scored row and
"unknown_customer" for an id the online store did not know (no scores, no
features), so monitoring can tell how often the service could not answer.

Journals are rolled into the parquet segments monitoring reads
(`predictions/date=YYYY-MM-DD/part-<unix_ms>-<pid>.parquet`, docs/contracts.md)
every `ROLL_SECONDS`, on a graceful stop, and at the next start for journals
left by a process that died. A segment's name derives from its journal's, so
re-rolling after a crash mid-roll overwrites rather than duplicates.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clm import atomic
from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.families import FAMILIES
from clm.process import pid_alive

if TYPE_CHECKING:
    import pyarrow as pa

    from clm.settings import Settings
    from serving.scoring import Scored

log = logging.getLogger(__name__)

ROLL_SECONDS = 60.0
ROLL_ROWS = 500_000
JOURNAL_DIR = ".journal"
SCORED = "scored"
UNKNOWN_CUSTOMER = "unknown_customer"


@dataclass(frozen=True)
class LoggedRequest:
    """One request's rows: the scored ones, then one per unknown id (`versions`: the
    models that would have scored them, when nothing was scored)."""

    request_id: str
    ts: datetime
    endpoint: str
    scored: Scored | None
    unknown: tuple[str, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    # "champion" (answered the request) or "shadow" (a challenger scored in the background).
    role: str = "champion"

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The feature columns this request fills (None: it has none, any journal fits)."""
        return self.scored.feature_names if self.scored is not None else None


def log_schema(feature_names: tuple[str, ...]) -> pa.Schema:
    import pyarrow as pa

    fields = [
        pa.field("request_id", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("customer_id", pa.string()),
        pa.field("endpoint", pa.string()),
        pa.field("status", pa.string()),
        pa.field("role", pa.string()),
        pa.field("version_churn", pa.string()),
        pa.field("version_propensity", pa.string()),
        pa.field("version_stage", pa.string()),
        pa.field("churn_probability", pa.float64()),
        *[pa.field(f"propensity_{p}", pa.float64()) for p in PROPENSITY_PRODUCTS],
        pa.field("next_best_product", pa.string()),
        pa.field("stage_current", pa.string()),
        pa.field("stage_next", pa.string()),
        *[pa.field(f"stage_prob_{s}", pa.float64()) for s in STAGES],
        *[pa.field(f"f_{name}", pa.float64()) for name in feature_names],
    ]
    return pa.schema(fields)


def to_batch(requests: list[LoggedRequest], schema: pa.Schema) -> pa.RecordBatch:
    """Many requests with the same feature list -> one record batch.

    Runs in the writer thread but holds the GIL while it builds Python-level
    columns, so it competes with requests: per-request values (id, time,
    endpoint, versions) are gathered by row index from one-per-request arrays
    and the numeric columns are views of one matrix, not per-row Python objects.
    Rows of unknown customers are null in every score and feature column.
    """
    import pyarrow as pa

    features = [f.name[2:] for f in schema if f.name.startswith("f_")]
    n_scored = [len(r.scored.customer_ids) if r.scored is not None else 0 for r in requests]
    n_unknown = [len(r.unknown) for r in requests]
    sizes = [a + b for a, b in zip(n_scored, n_unknown, strict=True)]
    owner = pa.array(np.repeat(np.arange(len(requests)), sizes))
    # None when every row was scored (the common case: no masks to build).
    unscored: np.ndarray | None = None
    if any(n_unknown):
        unscored = np.concatenate(
            [np.repeat([False, True], [a, b]) for a, b in zip(n_scored, n_unknown, strict=True)]
        )

    def per_request(values: list[object], type_: pa.DataType) -> pa.Array:
        return pa.array(values, type=type_).take(owner)

    def numeric(block: Callable[[Scored], np.ndarray], width: int) -> np.ndarray:
        """(rows, width) float64 in row order; NaN rows for the unknown customers."""
        parts: list[np.ndarray] = []
        for r, unknown in zip(requests, n_unknown, strict=True):
            if r.scored is not None:
                parts.append(np.asarray(block(r.scored), dtype=np.float64).reshape(-1, width))
            if unknown:
                parts.append(np.full((unknown, width), np.nan))
        return np.concatenate(parts) if parts else np.empty((0, width))

    def strings(values: Callable[[Scored], Sequence[str | None]]) -> list[str | None]:
        out: list[str | None] = []
        for r in requests:
            if r.scored is not None:
                out.extend(values(r.scored))
            out.extend([None] * len(r.unknown))
        return out

    def versions(r: LoggedRequest) -> Mapping[str, str]:
        return r.scored.versions if r.scored is not None else r.versions

    cols: dict[str, pa.Array | list[object] | np.ndarray] = {}
    cols["request_id"] = per_request([r.request_id for r in requests], pa.string())
    cols["ts"] = per_request([r.ts for r in requests], schema.field("ts").type)
    cols["customer_id"] = [
        c
        for r in requests
        for c in (*(r.scored.customer_ids if r.scored is not None else ()), *r.unknown)
    ]
    cols["endpoint"] = per_request([r.endpoint for r in requests], pa.string())
    cols["status"] = (
        pa.array(np.where(unscored, UNKNOWN_CUSTOMER, SCORED).tolist(), type=pa.string())
        if unscored is not None
        else per_request([SCORED] * len(requests), pa.string())
    )
    cols["role"] = per_request([r.role for r in requests], pa.string())
    for family in FAMILIES:
        cols[f"version_{family}"] = per_request(
            [versions(r).get(family) for r in requests], pa.string()
        )
    cols["churn_probability"] = numeric(lambda s: s.churn, 1)[:, 0]
    propensity = numeric(lambda s: s.propensity, len(PROPENSITY_PRODUCTS)).T.copy()
    for j, p in enumerate(PROPENSITY_PRODUCTS):
        cols[f"propensity_{p}"] = propensity[j]
    cols["next_best_product"] = strings(lambda s: s.next_best)
    cols["stage_current"] = strings(lambda s: s.stage_current)
    cols["stage_next"] = strings(lambda s: s.stage_next)
    stage = numeric(lambda s: s.stage, len(STAGES)).T.copy()
    for j, st in enumerate(STAGES):
        cols[f"stage_prob_{st}"] = stage[j]
    # Transposed once, so each feature column is contiguous (Arrow takes it without a copy).
    matrix = numeric(lambda s: s.features, len(features)).T.copy()
    for j, name in enumerate(features):
        cols[f"f_{name}"] = matrix[j]
    arrays = []
    for f in schema:
        column = cols[f.name]
        if isinstance(column, pa.Array):
            arrays.append(column)
        elif isinstance(column, np.ndarray) and unscored is not None:
            arrays.append(pa.array(column, type=f.type, mask=unscored))
        else:
            arrays.append(pa.array(column, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class PredictionLog:
    """Durable, append-only log of scored rows (one writer thread per process)."""

    def __init__(
        self, directory: Path, *, flush_seconds: float = 1.0, roll_seconds: float = ROLL_SECONDS
    ) -> None:
        self.directory = directory
        self.flush_seconds = flush_seconds
        self.roll_seconds = roll_seconds
        self._pending: deque[LoggedRequest] = deque()
        self._stop = threading.Event()
        self._io_lock = threading.Lock()
        self._journal: _Journal | None = None
        (directory / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
        recover_journals(directory)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @classmethod
    def for_settings(cls, settings: Settings) -> PredictionLog:
        return cls(
            settings.predictions_dir, flush_seconds=settings.serving.prediction_log_flush_seconds
        )

    def append(
        self,
        request_id: str,
        endpoint: str,
        scored: Scored | None,
        *,
        unknown: Sequence[str] = (),
        versions: Mapping[str, str] | None = None,
        role: str = "champion",
    ) -> None:
        """Queue one request's rows (scored, then one per `unknown` id); written at the
        next flush (cheap, no I/O). `versions` name the serving models when nothing
        was scored; `role` is "shadow" for a challenger's rows."""
        if scored is not None and not scored.customer_ids:
            scored = None
        if scored is None and not unknown:
            return
        if scored is not None and scored.results:
            # Without the response dicts: they would otherwise survive until the flush,
            # reach the oldest GC generation and make full collections more frequent.
            scored = replace(scored, results=[])
        self._pending.append(
            LoggedRequest(
                request_id,
                datetime.now(UTC),
                endpoint,
                scored,
                tuple(unknown),
                dict(versions or {}),
                role,
            )
        )

    def flush(self) -> None:
        """Write everything queued so far to the journal and fsync it."""
        with self._io_lock:
            batch: list[LoggedRequest] = []
            while self._pending:
                batch.append(self._pending.popleft())
            # Consecutive requests with the same feature list share a record batch;
            # requests with no scored row fit any (their feature columns are null).
            current = self._journal.feature_names if self._journal is not None else None
            groups: list[tuple[tuple[str, ...] | None, list[LoggedRequest]]] = []
            for item in batch:
                names = item.feature_names
                if groups and (names is None or groups[-1][0] in (None, names)):
                    if groups[-1][0] is None:
                        groups[-1] = (names, groups[-1][1])
                    groups[-1][1].append(item)
                else:
                    groups.append((names, [item]))
            for group_names, group in groups:
                names = group_names if group_names is not None else (current or ())
                current = names
                if self._journal is None or self._journal.feature_names != names:
                    self._roll_locked()
                    self._journal = _Journal(self.directory, names)
                self._journal.write(to_batch(group, self._journal.schema))
            if self._journal is not None:
                self._journal.sync()

    def roll(self) -> None:
        """Close the current journal into parquet segments."""
        with self._io_lock:
            self._roll_locked()

    def close(self) -> None:
        """Graceful stop: everything appended so far ends up in parquet."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()
        self.roll()

    def _roll_locked(self) -> None:
        if self._journal is not None:
            journal, self._journal = self._journal, None
            journal.close()
            roll_journal(self.directory, journal.path)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
                journal = self._journal
                if journal is not None and (
                    time.monotonic() - journal.opened > self.roll_seconds
                    or journal.rows > ROLL_ROWS
                ):
                    self.roll()
            except Exception:  # keep logging alive; the journal is still on disk
                log.exception("prediction log flush failed")


class _Journal:
    def __init__(self, directory: Path, feature_names: tuple[str, ...]) -> None:
        import pyarrow as pa

        self.feature_names = feature_names
        self.schema = log_schema(feature_names)
        self.path = (
            directory / JOURNAL_DIR / f"journal-{int(time.time() * 1000)}-{os.getpid()}.arrows"
        )
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across flushes
        self._writer = pa.ipc.new_stream(self._file, self.schema)
        self.opened = time.monotonic()
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._writer.close()
        self.sync()
        self._file.close()


def read_journal(path: Path) -> pa.Table | None:
    """The complete record batches of a journal; a torn tail (crash mid-write) is dropped."""
    import pyarrow as pa

    batches = []
    try:
        with pa.OSFile(str(path), "rb") as source:
            reader = pa.ipc.open_stream(source)
            schema = reader.schema
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError):
                    break
    except (pa.ArrowInvalid, OSError):
        return None
    return pa.Table.from_batches(batches, schema=schema)


def roll_journal(directory: Path, path: Path) -> list[Path]:
    """Write a journal's rows as parquet segments (one per date), then delete it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = read_journal(path)
    written: list[Path] = []
    if table is not None and table.num_rows:
        stem = path.stem.removeprefix("journal-")
        dates = pc.strftime(table["ts"], format="%Y-%m-%d")
        for day in sorted(set(dates.to_pylist())):
            part = table.filter(pc.equal(dates, day))
            target = directory / f"date={day}" / f"part-{stem}.parquet"
            with atomic.atomic_path(target) as tmp:  # flushed to disk, then renamed
                pq.write_table(part, tmp)
            written.append(target)
    path.unlink(missing_ok=True)
    return written


def recover_journals(directory: Path) -> list[Path]:
    """Roll journals left behind by processes that are no longer running."""
    written: list[Path] = []
    for path in sorted((directory / JOURNAL_DIR).glob("journal-*.arrows")):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and pid_alive(pid):
            continue  # another replica's open journal
        written.extend(roll_journal(directory, path))
    return written


def read_predictions(directory: Path, *, include_journals: bool = True) -> pa.Table:
    """Every logged row: parquet segments plus (optionally) the open journals' flushed rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for p in sorted(directory.glob("date=*/part-*.parquet"))]
    if include_journals:
        for path in sorted((directory / JOURNAL_DIR).glob("journal-*.arrows")):
            table = read_journal(path)
            if table is not None and table.num_rows:
                tables.append(table)
    if not tables:
        return log_schema(()).empty_table()
    return pa.concat_tables(tables, promote_options="permissive")
