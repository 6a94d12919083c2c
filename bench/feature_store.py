"""Training-set build: Feast get_historical_features vs a plain DuckDB ASOF JOIN.

Both read the same feature parquet for the same entity rows (customer, time), in
one run; each side runs in its own process so its peak memory (VmHWM) is its own.
The values must be equal (asserted); the table gives wall time and peak memory and
their ratios (goal: Feast <= 3x the plain join).

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.feature_store \\
        --home /tmp/clm-bench-fs --customers 60000 --months 18 --entities 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _settings(home: Path):  # type: ignore[no-untyped-def]
    from clm.settings import Settings

    return Settings.load(home=home, env={})


def prepare(home: Path, customers: int, months: int, entities: int, seed: int) -> Path:
    """Simulate, build and apply once (reused across runs); write the entity rows."""
    from features.catalog import FEATURE_FILE
    from features.pipeline import run_build
    from features.store import run_apply

    settings = _settings(home)
    table = settings.feature_dir / FEATURE_FILE
    if not table.is_file():
        from features.simulator import run_simulation

        t = time.monotonic()
        run_simulation(settings, customers=customers, months=months, seed=seed, progress=False)
        print(
            f"simulated {customers:,} customers x {months} months in {time.monotonic() - t:.1f}s",
            flush=True,
        )
        t = time.monotonic()
        summary = run_build(settings, progress=False)
        print(f"built {summary['rows']:,} feature rows in {time.monotonic() - t:.1f}s", flush=True)
    run_apply(settings)
    path = home / f"entities-{entities}.parquet"
    if not path.is_file():
        keys = pd.read_parquet(table, columns=["customer_id", "event_timestamp"])
        rng = np.random.default_rng(seed)
        pick = keys.iloc[rng.integers(0, len(keys), entities)].reset_index(drop=True)
        # Entity times anywhere in the month after a snapshot (a training row's "as of").
        offset = pd.to_timedelta(rng.integers(0, 28 * 86400, entities), unit="s")
        ent = pd.DataFrame(
            {
                "customer_id": pick["customer_id"],
                "event_timestamp": pick["event_timestamp"] + offset,
            }
        )
        ent["event_timestamp"] = ent["event_timestamp"].astype("datetime64[us, UTC]")
        ent.to_parquet(path, index=False)
    return path


def worker(kind: str, home: Path, entities: Path, out: Path, service: str) -> None:
    settings = _settings(home)
    ent = pd.read_parquet(entities)
    from features.store import feature_names

    names = feature_names(settings, service)
    # Imports are a once-per-process cost (Feast's take seconds): time the join only.
    t0 = time.monotonic()
    if kind == "feast":
        from features.store import feature_store

        feature_store(settings).get_feature_service(service)
    else:
        import duckdb  # noqa: F401
    imports = time.monotonic() - t0
    t = time.monotonic()
    if kind == "feast":
        from features.store import training_frame

        frame = training_frame(settings, service, ent, progress=False)
    else:
        import duckdb

        from features.catalog import FEATURE_FILE, FEATURE_TTL_DAYS

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("ent", ent.assign(__row=np.arange(len(ent))))
        cols = ", ".join(
            f"CASE WHEN e.event_timestamp - f.event_timestamp <= INTERVAL {FEATURE_TTL_DAYS} DAY THEN f.{n} END AS {n}"
            for n in names
        )
        path = (settings.feature_dir / FEATURE_FILE).as_posix()
        frame = con.execute(
            f"""SELECT e.customer_id, e.event_timestamp, {cols}
            FROM ent e ASOF LEFT JOIN read_parquet('{path}') f
              ON e.customer_id = f.customer_id AND e.event_timestamp >= f.event_timestamp
            ORDER BY e.__row"""
        ).df()
    seconds = time.monotonic() - t
    frame[names].to_numpy(dtype="float64").tofile(out)
    print(
        json.dumps(
            {
                "kind": kind,
                "seconds": seconds,
                "import_s": imports,
                "peak_mb": _peak_rss_mb(),
                "rows": len(frame),
            }
        )
    )


def _run_worker(kind: str, args: argparse.Namespace, entities: Path, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.feature_store",
        "--worker",
        kind,
        "--home",
        str(args.home),
        "--entity-file",
        str(entities),
        "--out",
        str(out),
        "--service",
        args.service,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--home", type=Path, default=Path("/tmp/clm-bench-fs"))
    p.add_argument("--customers", type=int, default=60000)
    p.add_argument("--months", type=int, default=18)
    p.add_argument("--entities", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--service", default="churn_v1")
    p.add_argument("--worker", choices=["feast", "asof"], help=argparse.SUPPRESS)
    p.add_argument("--entity-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.home, args.entity_file, args.out, args.service)
        return
    args.home = args.home.resolve()
    entities = prepare(args.home, args.customers, args.months, args.entities, args.seed)
    results: dict[str, list[dict]] = {"feast": [], "asof": []}
    for run in range(args.runs):
        outs = {}
        for kind in ("asof", "feast"):
            outs[kind] = args.home / f"out-{kind}.bin"
            r = _run_worker(kind, args, entities, outs[kind])
            results[kind].append(r)
            print(
                f"run {run + 1} {kind:5s}: {r['seconds']:.2f}s (+{r['import_s']:.1f}s imports), "
                f"peak {r['peak_mb']:.0f} MB",
                flush=True,
            )
        a = np.fromfile(outs["feast"])
        b = np.fromfile(outs["asof"])
        assert a.shape == b.shape, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=0, atol=0, equal_nan=True)
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_mb")}
        for k, v in results.items()
    }
    rows = results["feast"][0]["rows"]
    print(
        f"\ntraining set of {rows:,} entity rows, service {args.service}, medians of {args.runs} runs; values equal"
    )
    print("| path | wall s | peak MB |")
    print("|---|---|---|")
    for k, label in (
        ("asof", "DuckDB ASOF JOIN (baseline)"),
        ("feast", "Feast get_historical_features"),
    ):
        print(f"| {label} | {med[k]['seconds']:.2f} | {med[k]['peak_mb']:.0f} |")
    print(
        f"| ratio Feast / ASOF | {med['feast']['seconds'] / med['asof']['seconds']:.2f}x | "
        f"{med['feast']['peak_mb'] / med['asof']['peak_mb']:.2f}x |"
    )


if __name__ == "__main__":
    main()
