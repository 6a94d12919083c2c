"""Benchmark `clm simulate`: wall time and peak memory against the issue's budgets.

Each run simulates in a child process (so its peak RSS is its own, read from
`os.wait4`) into a throw-away workspace. The ratio column compares the median
against the budget of issue 2: 2k x 18 "in seconds" (10 s), 100k x 24 "in a
few minutes" (180 s), 1M x 12 "within this machine's 24 GB" (and our own target
of < 6 GB peak RSS since the machine is shared).

    python -m bench.simulate --customers 2000 --months 18 --runs 5
    flock /tmp/clm-heavy.lock python -m bench.simulate --customers 1000000 --months 12 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = {(2_000, 18): 10.0, (100_000, 24): 180.0}
BUDGET_RSS_GB = 6.0

CHILD = """
import json, sys
from clm.settings import Settings
from features.simulator import run_simulation
home, customers, months, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
meta = run_simulation(Settings.load(home=home, env={}), customers=customers, months=months, seed=seed,
                      progress=False)
print(json.dumps(meta))
"""


def run_once(customers: int, months: int, seed: int) -> dict:
    """One simulation in a child process: seconds, peak RSS (GB), bytes written, the meta."""
    home = Path(tempfile.mkdtemp(prefix="clm-bench-sim-"))
    try:
        began = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), str(customers), str(months), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"simulation failed with exit code {child.returncode}")
        size = sum(p.stat().st_size for p in (home / "raw").rglob("*") if p.is_file())
        return {
            "seconds": seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_gb": usage.ru_maxrss / 1024**2,  # ru_maxrss is in KiB on Linux
            "disk_gb": size / 1024**3,
            "meta": json.loads(out.strip().splitlines()[-1]),
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    runs = [run_once(args.customers, args.months, args.seed) for _ in range(args.runs)]
    seconds = statistics.median(r["seconds"] for r in runs)
    cpu = statistics.median(r["cpu_seconds"] for r in runs)
    rss = max(r["peak_rss_gb"] for r in runs)
    load = os.getloadavg()[0]
    meta = runs[-1]["meta"]
    budget = BUDGET_SECONDS.get((args.customers, args.months))
    rows = meta["rows"]
    print(f"clm simulate --customers {args.customers} --months {args.months} (runs: {args.runs})")
    each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
    print(f"  wall time median  {seconds:8.1f} s   runs: {each}")
    # CPU time is what the machine's load does not inflate (the machine is shared).
    print(f"  CPU time median   {cpu:8.1f} s   (1-min load average at the end: {load:.1f})")
    if budget:
        print(f"  vs budget         {seconds / budget:8.2f} x of {budget:.0f} s")
    print(
        f"  peak RSS (max)    {rss:8.2f} GB  = {rss / BUDGET_RSS_GB:.2f} x of the {BUDGET_RSS_GB:.0f} GB target"
    )
    print(f"  written           {runs[-1]['disk_gb']:8.2f} GB on disk")
    print(f"  customers total   {meta['customers_total']:>10,}")
    print(
        f"  transactions      {rows['transactions']:>10,}  ({rows['transactions'] / seconds:,.0f} rows/s)"
    )
    print(
        f"  annual churn      {meta['annual_churn_rate']:.1%}   oracle AUC churn {meta['oracle_auc']['churn_90d']}"
    )


if __name__ == "__main__":
    main()
