"""`clm ingest`: load a bank's own files into the workspace's raw tables, all or nothing.

The files are read and checked with DuckDB (every value arrives as text, then
TRY_CAST), so a ten-million-row transaction log validates in seconds without a
Python loop. Every problem found (up to `MAX_REPORTED`) comes back in one
`IngestError` naming file, row and column. Only when everything is valid are the
tables written, into a staging directory beside `raw/` that then replaces
`raw/` whole: a failed ingest leaves the previous raw tables exactly as they were.

The accepted schema is documented for banks in docs/data-schema.md.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm import atomic, domain
from clm.errors import ClmError
from clm.progress import step_progress

if TYPE_CHECKING:
    import duckdb

    from clm.settings import Settings

MAX_REPORTED = 20
# The longest CSV line accepted (bytes, without the line break). A transaction or customer
# record is well under 1 KiB; a longer line is a broken export (a missing quote, a binary
# blob), and reading it whole would cost memory in proportion. `--max-line-bytes` raises it.
DEFAULT_MAX_LINE_BYTES = 1 << 20
_SCAN_CHUNK = 8 << 20  # bytes read at a time by the line scan: its memory bound
_BATCH_ROWS = 1_000_000  # rows per parquet row group: bounded memory, fixed layout
DIRECTIONS: tuple[str, ...] = ("credit", "debit")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
# What text may look like, checked before DuckDB's casts, which are lenient where a bank's
# export must not be: they take `1_000` as 1000, `+25:00` as an offset and zone names
# (`Europe/Paris`) where an offset is expected, silently shifting the instant.
_TIMESTAMP_TEXT = (
    r"\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"  # a time: hh:mm[:ss[.fraction]]
    r"([Zz]|[+-](0\d|1[0-3])(:?[0-5]\d)?|[+-]14(:?00)?)?)?"  # an offset within ±14:00
)
_NUMBER_TEXT = r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(?i:nan|inf|infinity))"
# Plausibility bounds: a year outside them is a typo or a sentinel (0001-01-01), and
# would otherwise stretch the data period over centuries.
MIN_YEAR, MAX_YEAR = 1900, 2100


class IngestError(ClmError):
    """The bank's files cannot be ingested; the message lists every problem found."""


@dataclass(frozen=True)
class Field:
    """One column of an input table: its contract name, how to parse it, whether required."""

    name: str
    kind: str  # id | timestamp | date | amount | category | year | flag
    required: bool = False
    vocabulary: tuple[str, ...] = ()


TABLES: dict[str, tuple[Field, ...]] = {
    "transactions": (
        Field("customer_id", "id", required=True),
        Field("timestamp", "timestamp", required=True),
        Field("amount", "amount", required=True),
        Field("direction", "category", vocabulary=DIRECTIONS),
        Field("channel", "category", vocabulary=domain.TXN_CHANNELS),
        Field("category", "category", vocabulary=domain.TXN_CATEGORIES),
        Field("product", "category", vocabulary=domain.PRODUCTS),
    ),
    "customers": (
        Field("customer_id", "id", required=True),
        Field("signup_date", "date"),
        Field("birth_year", "year"),
        # Regions are the bank's own names: free text (outside domain.REGIONS they code as -1).
        Field("region", "category"),
        Field("value_tier", "category", vocabulary=domain.VALUE_TIERS),
        Field("segment", "category", vocabulary=domain.SEGMENTS),
        Field("acquisition_channel", "category", vocabulary=domain.ACQUISITION_CHANNELS),
        Field("is_payroll", "flag"),
    ),
    "holdings": (
        Field("customer_id", "id", required=True),
        Field("product", "category", required=True, vocabulary=domain.PRODUCTS),
        Field("opened_date", "date", required=True),
        Field("closed_date", "date"),
    ),
    # Who a bank's CRM actually contacted (issue 13): campaign evaluation compares it with
    # the campaign's treatment group (intent-to-treat vs treated). Channels are the bank's
    # own words (lower-cased), like regions.
    "contacts": (
        Field("customer_id", "id", required=True),
        Field("campaign_id", "id", required=True),
        Field("contacted_at", "timestamp", required=True),
        Field("channel", "category"),
    ),
}
CONTACTS_FILE = "contacts.parquet"  # raw/contacts.parquet

# What each optional table adds; an ingest without it says so (summary "absent", meta.json).
OPTIONAL_TABLES: dict[str, str] = {
    "customers": (
        "customer attributes (age, tenure from signup, region, tier, segment, payroll) are "
        "missing; the customers are the ids seen in the transactions"
    ),
    "holdings": (
        "product features are missing, propensity cannot be trained, and churn is "
        "'no transaction in the next 90 days'"
    ),
    "contacts": (
        "campaign evaluation reports intent-to-treat only (who the CRM actually reached is "
        "unknown); add it later with `clm ingest --contacts FILE`"
    ),
}

_KIND_HELP = {
    "timestamp": (
        "not a timestamp (use ISO 8601: 2024-01-31 13:45:00, 2024-01-31T13:45:00+01:00 or "
        "2024-01-31; an offset within ±14:00 or Z, not a zone name)"
    ),
    "date": "not a date (use ISO 8601: 2024-01-31)",
    "amount": "not a number (use a dot for decimals and no thousands separators: -1234.56)",
    "year": f"not a four-digit year between {MIN_YEAR} and {MAX_YEAR}",
    "flag": "not a boolean (use true/false, 1/0 or yes/no)",
}
# What a parquet column may be stored as, per kind (text works for all).
_KIND_STORED = {
    "id": "text (or integers)",
    "timestamp": "timestamps, dates or ISO 8601 text",
    "date": "dates, timestamps or ISO 8601 text",
    "amount": "numbers or text",
    "category": "text",
    "year": "integers or text",
    "flag": "booleans, integers or text",
}


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can."""

    file_order: int
    row: int
    file: str = field(compare=False)
    message: str = field(compare=False)
    column: str | None = field(default=None, compare=False)
    is_csv: bool = field(default=False, compare=False)
    line: int | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = [self.file]
        if self.row > 0:
            # Row as the user counts data rows; for CSV also the line an editor shows
            # (header = line 1, one line per record).
            # For CSV also the line an editor shows (header = line 1), when it is known.
            known = self.is_csv and self.line is not None
            where.append(f"row {self.row} (line {self.line})" if known else f"row {self.row}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.column:
            where.append(f"column {self.column!r}")
        return ", ".join(where) + ": " + self.message


@dataclass
class Problems:
    """All problems, keeping the first few of each check and a total count."""

    shown: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, problem: Problem) -> None:
        self.shown.append(problem)
        self.total += 1

    def add_many(self, problems: list[Problem], count: int) -> None:
        self.shown.extend(problems)
        self.total += count

    def raise_if_any(self) -> None:
        if not self.total:
            return
        listed = sorted(self.shown)[:MAX_REPORTED]
        lines = [
            f"ingest rejected: {self.total} problem{'s' if self.total != 1 else ''} found; "
            "nothing was written (the workspace's raw tables are unchanged). "
            "Fix the files and run `clm ingest` again (schema: docs/data-schema.md)."
        ]
        lines += [f"  - {p}" for p in listed]
        if self.total > len(listed):
            lines.append(f"  ... and {self.total - len(listed)} more")
        raise IngestError("\n".join(lines))


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """An input file and what `_load` learnt about it."""

    table: str
    path: Path
    order: int
    is_csv: bool
    columns: dict[str, str] = field(default_factory=dict)  # contract name -> column in file
    texts: set[str] = field(default_factory=set)  # columns with `__text_<column>`
    found: list[str] = field(default_factory=list)
    loaded: bool = False
    given: str = ""  # the path as the user wrote it (a symlink is named, not its target)
    # For a CSV whose quoted values hold line breaks: the line of a data row (else row + 1).
    line_of: Any = None

    @property
    def label(self) -> str:
        return self.given or str(self.path)

    def row_line(self, row: int) -> int | None:
        """The file line (header = 1) where data row `row` starts; None for parquet."""
        if not self.is_csv:
            return None
        return self.line_of(row) if self.line_of is not None else row + 1  # type: ignore[no-any-return]

    def where(self, row: int) -> str:
        line = self.row_line(row)
        return f"row {row} (line {line})" if line is not None else f"row {row}"

    def problem(
        self, message: str, row: int = 0, column: str | None = None, line: int | None = None
    ) -> Problem:
        shown = self.columns.get(column, column) if column else None
        if row > 0 and line is None:
            line = self.row_line(row)
        return Problem(self.order, row, self.label, message, shown, self.is_csv, line)


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _file_format(table: str, path: Path, problems: Problems, order: int, given: str) -> bool | None:
    """True for CSV, False for parquet, None (with a problem) for anything else."""
    name = path.name.lower()
    if not path.is_file():
        problems.add(Problem(order, 0, given, f"{table} file not found"))
        return None
    if name.endswith(CSV_SUFFIXES):
        return True
    if name.endswith(PARQUET_SUFFIXES):
        return False
    problems.add(
        Problem(
            order,
            0,
            given,
            f"unsupported file type for {table}: use CSV (.csv, .csv.gz) or parquet (.parquet)",
        )
    )
    return None


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


class _LineTooLong(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


_MAX_BLANK_KEPT = 1_000_000  # blank lines whose number the scan keeps (8 bytes each)


@dataclass(frozen=True)
class LineCount:
    """What the line scan of a CSV found: its lines, how many are blank, and (up to
    `_MAX_BLANK_KEPT`) which: DuckDB skips blank lines, which shifts later rows' lines."""

    lines: int
    blank: int
    blank_lines: Any  # sorted numpy int64 array of blank line numbers
    blank_complete: bool


def scan_lines(path: Path, max_line_bytes: int) -> LineCount:
    """Count the lines of a CSV (LF or CRLF endings) in fixed-size chunks, raising
    `_LineTooLong(line)` at the first line longer than `max_line_bytes`.

    This runs before anything else reads the file: the header reader and DuckDB would
    otherwise hold a whole line in memory (a 512 MB header line cost 3.2 GB), and DuckDB
    silently drops a record longer than its read buffer. Memory stays at a few chunks
    however long the line is: the scan stops as soon as the line passes the limit.
    """
    import numpy as np

    line = 1  # the line the next byte belongs to
    current = 0  # bytes of that line seen so far
    last_byte = -1  # the byte before the current chunk (a CR of a CRLF split by the chunk)
    blank = 0
    blank_parts: list[Any] = []
    with _open_binary(path) as handle:
        while chunk := handle.read(_SCAN_CHUNK):
            data = np.frombuffer(chunk, np.uint8)
            ends = np.flatnonzero(data == 10)
            if ends.size == 0:
                current += data.size
                if current > max_line_bytes:
                    raise _LineTooLong(line)
                last_byte = int(data[-1])
                continue
            lengths = np.diff(ends, prepend=-1) - 1
            lengths[0] += current
            too_long = np.flatnonzero(lengths > max_line_bytes)
            if too_long.size:
                raise _LineTooLong(line + int(too_long[0]))
            # Blank: nothing but the line break (a lone CR before LF counts as nothing).
            before = np.where(ends > 0, data[np.maximum(ends - 1, 0)], last_byte)
            is_blank = np.flatnonzero((lengths == 0) | ((lengths == 1) & (before == 13)))
            if is_blank.size:
                if blank + is_blank.size <= _MAX_BLANK_KEPT:
                    blank_parts.append(is_blank + line)
                blank += int(is_blank.size)
            line += ends.size
            current = data.size - int(ends[-1]) - 1
            if current > max_line_bytes:
                raise _LineTooLong(line)
            last_byte = int(data[-1])
    kept = np.concatenate(blank_parts) if blank_parts else np.zeros(0, np.int64)
    return LineCount(
        lines=line if current else line - 1,
        blank=blank,
        blank_lines=kept,
        blank_complete=kept.size == blank,
    )


def _lines_at(path: Path, offsets: list[int]) -> dict[int, int]:
    """The line (1-based) holding each byte offset of the (decompressed) file, in one
    streaming pass: the lines DuckDB reports count records, not the lines an editor
    shows after a quoted line break."""
    import numpy as np

    wanted = sorted(set(offsets))
    found: dict[int, int] = {}
    newlines, position, i = 0, 0, 0
    with _open_binary(path) as handle:
        while i < len(wanted) and (chunk := handle.read(_SCAN_CHUNK)):
            ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10) + position
            while i < len(wanted) and wanted[i] < position + len(chunk):
                found[wanted[i]] = newlines + int(np.searchsorted(ends, wanted[i])) + 1
                i += 1
            newlines += ends.size
            position += len(chunk)
    for offset in wanted[i:]:
        found[offset] = newlines + 1
    return found


def _csv_header(path: Path) -> tuple[list[str], str]:
    """The header's column names and the delimiter, read from the first line (which the
    line scan has already bounded).

    We read the header ourselves and hand DuckDB the exact dialect: its sniffer,
    on a file with a malformed row, silently falls back to one column or skips
    leading rows, and we must never drop data without saying so.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:  # type: ignore[operator]
        first = handle.readline()
    first = first.rstrip("\r\n")
    if not first.strip():
        raise ValueError("the file is empty or its first line (the header) is blank")
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    try:
        names = next(csv.reader(io.StringIO(first), delimiter=delimiter))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    return [n.strip() for n in names], delimiter


def _load(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    problems: Problems,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> None:
    """Read and convert the file in one pass into DuckDB table `<table>_data`, seen
    through view `<table>` with `__row` (the 1-based data row: the table keeps the
    file's order). Each contract column holds its converted value (NULL where it does not
    parse) and, where text can fail to parse, `__text_<column>` the value as given."""
    import duckdb

    path = _lit(str(source.path))
    scan: LineCount | None = None
    if source.is_csv:
        try:
            scan = scan_lines(source.path, max_line_bytes)
        except _LineTooLong as exc:
            problems.add(
                source.problem(
                    f"line longer than {max_line_bytes:,} bytes, the limit for one line "
                    "(a broken export or a quote that is never closed?); nothing after it "
                    "was read. Fix the line, or raise the limit with --max-line-bytes",
                    line=exc.line,
                )
            )
            return
        except (OSError, EOFError) as exc:
            problems.add(source.problem(f"cannot read the file: {exc}"))
            return
        try:
            names, delimiter = _csv_header(source.path)
        except (UnicodeDecodeError, ValueError, OSError) as exc:
            problems.add(source.problem(f"cannot read the CSV header: {exc}"))
            return
        lowered = [n.lower() for n in names]
        if any(not n for n in names) or len(set(lowered)) < len(lowered):
            problems.add(
                source.problem(
                    f"the header has blank or repeated column names: {', '.join(map(repr, names))}"
                )
            )
            return
        types = dict.fromkeys(names, "VARCHAR")
        columns = "{" + ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in names) + "}"
        # DuckDB silently drops a record longer than its read buffer: the scan above bounds
        # each line, and a buffer many times the limit holds any record it lets through
        # (a longer one, of several lines, is a reported reject, not a silent drop).
        buffer = max(32 << 20, 16 * (max_line_bytes + 2))
        reader = (
            f"read_csv({path}, columns={columns}, header=true, auto_detect=false, skip=0, "
            f"sep={_lit(delimiter)}, quote='\"', escape='\"', comment='', null_padding=false, "
            f"max_line_size={max_line_bytes + 2}, buffer_size={buffer}, "
            f"store_rejects=true, rejects_table='rejects_{source.table}', "
            f"rejects_scan='rejects_scan_{source.table}')"
        )
    else:
        reader = f"read_parquet({path})"
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
        except duckdb.Error as exc:
            problems.add(source.problem(f"cannot read the file as parquet: {_first_line(exc)}"))
            return
        names = [row[0] for row in described]
        types = {row[0]: str(row[1]) for row in described}
    source.found = names
    by_lower = {name.strip().lower(): name for name in names}
    fields = [f for f in TABLES[source.table] if f.name in by_lower]
    missing = [f.name for f in TABLES[source.table] if f.required and f.name not in by_lower]
    if missing:
        problems.add(
            source.problem(
                f"missing required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))}; columns found: {', '.join(names) or '(none)'}"
            )
        )
        return
    select = []
    unusable = False
    for f in fields:
        column = source.columns[f.name] = by_lower[f.name]
        converted = _parse_expr(f, column, types[column])
        if converted is None:
            problems.add(
                source.problem(
                    f"stored as {types[column]}; expected {_KIND_STORED[f.kind]}", column=f.name
                )
            )
            unusable = True
            continue
        value, text = converted
        select.append(f"{value} AS {_q(f.name)}")
        if text is not None:
            select.append(f"{text} AS {_q('__text_' + f.name)}")
            source.texts.add(f.name)
    if unusable:
        return
    if source.is_csv:
        # Line breaks inside quoted values (in any column, kept or not) make the following
        # rows start further down the file: count the non-blank lines they add (a run of
        # breaks adds one; its blank lines are among those the line scan counted).
        select.append(
            "CAST("
            + " + ".join(
                f"CASE WHEN contains({_q(n)}, chr(10)) THEN length(regexp_replace("
                f"{_q(n)}, '[^\\n]*(\\r?\\n)+', 'x', 'g')) - length(regexp_replace("
                f"{_q(n)}, '[^\\n]*(\\r?\\n)+', '', 'g')) ELSE 0 END"
                for n in names
            )
            + " AS BIGINT) AS __extra_lines"
        )
    try:
        con.execute(f"CREATE TABLE {source.table}_data AS SELECT {', '.join(select)} FROM {reader}")
    except duckdb.Error as exc:
        kind = "CSV" if source.is_csv else "parquet"
        problems.add(source.problem(f"cannot read the file as {kind}: {_first_line(exc)}"))
        return
    if source.is_csv:
        assert scan is not None
        rejects = con.execute(
            f"SELECT line, line_byte_position, error_message FROM rejects_{source.table} "
            "ORDER BY line"
        ).fetchall()
        if rejects:
            # Records DuckDB could not split into fields: report them by line, and skip the
            # value checks, whose row numbers the missing records would shift. DuckDB's
            # line counts records; the line an editor shows comes from the byte offset.
            shown = rejects[:MAX_REPORTED]
            lines = _lines_at(source.path, [int(offset) for _, offset, _ in shown])
            problems.add_many(
                [
                    source.problem(f"malformed CSV record: {msg}", line=lines[int(offset)])
                    for _, offset, msg in shown
                ],
                len(rejects),
            )
            return
        rows, extra = con.execute(
            f"SELECT count(*), coalesce(sum(__extra_lines), 0) FROM {source.table}_data"
        ).fetchall()[0]
        if scan.lines - scan.blank != 1 + rows + extra:
            # Never a silent drop: every non-blank line is the header, a row or part of one.
            problems.add(
                source.problem(
                    f"the CSV reader read {rows:,} rows from {scan.lines:,} lines: "
                    f"{scan.lines - scan.blank - 1 - rows - extra:,} lines were not read "
                    "(a record the reader could not hold?); nothing was ingested"
                )
            )
            return
        source.line_of = _line_finder(con, source.table, int(extra), scan)
    con.execute(
        f"CREATE VIEW {source.table} AS SELECT rowid + 1 AS __row, * FROM {source.table}_data"
    )
    source.loaded = True


def _line_finder(con: duckdb.DuckDBPyConnection, table: str, extra: int, scan: LineCount) -> Any:
    """A function giving the file line where data row `row` starts (None when it cannot
    be known): row + 1, plus the non-blank lines that quoted values of earlier rows
    spill onto, plus the blank lines (skipped by DuckDB, or inside a value) before it."""
    import numpy as np

    blanks = scan.blank_lines

    def line_of(row: int) -> int | None:
        line = row + 1
        if extra:
            line += int(
                con.execute(
                    f"SELECT coalesce(sum(__extra_lines), 0) FROM {table}_data WHERE rowid < ?",
                    [row - 1],
                ).fetchall()[0][0]
            )
        base = line
        while True:  # each blank line before the row moves it down one line
            moved = base + int(np.searchsorted(blanks, line, side="right"))
            if moved == line:
                break
            line = moved
        if not scan.blank_complete and blanks.size and line > int(blanks[-1]):
            return None
        return line

    if not extra and not scan.blank:
        return None
    return line_of


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------- parsing


_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


def _is_numeric(typ: str) -> bool:
    return typ.startswith(_NUMERIC)


def _when_matches(text: str, pattern: str, sql_type: str) -> str:
    """SQL: the text cast to `sql_type` when all of it matches `pattern`, else NULL."""
    return f"CASE WHEN regexp_full_match({text}, {_lit(pattern)}) THEN TRY_CAST({text} AS {sql_type}) END"


def _parse_expr(f: Field, column: str, typ: str) -> tuple[str, str | None] | None:
    """SQL turning the file's column into the contract's type (NULL where it fails) and,
    when that can fail, SQL for the value as given; None when the column's stored type
    cannot hold this field at all."""
    col = _q(column)
    is_text = typ == "VARCHAR"
    text = f"NULLIF(trim({col}), '')" if is_text else f"CAST({col} AS VARCHAR)"
    given = col if is_text else None  # typed parquet columns convert without failing
    if f.kind == "id":
        # Ids are text: a CSV's 00042 stays "00042". Integer ids in parquet become
        # their decimal text; float ids would gain a ".0", so refuse them.
        integer = _is_numeric(typ) and not typ.startswith(("FLOAT", "DOUBLE", "DECIMAL"))
        return (text, None) if is_text or integer else None
    if f.kind == "category":
        # Case and surrounding spaces are not meaningful in a vocabulary value.
        return (f"lower({text})", None) if is_text else None
    if f.kind == "timestamp":
        if is_text:
            # The session time zone is UTC: text without an offset is taken as UTC.
            return _when_matches(text, _TIMESTAMP_TEXT, "TIMESTAMPTZ"), given
        if "TIME ZONE" in typ or typ.startswith("TIMESTAMPTZ"):
            return f"CAST({col} AS TIMESTAMPTZ)", None  # (nanoseconds are cut to µs)
        if typ.startswith("TIMESTAMP") or typ == "DATE":
            return f"CAST(CAST({col} AS TIMESTAMP) AS TIMESTAMPTZ)", None
        return None
    if f.kind == "date":
        if is_text:
            return _when_matches(text, _TIMESTAMP_TEXT, "DATE"), given
        if typ == "DATE" or typ.startswith("TIMESTAMP"):
            return f"CAST({col} AS DATE)", None
        return None
    if f.kind == "amount":
        if is_text:
            return _when_matches(text, _NUMBER_TEXT, "DOUBLE"), given
        return (f"CAST({col} AS DOUBLE)", None) if _is_numeric(typ) else None
    if f.kind == "year":
        if not (is_text or _is_numeric(typ)):
            return None
        number = (
            _when_matches(text, _NUMBER_TEXT, "DOUBLE") if is_text else f"CAST({col} AS DOUBLE)"
        )
        return (
            f"CASE WHEN {number} = round({number}) AND {number} BETWEEN {MIN_YEAR} AND {MAX_YEAR} "
            f"THEN CAST({number} AS BIGINT) END",
            text,
        )
    if f.kind == "flag":
        if typ == "BOOLEAN":
            return col, None
        return (
            f"CASE WHEN lower({text}) IN ('true', 't', '1', 'yes', 'y') THEN true "
            f"WHEN lower({text}) IN ('false', 'f', '0', 'no', 'n') THEN false END",
            text,
        )
    raise AssertionError(f.kind)


def _show(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _check(
    con: duckdb.DuckDBPyConnection,
    problems: Problems,
    source: Source,
    column: str | None,
    where: str,
    message: Any,
) -> None:
    """Report the rows matching `where`; `message(value as given)` says what is wrong."""
    if column is None:
        value = "NULL"
    elif column in source.texts:
        value = _q(f"__text_{column}")
    else:
        value = f"CAST({_q(column)} AS VARCHAR)"
    found = con.execute(
        f"SELECT __row, {value}, count(*) OVER () FROM {source.table} WHERE {where} "
        f"ORDER BY __row LIMIT {MAX_REPORTED}"
    ).fetchall()
    if found:
        problems.add_many(
            [
                source.problem(message(v) if callable(message) else message, row=r, column=column)
                for r, v, _ in found
            ],
            found[0][2],
        )


def _validate(con: duckdb.DuckDBPyConnection, source: Source, problems: Problems) -> None:
    """Every per-value check of one parsed table."""
    t = source.table
    present = source.columns
    for f in TABLES[t]:
        if f.name not in present:
            continue
        name = _q(f.name)
        if f.name in source.texts:
            text = _q(f"__text_{f.name}")
            given = f"({text} IS NOT NULL AND trim({text}) <> '')"
        else:
            given = f"{name} IS NOT NULL"
        if f.kind == "id":
            what = f.name.replace("_", " ")
            _check(con, problems, source, f.name, f"{name} IS NULL", f"{what} is empty")
            _check(
                con,
                problems,
                source,
                f.name,
                f"regexp_matches({name}, '[\\x00-\\x1f\\x7f]')",
                lambda v, what=what: (
                    f"{what} {_show(v)} contains a control character (NUL, tab, line break): "
                    "ids must be printable text"
                ),
            )
            continue
        if f.required:
            _check(
                con,
                problems,
                source,
                f.name,
                f"{name} IS NULL AND NOT {given}",
                f"{f.name} is empty (required)",
            )
        if f.kind == "category":
            if not f.vocabulary:
                continue  # free text: nothing to check
            accepted = ", ".join(f.vocabulary)
            in_list = ", ".join(_lit(v) for v in f.vocabulary)
            _check(
                con,
                problems,
                source,
                f.name,
                f"{name} IS NOT NULL AND {name} NOT IN ({in_list})",
                lambda v, f=f, accepted=accepted: (
                    f"unknown {f.name} {_show(v)} (accepted: {accepted})"
                ),
            )
        else:
            help_text = _KIND_HELP[f.kind]
            _check(
                con,
                problems,
                source,
                f.name,
                f"{name} IS NULL AND {given}",
                lambda v, help_text=help_text: f"{_show(v)} is {help_text}",
            )
        if f.kind == "amount":
            _check(
                con,
                problems,
                source,
                f.name,
                f"NOT isfinite({name})",
                lambda v: f"{_show(v)} is not a finite amount",
            )
        if f.kind in ("timestamp", "date"):
            _check(
                con,
                problems,
                source,
                f.name,
                f"year({name}) NOT BETWEEN {MIN_YEAR} AND {MAX_YEAR}",
                lambda v: f"{_show(v)} is outside the years {MIN_YEAR}-{MAX_YEAR}",
            )
    if t == "transactions" and "direction" in present:
        _check(
            con,
            problems,
            source,
            "amount",
            "direction = 'credit' AND amount < 0",
            lambda v: (
                f"amount {_show(v)} is negative but direction is 'credit' (a credit is money in)"
            ),
        )
    if t == "holdings" and "closed_date" in present:
        _check(
            con,
            problems,
            source,
            "closed_date",
            "closed_date < opened_date",
            lambda v: f"closed_date {_show(v)} is before opened_date",
        )


def _check_duplicates(con: duckdb.DuckDBPyConnection, source: Source, problems: Problems) -> None:
    """Each customer once in the customer file: name the repeat and where it first appeared."""
    rows = con.execute(
        f"""
        SELECT __row, customer_id, first_row, count(*) OVER () FROM (
            SELECT __row, customer_id, min(__row) OVER (PARTITION BY customer_id) AS first_row
            FROM customers WHERE customer_id IS NOT NULL)
        WHERE __row > first_row ORDER BY __row LIMIT {MAX_REPORTED}
        """
    ).fetchall()
    if rows:
        problems.add_many(
            [
                source.problem(
                    f"duplicate customer {_show(cid)} (first at {source.where(first_row)})",
                    row=r,
                    column="customer_id",
                )
                for r, cid, first_row, _ in rows
            ],
            rows[0][3],
        )


def _check_known_customers(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    known: str,
    where: str,
    problems: Problems,
) -> None:
    """Every row's customer must be among `known` (SQL giving `customer_id`), described to
    the user as `where` ("the customer file x.csv")."""
    rows = con.execute(
        f"""
        SELECT min(__row) AS first_row, customer_id, count(*) AS n, count(*) OVER () FROM {source.table}
        WHERE customer_id IS NOT NULL AND customer_id NOT IN (SELECT customer_id FROM ({known})
                                                              WHERE customer_id IS NOT NULL)
        GROUP BY customer_id ORDER BY first_row LIMIT {MAX_REPORTED}
        """
    ).fetchall()
    if rows:
        problems.add_many(
            [
                source.problem(
                    f"customer {_show(cid)} is not in {where}"
                    + (f" ({n} rows of this customer)" if n > 1 else ""),
                    row=r,
                    column="customer_id",
                )
                for r, cid, n, _ in rows
            ],
            rows[0][3],
        )


# --------------------------------------------------------------------------- output


def _transaction_columns(present: dict[str, str]) -> list[str]:
    """The transactions table's output columns, amounts signed by `direction` when given."""
    out = ["customer_id", "timestamp"]
    if "direction" in present:
        # Unsigned amounts follow the direction; signed ones already agree with it
        # (a negative credit was rejected). Rows with no direction keep their sign.
        out.append(
            "CASE direction WHEN 'credit' THEN abs(amount) WHEN 'debit' THEN -abs(amount) "
            "ELSE amount END + 0.0 AS amount"
        )
        out.append(
            "COALESCE(direction, CASE WHEN amount > 0 THEN 'credit' WHEN amount < 0 THEN 'debit' END) AS direction"
        )
    else:
        out.append("amount + 0.0 AS amount")  # + 0.0 turns -0.0 into 0.0
    out += [c for c in ("channel", "category", "product") if c in present]
    return out


def _columns(source: Source) -> list[str]:
    return [_q(f.name) for f in TABLES[source.table] if f.name in source.columns]


_ARROW_KINDS = {
    "id": "string",
    "timestamp": "timestamp",
    "date": "date",
    "amount": "float64",
    "category": "string",
    "year": "int64",
    "flag": "bool",
}


def _arrow_type(table: str, column: str) -> Any:
    """The contract's dtype of a raw-table column."""
    import pyarrow as pa

    kind = next(f.kind for f in TABLES[table] if f.name == column)
    return {
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "float64": pa.float64(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
    }[_ARROW_KINDS[kind]]


def _arrow_schema(table: str, columns: list[str]) -> Any:
    """The contract's dtypes for these columns, all nullable (as every raw-table writer)."""
    import pyarrow as pa

    return pa.schema([pa.field(c, _arrow_type(table, c)) for c in columns])


def _parquet_writer(path: Path, schema: Any) -> Any:
    """A zstd parquet writer; dictionaries only for text columns (on timestamps and
    amounts they cost a third of the write time and save nothing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [f.name for f in schema if f.type == pa.string()]
    return pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=text)


def _copy(
    con: duckdb.DuckDBPyConnection, table: str, query: str, path: Path
) -> tuple[list[str], int]:
    """Write the query's rows to one parquet file with the contract's dtypes; return the
    columns written and the row count."""

    reader = con.sql(query).to_arrow_reader(_BATCH_ROWS)
    schema = _arrow_schema(table, reader.schema.names)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with _parquet_writer(path, schema) as writer:
        for batch in reader:
            writer.write_batch(batch.cast(schema))
            rows += batch.num_rows
    return list(schema.names), rows


def _write_transactions(
    con: duckdb.DuckDBPyConnection, staging: Path, txn: Source
) -> tuple[list[str], list[str], int]:
    """Write transactions/month=YYYY-MM/part-00000.parquet in one ordered pass; return the
    columns, the months and the row count."""
    import pyarrow.compute as pc

    columns = _transaction_columns(txn.columns)
    names = [c.rsplit(" AS ", 1)[-1] for c in columns]
    # One file per month, rows in the file's order: the same input gives the same bytes.
    # The month as yyyymm from the UTC instant's microseconds: plain integer arithmetic,
    # several times faster than formatting time-zone-aware timestamps.
    reader = con.sql(
        f"""SELECT year(__utc) * 100 + month(__utc) AS __month, {", ".join(columns)}
            FROM (SELECT *, make_timestamp(epoch_us(timestamp)) AS __utc FROM transactions)
            ORDER BY __month, __row"""
    ).to_arrow_reader(_BATCH_ROWS)
    schema = _arrow_schema("transactions", names)
    months: list[str] = []
    writer: Any = None
    rows = 0
    try:
        for batch in reader:
            month_of_row = batch.column(0)
            # Sorted by month: each batch is a few runs of equal months.
            for yyyymm in pc.unique(month_of_row).to_pylist():
                part = batch.filter(pc.equal(month_of_row, yyyymm)).drop_columns(["__month"])
                month = f"{yyyymm // 100:04d}-{yyyymm % 100:02d}"
                if not months or months[-1] != month:
                    if writer is not None:
                        writer.close()
                    path = staging / "transactions" / f"month={month}" / "part-00000.parquet"
                    path.parent.mkdir(parents=True)
                    writer = _parquet_writer(path, schema)
                    months.append(month)
                writer.write_batch(part.cast(schema))
                rows += part.num_rows
    finally:
        if writer is not None:
            writer.close()
    return names, months, rows


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    # fetchall, not fetchone: DuckDB 2 keeps a half-fetched result open on the connection.
    return int(con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0])


def _write_tables(
    con: duckdb.DuckDBPyConnection, staging: Path, sources: dict[str, Source], tick: Any
) -> dict[str, Any]:
    """Write the raw tables into `staging`; return the summary (also meta.json)."""
    columns: dict[str, list[str]] = {}
    columns["transactions"], months, n_transactions = _write_transactions(
        con, staging, sources["transactions"]
    )
    rows = {"transactions": n_transactions}
    tick("transactions written")

    if "customers" in sources:
        customers_query = (
            f"SELECT {', '.join(_columns(sources['customers']))} FROM customers ORDER BY __row"
        )
    else:
        # No customer file: the customers are those seen in transactions or holdings,
        # with no attributes (we do not invent any).
        ids = "SELECT customer_id FROM transactions"
        if "holdings" in sources:
            ids += " UNION SELECT customer_id FROM holdings"
        customers_query = f"SELECT DISTINCT customer_id FROM ({ids}) ORDER BY customer_id"
    columns["customers"], rows["customers"] = _copy(
        con, "customers", customers_query, staging / "customers.parquet"
    )

    for table, file in (("holdings", "holdings.parquet"), ("contacts", CONTACTS_FILE)):
        if table in sources:
            query = f"SELECT {', '.join(_columns(sources[table]))} FROM {table} ORDER BY __row"
            columns[table], rows[table] = _copy(con, table, query, staging / file)
    tick("customers, holdings and contacts written")

    start, end = months[0], months[-1]
    summary: dict[str, Any] = {
        "source": "ingest",
        "seed": None,
        "scenario": None,
        "shock_month": None,
        "customers": rows["customers"],
        "months": (int(end[:4]) - int(start[:4])) * 12 + int(end[5:]) - int(start[5:]) + 1,
        "start_month": start,
        "end_month": end,
        "rows": rows,
        "columns": columns,
        "inputs": {table: str(s.path) for table, s in sources.items()},
        "absent": {t: why for t, why in OPTIONAL_TABLES.items() if t not in sources},
    }
    (staging / "meta.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


# --------------------------------------------------------------------------- entry point


def run_ingest(
    settings: Settings,
    *,
    transactions: Path | None = None,
    customers: Path | None = None,
    holdings: Path | None = None,
    contacts: Path | None = None,
    progress: bool = True,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> dict[str, Any]:
    """Replace the workspace's raw tables by a bank's own files (a full load, all or nothing).

    Returns the summary also written to raw/meta.json: rows per table, customers,
    period. Raises `IngestError` listing every problem (file, row, column) when the
    files are not valid; raw/ is then left exactly as it was. A CSV line longer than
    `max_line_bytes` is such a problem, found in bounded memory.

    With `contacts` alone (no `transactions`), only the contacts table of the existing
    raw tables is replaced (their customers must be among raw/customers.parquet); the
    other tables stay as they are.
    """
    import duckdb
    from rich.console import Console

    given = {
        "transactions": transactions,
        "customers": customers,
        "holdings": holdings,
        "contacts": contacts,
    }
    if transactions is None and (customers is not None or holdings is not None):
        raise IngestError(
            "ingest is a full load: give --transactions with --customers/--holdings "
            "(only --contacts may be ingested alone, into the existing raw tables)"
        )
    if transactions is None and contacts is None:
        raise IngestError("nothing to ingest: give --transactions (a full load) or --contacts")
    problems = Problems()
    sources: dict[str, Source] = {}
    for order, (table, path) in enumerate(given.items()):
        if path is None:
            continue
        # Messages name the file as the user gave it (a symlink, not its target).
        absolute = Path(path).expanduser().absolute()
        is_csv = _file_format(table, absolute, problems, order, str(path))
        if is_csv is not None:
            sources[table] = Source(table, absolute, order, is_csv, given=str(path))
    problems.raise_if_any()
    if transactions is None:
        return _ingest_contacts_only(settings, sources["contacts"], progress, max_line_bytes)

    raw_dir = settings.raw_dir
    with (
        step_progress("reading files", len(sources) + 3, progress) as advance,
        atomic.staged_dir(raw_dir) as staging,
    ):

        def tick(done: str) -> None:
            advance(description=done)

        con = duckdb.connect(
            config={"memory_limit": "4GB", "temp_directory": str(staging / ".duckdb-tmp")}
        )
        # Text without an offset is taken as UTC (documented), and months are UTC months.
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # ours is rich's
        try:
            for source in sources.values():
                _load(con, source, problems, max_line_bytes)
                if source.loaded:
                    _validate(con, source, problems)
                    if source.table == "customers":
                        _check_duplicates(con, source, problems)
                tick(f"{source.table} read and checked")
            txn, cust = sources["transactions"], sources.get("customers")
            if txn.loaded and _count(con, "SELECT * FROM transactions") == 0:
                problems.add(txn.problem("the file has no transactions"))
            if cust is not None and cust.loaded:
                for other in (txn, sources.get("holdings"), sources.get("contacts")):
                    if other is not None and other.loaded:
                        _check_known_customers(
                            con,
                            other,
                            "SELECT customer_id FROM customers",
                            f"the customer file {cust.label}",
                            problems,
                        )
            elif (contact := sources.get("contacts")) is not None and contact.loaded:
                known = "SELECT customer_id FROM transactions"
                where = f"the transactions file {txn.label}"
                if (hold := sources.get("holdings")) is not None:
                    known += " UNION SELECT customer_id FROM holdings"
                    where += f" or the holdings file {hold.label}"
                if txn.loaded and (hold is None or hold.loaded):
                    _check_known_customers(con, contact, known, where, problems)
            problems.raise_if_any()
            summary = _write_tables(con, staging, sources, tick)
        finally:
            con.close()
        shutil.rmtree(staging / ".duckdb-tmp", ignore_errors=True)
        tick("raw tables written; replacing raw/")
    summary["raw_dir"] = str(raw_dir)
    if progress:
        _print_summary(Console(), summary)
    return summary


def _link_tree(source: Path, target: Path, skip: set[str]) -> None:
    """Hard-link every file of `source` into the empty directory `target` (a copy where
    links are refused), except the top-level names in `skip`: an unchanged table costs
    no copy, and the old tree stays intact for its readers until the swap."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.parts[0] in skip or relative.parts[0].startswith("."):
            continue
        out = target / relative
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, out)
        except OSError:
            shutil.copy2(path, out)


def _ingest_contacts_only(
    settings: Settings, source: Source, progress: bool, max_line_bytes: int
) -> dict[str, Any]:
    """Replace raw/contacts.parquet (and meta.json's account of it) in the existing raw
    tables, all or nothing: a new raw/ of links to the unchanged files is swapped in."""
    import duckdb
    from rich.console import Console

    raw_dir = settings.raw_dir
    atomic.recover_dir(raw_dir)
    customers_file = raw_dir / "customers.parquet"
    if not customers_file.is_file():
        raise IngestError(
            f"no raw tables in {raw_dir} to add contacts to: run `clm ingest --transactions ...` "
            "(or `clm simulate`) first, or give --contacts with --transactions"
        )
    problems = Problems()
    with (
        step_progress("reading contacts", 3, progress) as advance,
        atomic.staged_dir(raw_dir) as staging,
    ):
        con = duckdb.connect(
            config={"memory_limit": "4GB", "temp_directory": str(staging / ".duckdb-tmp")}
        )
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        try:
            _load(con, source, problems, max_line_bytes)
            if source.loaded:
                _validate(con, source, problems)
                _check_known_customers(
                    con,
                    source,
                    f"SELECT customer_id FROM read_parquet({_lit(str(customers_file))})",
                    f"the workspace's customers ({customers_file})",
                    problems,
                )
            advance(description="contacts read and checked")
            problems.raise_if_any()
            query = f"SELECT {', '.join(_columns(source))} FROM contacts ORDER BY __row"
            columns, rows = _copy(con, "contacts", query, staging / CONTACTS_FILE)
        finally:
            con.close()
        shutil.rmtree(staging / ".duckdb-tmp", ignore_errors=True)
        advance(description="contacts written")
        _link_tree(raw_dir, staging, skip={CONTACTS_FILE, "meta.json"})
        meta_path = raw_dir / "meta.json"
        meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta.setdefault("rows", {})["contacts"] = rows
        meta.setdefault("columns", {})["contacts"] = columns
        meta.setdefault("inputs", {})["contacts"] = str(source.path)
        meta.get("absent", {}).pop("contacts", None)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        advance(description="replacing raw/")
    summary = {
        "raw_dir": str(raw_dir),
        "rows": {"contacts": rows},
        "columns": {"contacts": columns},
        "inputs": {"contacts": str(source.path)},
    }
    if progress:
        Console().print(
            f"{rows:,} contacts ingested into {raw_dir / CONTACTS_FILE} "
            f"(columns: {', '.join(columns)}); the other raw tables are unchanged"
        )
    return summary


def _print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"ingested into {summary['raw_dir']}", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("columns")
    for name, count in summary["rows"].items():
        table.add_row(name, f"{count:,}", ", ".join(summary["columns"][name]))
    console.print(table)
    for name, why in summary.get("absent", {}).items():
        console.print(f"absent: {name} table (optional) - {why}")
    console.print(
        f"{summary['customers']:,} customers, {summary['start_month']} to {summary['end_month']} "
        f"({summary['months']} months). Next: clm features build"
    )
