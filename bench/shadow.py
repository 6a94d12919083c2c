"""Shadow scoring's cost: p50/p99 of a one-id /score with and without a challenger.

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.shadow --home WORKSPACE

WORKSPACE is a trained workspace; if it does not exist, a small one is built
(`clm simulate/features/train`, 2,000 customers). It is cloned, and the clone's
churn family gets a challenger (the champion's files rescaled, so it scores
differently). One service runs throughout; rounds alternate between "no shadow"
(challenger alias on the champion's own version: nothing to shadow) and "shadow"
(challenger alias on the copy; every /score is also scored by it in the
background), each round `--requests` sequential one-id requests after a warm-up.
Reported: the median over rounds of each side's p50 and p99, and their ratio
(goal: p99 rises by at most 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from bench.serving import load
from clm.settings import Settings


def build_workspace(home: Path, customers: int) -> None:
    clm = str(Path(sys.executable).with_name("clm"))
    env = {**os.environ, "CLM_HOME": str(home)}
    steps = [
        ["simulate", "--customers", str(customers), "--months", "15", "--seed", "5"],
        ["features", "build"],
        ["features", "apply"],
        ["features", "materialize"],
        ["train", "all", "--trials", "2"],
    ]
    for step in steps:
        subprocess.run([clm, *step], env=env, check=True, stdout=subprocess.DEVNULL)


def wait_for_shadow(
    url: str, admin: dict[str, str], headers: dict[str, str], version: str | None
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        httpx.post(f"{url}/admin/reload", headers=admin, timeout=60)
        models = httpx.get(f"{url}/models", headers=headers, timeout=10).json()["models"]
        if (models["churn"].get("shadow") or {}).get("version") == version:
            return
        time.sleep(0.5)
    raise RuntimeError(f"shadow version never became {version}")


def main(argv: list[str] | None = None) -> None:
    from clm import mlflow_access
    from tests.fixtures.service import clone_workspace, service_config, start_service
    from tests.serving.registry_tools import copy_version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    if not (args.home / "mlflow").exists():
        build_workspace(args.home, args.customers)
    source = Settings.load(home=args.home, env={})
    with tempfile.TemporaryDirectory(prefix="clm-shadow-") as tmp_name:
        tmp = Path(tmp_name)
        settings = clone_workspace(source, tmp / "workspace")
        client = mlflow_access.client(settings)
        name = settings.models.family("churn").registered_name
        champion = str(client.get_model_version_by_alias(name, settings.aliases.champion).version)
        challenger = copy_version(settings, "churn", champion, tmp, corrupt="rescaled")
        ids = pd.read_parquet(
            next((settings.home / "features").glob("*.parquet")), columns=["customer_id"]
        )["customer_id"].unique()
        body = {"customer_ids": [str(ids[0])]}
        results: dict[str, list[dict[str, float]]] = {"no shadow": [], "shadow": []}
        with start_service(settings, service_config(tmp), tmp) as service:
            admin = service.headers(admin=True)
            url = f"{service.url}/score"
            for round_ in range(args.rounds):
                order = ["no shadow", "shadow"] if round_ % 2 == 0 else ["shadow", "no shadow"]
                for side in order:
                    alias_to = challenger if side == "shadow" else champion
                    client.set_registered_model_alias(name, settings.aliases.challenger, alias_to)
                    wait_for_shadow(
                        service.url,
                        admin,
                        service.headers(),
                        challenger if side == "shadow" else None,
                    )
                    load(url, body, service.headers(), clients=1, requests=50)  # warm-up
                    results[side].append(
                        load(url, body, service.headers(), clients=1, requests=args.requests)
                    )
                    print(side, {k: round(v, 2) for k, v in results[side][-1].items()}, flush=True)
    summary: dict[str, Any] = {
        side: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for side, rounds in results.items()
    }
    summary["p99_ratio"] = summary["shadow"]["p99_ms"] / summary["no shadow"]["p99_ms"]
    summary["p50_ratio"] = summary["shadow"]["p50_ms"] / summary["no shadow"]["p50_ms"]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
