"""`clm demo`: the whole loop on a small simulated bank, then where everything is.

Each step calls the same public function its own command calls, so the demo
shows exactly what a user would get from running the commands one by one.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm.errors import ClmError
from clm.process import stop_process, wait_for_http

if TYPE_CHECKING:
    from rich.console import Console

    from clm.settings import Settings


class DemoError(ClmError):
    """A step of the demo failed; the message says which and why."""


def run_demo(
    settings: Settings,
    *,
    customers: int = 3000,
    months: int = 18,
    trials: int = 5,
    seed: int = 7,
) -> dict[str, Any]:
    from rich.console import Console

    console = Console(soft_wrap=True)
    done: dict[str, Any] = {"home": str(settings.home)}
    console.rule(f"[bold]clm demo[/] - workspace {settings.home}")

    def step(title: str, action: Callable[[], Any]) -> Any:
        console.print(f"\n[bold cyan]>>[/] {title}")
        started = time.perf_counter()
        result = action()
        console.print(f"   [green]done[/] in {time.perf_counter() - started:.1f} s")
        return result

    from features.simulator import run_simulation

    done["simulation"] = step(
        f"Simulating a bank of {customers:,} customers over {months} months (seed {seed})",
        lambda: run_simulation(
            settings, customers=customers, months=months, seed=seed, start_month="2024-01"
        ),
    )

    from features.pipeline import run_build
    from features.store import run_apply, run_materialize

    step("Building feature tables and labels (DuckDB)", lambda: run_build(settings))
    step("Registering the Feast definitions (feast apply)", lambda: run_apply(settings))
    step("Loading the online store (feast materialize)", lambda: run_materialize(settings))

    from training.pipeline import run_train

    done["versions"] = step(
        f"Training churn, propensity and stage models ({trials} Optuna trials each)",
        lambda: run_train(settings, model="all", trials=trials),
    )

    api_key = settings.api_keys[0] if settings.api_keys else f"demo-{secrets.token_hex(8)}"
    admin_token = settings.admin_token or f"admin-{secrets.token_hex(8)}"
    port = _free_port()
    with _service(settings, port, api_key, admin_token, console) as base_url:
        done["scores"] = step(
            f"Scoring customers over HTTP at {base_url}/score",
            lambda: _score_some(settings, base_url, api_key, console),
        )

    latest = _latest_snapshot_date(settings)
    batch_out = settings.home / "scores" / f"batch-{latest}.parquet"
    from serving.batch import run_score_batch

    step(
        f"Batch-scoring every customer as of {latest}",
        lambda: run_score_batch(settings, as_of=latest, out=batch_out),
    )

    from monitoring.drift import run_drift

    drift_code = step(
        "Checking drift of the batch scores against the champions' reference samples",
        lambda: run_drift(settings, model=None, window=None, current=batch_out),
    )
    done["drift_exit_code"] = drift_code

    from campaigns.demo import demo_campaign

    campaign = done["campaign"] = step(
        f"Campaign: a retention list as of {latest} with a 50% control group, called by the "
        "simulated bank, features rebuilt, evaluated after 90 days",
        lambda: demo_campaign(
            settings, as_of=latest, customers=customers, months=months, seed=seed
        ),
    )
    truth = campaign.get("true_effect")
    console.print(
        f"   {campaign['verdict']}"
        + ("" if truth is None else f" (simulator truth {truth * 100:+.1f} pp)")
    )

    _where_is_everything(settings, console, api_key, batch_out, done)
    return done


@contextmanager
def _service(
    settings: Settings, port: int, api_key: str, admin_token: str, console: Console
) -> Iterator[str]:
    """Start `clm serve` in the background, wait until it is ready, stop it afterwards."""
    env = dict(os.environ)
    env.update(
        CLM_HOME=str(settings.home),
        CLM_API_KEYS=api_key,
        CLM_ADMIN_TOKEN=admin_token,
    )
    if settings.config_path:
        env["CLM_CONFIG"] = str(settings.config_path)
    log_path = settings.home / "logs" / "demo-service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "clm.cli", "serve", "--port", str(port)]
    console.print(f"\n[bold cyan]>>[/] Starting the scoring service on port {port}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            problem = wait_for_http(proc, f"{base_url}/readyz", timeout=180)
            if problem is not None:
                raise DemoError(f"the scoring service {problem}; see {log_path}")
            console.print(f"   [green]ready[/] (log: {log_path})")
            yield base_url
        finally:
            stop_process(proc)


def _score_some(settings: Settings, base_url: str, api_key: str, console: Console) -> list[dict]:
    import httpx
    import pandas as pd
    from rich.table import Table

    features = pd.read_parquet(settings.feature_dir / "labels.parquet", columns=["customer_id"])
    ids = sorted(features["customer_id"].unique())[:5] + ["C9999999"]
    response = httpx.post(
        f"{base_url}/score",
        json={"customer_ids": ids, "explain": True},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    if response.status_code != 200:
        raise DemoError(f"/score answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    table = Table(title=f"POST /score - model versions {body['model_versions']}")
    for column in (
        "customer",
        "churn",
        "risk band",
        "next best product",
        "stage now -> next",
        "top churn reason",
    ):
        table.add_column(column)
    for row in body["results"]:
        reasons = (row.get("reasons") or {}).get("churn") or [{}]
        table.add_row(
            row["customer_id"],
            f"{row['churn']['probability']:.3f}",
            row["churn"]["risk_band"],
            str(row["next_best_product"]),
            f"{row['stage']['current']} -> {row['stage']['next']}",
            str(reasons[0].get("feature", "")),
        )
    console.print(table)
    for error in body.get("errors", []):
        console.print(f"   error entry: {error['customer_id']}: {error['code']}")
    return list(body["results"])


def _latest_snapshot_date(settings: Settings) -> str:
    from features.store import snapshots

    latest = max(snapshots(settings))
    # snapshot_ts is the first instant after the month end it describes.
    return (latest - _one_day()).strftime("%Y-%m-%d")


def _one_day() -> Any:
    import pandas as pd

    return pd.Timedelta(days=1)


def _where_is_everything(
    settings: Settings,
    console: Console,
    api_key: str,
    batch_out: Path,
    done: dict[str, Any] | None = None,
) -> None:
    done = done or {}
    drift_runs = sorted((settings.reports_dir / "drift").glob("*/"), key=lambda p: p.name)
    console.rule("[bold]Where everything is")
    console.print(f"workspace          {settings.home}")
    console.print(f"raw tables         {settings.raw_dir}")
    console.print(f"feature tables     {settings.feature_dir}")
    console.print(f"batch scores       {batch_out}")
    if drift_runs:
        for path in sorted(drift_runs[-1].glob("*")):
            console.print(f"drift report       {path}")
    for key, label in (("export", "campaign list"), ("report", "campaign report")):
        if done.get("campaign", {}).get(key):
            console.print(f"{label:<19}{done['campaign'][key]}")
    console.print(
        f"MLflow UI          .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}"
    )
    console.print(f"Feast              CLM_HOME={settings.home} .venv/bin/feast -c features plan")
    console.print(
        f"scoring API        CLM_HOME={settings.home} CLM_API_KEYS={api_key} .venv/bin/clm serve --port 3000"
    )
    console.print(
        "                   curl -s -H 'Authorization: Bearer "
        f"{api_key}' -H 'Content-Type: application/json' "
        '-d \'{"customer_ids": ["C0000001"], "explain": true}\' http://127.0.0.1:3000/score'
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
