"""How long `clm ingest` takes on a large transaction log, against just reading the file.

    .venv/bin/python -m bench.ingest --rows 10000000 --repeat 3
    .venv/bin/python -m bench.ingest --rows 2000000 --repeat 5 --baseline /work/main/features/ingest.py

Writes a synthetic CSV (customer_id, timestamp, amount, direction, channel) with
DuckDB, then times, side by side in one run: reading the CSV into DuckDB as text
(the floor: no validation, no output), a full valid ingest, and a rejected ingest
(one bad amount in the last row, so every check runs over every row). Prints the
medians and the ratio ingest / read. Also times the line scan alone (the bounded-memory
pass that finds over-long lines before DuckDB reads the file) and, with `--baseline
FILE`, another version of features/ingest.py on the same files in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _write_csv(path: Path, rows: int, bad_last_row: bool) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    amount = (
        f"CASE WHEN i = {rows - 1} THEN 'oops' ELSE printf('%.2f', (hash(i) % 100000) / 100.0) END"
        if bad_last_row
        else "printf('%.2f', (hash(i) % 100000) / 100.0)"
    )
    con.execute(
        f"""COPY (SELECT lpad(CAST(i % 100000 AS VARCHAR), 7, '0') AS customer_id,
                   strftime(TIMESTAMP '2024-01-01' + to_seconds(CAST(i * 63072000 // {rows} AS BIGINT)), '%Y-%m-%d %H:%M:%S') AS timestamp,
                   {amount} AS amount,
                   CASE WHEN hash(i) % 3 = 0 THEN 'credit' ELSE 'debit' END AS direction,
                   (['app', 'pos', 'atm', 'online', 'branch', 'transfer'])[1 + CAST(hash(i) % 6 AS BIGINT)] AS channel
            FROM range({rows}) t(i)) TO '{path.as_posix()}' (HEADER, DELIMITER ',')"""
    )
    con.close()


def _read_only(path: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE t AS SELECT * FROM read_csv('{path.as_posix()}', all_varchar=true, header=true)"
    )
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions in the file")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement (median reported)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another features/ingest.py (e.g. main's) to time side by side",
    )
    args = parser.parse_args()

    from clm.errors import ClmError
    from clm.settings import Settings
    from features.ingest import DEFAULT_MAX_LINE_BYTES, run_ingest, scan_lines

    baseline = None
    if args.baseline is not None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("baseline_ingest", args.baseline)
        assert spec is not None and spec.loader is not None
        import sys

        baseline = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = baseline  # dataclasses look their module up
        spec.loader.exec_module(baseline)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        good, bad = root / "good.csv", root / "bad.csv"
        _write_csv(good, args.rows, bad_last_row=False)
        _write_csv(bad, args.rows, bad_last_row=True)
        settings = Settings.load(home=root / "ws", env={})
        times: dict[str, list[float]] = {
            "read CSV only (DuckDB, text)": [],
            "ingest (valid)": [],
            "ingest (rejected)": [],
            "line scan only": [],
        }
        if baseline is not None:
            times["baseline ingest (valid)"] = []
            times["baseline ingest (rejected)"] = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            _read_only(good)
            times["read CSV only (DuckDB, text)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            run_ingest(settings, transactions=good, progress=False)
            times["ingest (valid)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            try:
                run_ingest(settings, transactions=bad, progress=False)
            except ClmError:
                pass
            else:
                raise SystemExit("the bad file was accepted")
            times["ingest (rejected)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            scan_lines(good, DEFAULT_MAX_LINE_BYTES)
            times["line scan only"].append(time.perf_counter() - t)
            if baseline is not None:
                t = time.perf_counter()
                baseline.run_ingest(settings, transactions=good, progress=False)
                times["baseline ingest (valid)"].append(time.perf_counter() - t)
                t = time.perf_counter()
                try:
                    baseline.run_ingest(settings, transactions=bad, progress=False)
                except ClmError:
                    pass
                times["baseline ingest (rejected)"].append(time.perf_counter() - t)
        size_mb = good.stat().st_size / 1e6
    floor = statistics.median(times["read CSV only (DuckDB, text)"])
    print(f"{args.rows:,} rows, {size_mb:,.0f} MB CSV, median of {args.repeat}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:32s} {median:7.2f} s   x{median / floor:4.1f} of read-only")
    if baseline is not None:
        for kind in ("valid", "rejected"):
            ours = statistics.median(times[f"ingest ({kind})"])
            base = statistics.median(times[f"baseline ingest ({kind})"])
            print(f"  ingest ({kind}) / baseline: x{ours / base:.2f}")


if __name__ == "__main__":
    main()
