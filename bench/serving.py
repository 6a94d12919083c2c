"""Serving benchmarks, side by side in one run (medians of several rounds).

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.serving --home WORKSPACE

WORKSPACE is a trained workspace (`clm simulate`, `clm features build/apply/
materialize`, `clm train all`). It is cloned first (the swap benchmark moves the
churn alias and registers a copy), so the workspace itself is left as it was.

1. /score_features, one customer, all three families  vs  `mlflow models serve
   --env-manager local` on the churn model alone with the same row; 1 and 8
   concurrent clients: p50/p99 latency and throughput ratio.
2. /score with the online lookup, 1 and 100 customers: p50/p99.
3. Batch scoring (serving.batch's scoring + parquet layout) vs raw Booster.predict
   of the same boosters on the same matrix (the snapshot repeated to --batch-rows).
4. Swap under load: p99 while the churn champion flips every second vs steady.
5. Explain starvation (`--only explain`): p99 of a one-id /score while four clients
   send explain requests back to back, each with its own key. With
   `--baseline-src DIR` (a checkout of the code before the explain limits, e.g.
   `git worktree add /tmp/clm-base <commit>`) that code is served beside ours from
   the same workspace and measured in alternating rounds; its clients send the
   issue's 1,000 ids, ours the most the limits allow (`serving.max_explain_ids`).

`--gc-probe off|freeze` instead runs /score's work in this process with every
garbage-collection pass timed (what found the cause of the 100-customer p99).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from clm.process import stop_process
from clm.settings import REPO_ROOT, Settings


def percentiles(latencies: list[float]) -> tuple[float, float]:
    arr = np.asarray(latencies) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def load(
    url: str,
    body: Any,
    headers: dict[str, str],
    *,
    clients: int,
    requests: int,
    versions: list[str] | None = None,
) -> dict[str, float]:
    """`clients` threads, each sending `requests` POSTs back to back on a kept-alive connection."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    payload = json.dumps(body).encode()
    send_headers = {**headers, "Content-Type": "application/json"}

    def run() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=30) as http:
            for _ in range(requests):
                started = time.perf_counter()
                response = http.post(url, content=payload, headers=send_headers)
                mine.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors[0] += 1
                elif versions is not None:
                    versions.append(response.json()["model_versions"]["churn"])
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "rps": len(latencies) / elapsed, "errors": errors[0]}


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def wait_http(url: str, timeout: float = 180, headers: dict[str, str] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {timeout} s")


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def explain_starvation(
    url: str,
    probe_headers: dict[str, str],
    client_headers: list[dict[str, str]],
    probe_id: str,
    explain_ids: list[str],
    seconds: float,
) -> dict[str, Any]:
    """One-id /score latencies while len(client_headers) clients send explain requests
    back to back (a 429 is retried after a tenth of a second, not after Retry-After)."""
    import httpx

    stop = threading.Event()
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    payload = json.dumps({"customer_ids": explain_ids, "explain": True}).encode()

    def hammer(headers: dict[str, str]) -> None:
        with httpx.Client(timeout=600) as http:
            while not stop.is_set():
                try:
                    response = http.post(
                        f"{url}/score",
                        content=payload,
                        headers={**headers, "Content-Type": "application/json"},
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                if status == 429:
                    stop.wait(0.1)

    threads = [threading.Thread(target=hammer, args=(h,)) for h in client_headers]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let the explain requests pile up first
    latencies: list[float] = []
    probe = json.dumps({"customer_ids": [probe_id]}).encode()
    errors = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=600) as http:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = http.post(
                f"{url}/score",
                content=probe,
                headers={**probe_headers, "Content-Type": "application/json"},
            )
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
            time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    p50, p99 = percentiles(latencies)
    return {
        "probe_requests": len(latencies),
        "probe_p50_ms": p50,
        "probe_p99_ms": p99,
        "probe_max_ms": max(latencies) * 1000,
        "probe_errors": errors,
        "explain_statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


@contextlib.contextmanager
def baseline_service(source: Path, settings: Settings, tmp: Path, keys: list[str]) -> Iterator[str]:
    """`clm serve` of the code in `source` (its own mlflow.yaml) on `settings`' workspace."""
    import yaml

    from tests.fixtures.service import free_port

    data = yaml.safe_load((source / "mlflow.yaml").read_text())
    data.setdefault("serving", {})["poll_seconds"] = 1.0
    config = tmp / "mlflow-baseline.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLM_", "MLFLOW_"))}
    env.update(
        CLM_HOME=str(settings.home),
        CLM_CONFIG=str(config),
        CLM_API_KEYS=",".join(keys),
        PYTHONPATH=str(source),
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    command = [sys.executable, "-m", "clm.cli", "serve", "--port", str(port)]
    with open(tmp / "baseline-serve.log", "wb") as fh:
        proc = subprocess.Popen(
            command, env=env, cwd=source, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz")
        yield url
    finally:
        stop_process(proc)


def bench_explain(
    settings: Settings,
    tmp: Path,
    *,
    baseline_src: Path | None,
    rounds: int,
    seconds: float,
    customers: list[str],
    baseline_ids: int = 1000,
) -> dict[str, Any]:
    """Section 5: one-id /score p99 under four explain clients, ours vs the baseline."""
    from tests.fixtures.service import service_config, start_service

    keys = [f"bench-explain-{i}" for i in range(4)]
    probe_key = "bench-probe"
    config = service_config(tmp, poll_seconds=1.0)
    allowed = Settings.load(home=settings.home, config=config, env={}).serving.max_explain_ids
    out: dict[str, Any] = {"clients": len(keys), "seconds_per_round": seconds}
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(
            start_service(settings, config, tmp, extra_keys=[*keys, probe_key])
        ).url
        servers = {"ours": (ours, customers[:allowed])}
        if baseline_src is not None:
            base = stack.enter_context(
                baseline_service(baseline_src, settings, tmp, [*keys, probe_key])
            )
            servers["baseline"] = (base, customers[:baseline_ids])
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        idle: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for _ in range(rounds):
            for name, (url, ids) in servers.items():
                probe = {"Authorization": f"Bearer {probe_key}"}
                idle[name].append(
                    explain_starvation(url, probe, [], customers[0], ids, seconds / 3)
                )
                runs[name].append(
                    explain_starvation(
                        url,
                        probe,
                        [{"Authorization": f"Bearer {k}"} for k in keys],
                        customers[0],
                        ids,
                        seconds,
                    )
                )
                print(name, json.dumps(runs[name][-1]), flush=True)
        for name, (_, ids) in servers.items():
            numbers = [
                {k: v for k, v in r.items() if isinstance(v, int | float)} for r in runs[name]
            ]
            out[name] = {
                "explain_ids_per_request": len(ids),
                "idle": median_of(
                    [{k: v for k, v in r.items() if isinstance(v, int | float)} for r in idle[name]]
                ),
                "under_explain_load": median_of(numbers),
                "explain_statuses_per_round": [r["explain_statuses"] for r in runs[name]],
            }
        if "baseline" in out:
            out["p99_ratio_ours_over_baseline"] = (
                out["ours"]["under_explain_load"]["probe_p99_ms"]
                / out["baseline"]["under_explain_load"]["probe_p99_ms"]
            )
    return out


def bench_batch(settings: Settings, rows: int, rounds: int) -> dict[str, Any]:
    """Batch scoring (compiled trees, as `clm score-batch` scores) vs raw Booster.predict of
    the same boosters on the same matrix."""
    import pyarrow.parquet as pq

    from serving.batch import feature_matrix, load_champions, read_snapshot, score_table
    from serving.compiled import compile_models

    lightgbm_models = load_champions(settings)
    table = pq.read_table(
        settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )
    latest = max(table["event_timestamp"].to_pylist()).date() - timedelta(days=1)
    _, snapshot = read_snapshot(settings, latest.isoformat(), list(lightgbm_models.union))
    base = feature_matrix(snapshot, lightgbm_models.union)
    began = time.perf_counter()
    models, outcomes = compile_models(settings, lightgbm_models, base)
    compile_s = time.perf_counter() - began
    # Once more: the second load is what every later batch of the same versions pays.
    began = time.perf_counter()
    compile_models(settings, lightgbm_models, base)
    cached_s = time.perf_counter() - began
    reps = -(-rows // base.shape[0])
    matrix = np.ascontiguousarray(np.tile(base, (reps, 1))[:rows])
    ids = [f"C{i:07d}" for i in range(rows)]
    per_family = {
        f: np.ascontiguousarray(matrix[:, models.columns[f]])
        for f in ("churn", "propensity", "stage")
    }
    chunk = 200_000

    def raw() -> None:
        for family in ("churn", "propensity", "stage"):
            for booster in models.family(family).boosters.values():
                booster.predict(per_family[family])

    def compiled_predict() -> None:  # the same work as raw(), with the compiled trees
        for family in ("churn", "propensity", "stage"):
            for predictor in models.family(family).fast.values():
                predictor(per_family[family])

    def ours() -> None:
        for start in range(0, rows, chunk):
            score_table(
                models,
                ids[start : start + chunk],
                matrix[start : start + chunk],
                request_id="bench",
            )

    def ours_to_parquet() -> None:
        from serving.batch import output_schema

        with (
            tempfile.TemporaryDirectory() as tmp,
            pq.ParquetWriter(Path(tmp) / "out.parquet", output_schema(models.union)) as writer,
        ):
            for start in range(0, rows, chunk):
                writer.write_batch(
                    score_table(
                        models,
                        ids[start : start + chunk],
                        matrix[start : start + chunk],
                        request_id="bench",
                    )
                )

    times: dict[str, list[float]] = {"raw": [], "compiled": [], "ours": [], "ours_parquet": []}
    for _ in range(rounds):
        for name, fn in (
            ("raw", raw),
            ("compiled", compiled_predict),
            ("ours", ours),
            ("ours_parquet", ours_to_parquet),
        ):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "rows": rows,
        "snapshot_rows": int(base.shape[0]),
        "boosters": sum(len(m.boosters) for m in models.models()),
        "trees": sum(b.num_trees() for m in models.models() for b in m.boosters.values()),
        "compiled": {f"{o.family}/{o.key}": o.status for o in outcomes},
        "compile_s": compile_s,
        "cached_load_s": cached_s,
        "raw_rows_per_s": rows / med["raw"],
        "compiled_rows_per_s": rows / med["compiled"],
        "ratio_predict": med["raw"] / med["compiled"],
        "ours_rows_per_s": rows / med["ours"],
        "ours_parquet_rows_per_s": rows / med["ours_parquet"],
        "ratio": med["raw"] / med["ours"],
        "ratio_parquet": med["raw"] / med["ours_parquet"],
    }


def gc_probe(home: Path, *, customers: int, requests: int, freeze: bool) -> dict[str, Any]:
    """/score's work in this process (holder polling every 1 s, prediction log with a
    20 s roll, online lookup, scoring, JSON) with every GC pass timed: `freeze` does
    what the service's start-up does (gc.collect + gc.freeze once everything is loaded).
    Run once per variant, each in its own process (freezing is process-wide)."""
    import gc

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features.online import OnlineFeatureReader
    from features.store import feature_names
    from serving.holder import ModelHolder
    from serving.predlog import PredictionLog
    from serving.scoring import score

    settings = Settings.load(home=home, env={})
    serving = settings.serving.model_copy(update={"poll_seconds": 1.0})
    settings = settings.model_copy(update={"serving": serving})
    holder = ModelHolder(settings, expected_features=lambda s: list(feature_names(settings, s)))
    holder.start()
    tmp = Path(tempfile.mkdtemp(prefix="clm-gc-probe-"))
    predictions = PredictionLog(tmp / "predictions", flush_seconds=1.0, roll_seconds=20.0)
    reader = OnlineFeatureReader(settings)
    table = pq.read_table(
        settings.feature_dir / "customer_features.parquet",
        columns=["customer_id", "event_timestamp"],
    )
    latest = pc.max(table["event_timestamp"])
    ids = sorted(
        str(c)
        for c in table.filter(pc.equal(table["event_timestamp"], latest))["customer_id"].to_pylist()
    )[:customers]
    models = holder.current
    assert models is not None
    service = models.churn.feature_service
    reader.lookup(ids[:1], service)
    if freeze:
        gc.collect()
        gc.freeze()
    passes: list[tuple[int, float]] = []
    started: list[float] = [0.0]

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            passes.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(timer)
    latencies = []
    try:
        for i in range(requests):
            t0 = time.perf_counter()
            current = holder.current or models
            frame, _ = reader.lookup(ids, service)
            matrix = np.full((len(ids), len(current.union)), np.nan)
            matrix[:, current.columns["churn"]] = frame.to_numpy(dtype=np.float64, na_value=np.nan)
            scored = score(current, ids, matrix, explain=False)
            json.dumps({"results": scored.results}, allow_nan=False)
            predictions.append(f"probe-{i}", "score", scored)
            latencies.append(time.perf_counter() - t0)
    finally:
        gc.callbacks.remove(timer)
        holder.stop()
        predictions.close()
        shutil.rmtree(tmp, ignore_errors=True)
    p50, p99 = percentiles(latencies)
    full = [seconds * 1000 for generation, seconds in passes if generation == 2]
    return {
        "freeze": freeze,
        "customers": len(ids),
        "requests": requests,
        "p50_ms": p50,
        "p99_ms": p99,
        "gen2_passes": len(full),
        "gen2_median_ms": statistics.median(full) if full else 0.0,
        "gen2_max_ms": max(full, default=0.0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--home", type=Path, required=True, help="a trained workspace (it is cloned, not changed)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds per measurement (medians reported)"
    )
    parser.add_argument("--requests", type=int, default=400, help="requests per client per round")
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--skip", default="", help="comma list of parts to skip: http,score,batch,swap,explain"
    )
    parser.add_argument(
        "--only", default="", help="comma list of the parts to run (instead of --skip)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="explain part: a checkout of the code before the explain limits, served beside ours",
    )
    parser.add_argument(
        "--explain-seconds", type=float, default=30.0, help="explain part: seconds per round"
    )
    parser.add_argument(
        "--baseline-explain-ids",
        type=int,
        default=1000,
        help="explain part: ids per explain request sent to the baseline (the issue's 1,000)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--gc-probe",
        choices=("off", "freeze"),
        help="instead: /score's work in-process, GC passes timed (off: as before the fix; "
        "freeze: as the service starts now); --gc-customers/--gc-requests",
    )
    parser.add_argument("--gc-customers", type=int, default=100)
    parser.add_argument("--gc-requests", type=int, default=600)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if args.gc_probe:
        probe = gc_probe(
            args.home,
            customers=args.gc_customers,
            requests=args.gc_requests,
            freeze=args.gc_probe == "freeze",
        )
        print(json.dumps(probe))
        if args.out:
            args.out.write_text(json.dumps(probe, indent=1))
        return

    import httpx

    from features.store import feature_names
    from tests.fixtures.service import clone_workspace, free_port, service_config, start_service
    from tests.serving.registry_tools import champion, copy_version, set_champion

    parts = {"http", "score", "batch", "swap", "explain"}
    skip = set(filter(None, args.skip.split(",")))
    if args.only:
        skip = parts - set(args.only.split(","))
    source = Settings.load(home=args.home, env={})
    results: dict[str, Any] = {"rounds": args.rounds, "requests_per_client": args.requests}
    with tempfile.TemporaryDirectory(prefix="clm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        settings = clone_workspace(source, tmp / "workspace")
        config = service_config(tmp, poll_seconds=1.0)
        if "explain" not in skip:
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            snapshot = pq.read_table(
                settings.feature_dir / "customer_features.parquet",
                columns=["customer_id", "event_timestamp"],
            )
            latest_ids = snapshot.filter(
                pc.equal(snapshot["event_timestamp"], pc.max(snapshot["event_timestamp"]))
            )["customer_id"].to_pylist()
            print("explain starvation ...", flush=True)
            results["explain"] = bench_explain(
                settings,
                tmp,
                baseline_src=args.baseline_src,
                rounds=args.rounds,
                seconds=args.explain_seconds,
                customers=sorted(str(c) for c in latest_ids),
                baseline_ids=args.baseline_explain_ids,
            )
            print(json.dumps(results["explain"], indent=1), flush=True)
            if skip >= {"http", "score", "batch", "swap"}:
                print(json.dumps(results, indent=1))
                if args.out:
                    args.out.write_text(json.dumps(results, indent=1))
                return
        if "batch" not in skip:
            print("batch scoring ...", flush=True)
            results["batch"] = bench_batch(settings, args.batch_rows, max(3, args.rounds // 2))
            print(json.dumps(results["batch"], indent=1), flush=True)
        if {"http", "score", "swap"} <= skip:  # nothing needs the service
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
            return
        with start_service(settings, config, tmp) as service:
            url, headers = service.url, service.headers()
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            from features.online import OnlineFeatureReader

            table = pq.read_table(
                settings.feature_dir / "customer_features.parquet",
                columns=["customer_id", "event_timestamp"],
            )
            latest = pc.max(table["event_timestamp"])
            customers = sorted(
                str(c)
                for c in table.filter(pc.equal(table["event_timestamp"], latest))[
                    "customer_id"
                ].to_pylist()
            )
            reader = OnlineFeatureReader(settings)
            features: dict[str, float | None] = {}
            for family in ("churn", "propensity", "stage"):
                frame, _ = reader.lookup(
                    customers[:1], settings.models.family(family).feature_service
                )
                features.update(
                    {k: None if np.isnan(v) else float(v) for k, v in frame.iloc[0].items()}
                )
            churn_features = feature_names(settings, settings.models.churn.feature_service)
            ours_body = {"rows": [{"customer_id": customers[0], "features": features}]}
            mlflow_body = {
                "dataframe_split": {
                    "columns": churn_features,
                    "data": [
                        [np.nan if features[f] is None else features[f] for f in churn_features]
                    ],
                }
            }
            mlflow_body_json = json.loads(json.dumps(mlflow_body).replace("NaN", "null"))

            if "http" not in skip:
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
                env.update(
                    MLFLOW_TRACKING_URI=settings.tracking_uri,
                    MLFLOW_REGISTRY_URI=settings.registry_uri,
                )
                # mlflow runs `uvicorn` through bash: the venv's bin must be on PATH.
                env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
                command = [
                    str(Path(sys.executable).with_name("mlflow")), "models", "serve",
                    "-m", f"models:/{settings.models.churn.registered_name}@{settings.aliases.champion}",
                    "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1",
                ]  # fmt: skip
                with process(command, env, tmp / "mlflow-serve.log"):
                    wait_http(f"http://127.0.0.1:{port}/ping")
                    mlflow_url = f"http://127.0.0.1:{port}/invocations"
                    load(mlflow_url, mlflow_body_json, {}, clients=1, requests=50)  # warm up
                    load(f"{url}/score_features", ours_body, headers, clients=1, requests=50)
                    for clients in (1, 8):
                        per_client = max(20, args.requests // clients)
                        ours_rounds, theirs_rounds = [], []
                        for _ in range(args.rounds):  # interleaved, so drift hits both alike
                            ours_rounds.append(
                                load(
                                    f"{url}/score_features",
                                    ours_body,
                                    headers,
                                    clients=clients,
                                    requests=per_client,
                                )
                            )
                            theirs_rounds.append(
                                load(
                                    mlflow_url,
                                    mlflow_body_json,
                                    {},
                                    clients=clients,
                                    requests=per_client,
                                )
                            )
                        ours, theirs = median_of(ours_rounds), median_of(theirs_rounds)
                        results[f"score_features_c{clients}"] = {
                            "ours_all_three": ours,
                            "mlflow_serve_churn_only": theirs,
                            "throughput_ratio": ours["rps"] / theirs["rps"],
                            "p99_ratio": ours["p99_ms"] / theirs["p99_ms"],
                        }
                        print(
                            clients,
                            json.dumps(results[f"score_features_c{clients}"], indent=1),
                            flush=True,
                        )

            if "score" not in skip:
                for n in (1, 100):
                    body = {"customer_ids": customers[:n]}
                    load(f"{url}/score", body, headers, clients=1, requests=20)
                    rounds = [
                        load(
                            f"{url}/score",
                            body,
                            headers,
                            clients=1,
                            requests=max(50, args.requests // 2),
                        )
                        for _ in range(args.rounds)
                    ]
                    results[f"score_lookup_{n}"] = median_of(rounds)
                    print(n, json.dumps(results[f"score_lookup_{n}"]), flush=True)

            if "swap" not in skip:
                original = champion(service.settings, "churn")
                other = copy_version(service.settings, "churn", original, tmp / "copies")
                steady, swapping = [], []
                seen: list[str] = []
                for _ in range(args.rounds):
                    steady.append(
                        load(
                            f"{url}/score_features",
                            ours_body,
                            headers,
                            clients=2,
                            requests=args.requests,
                            versions=[],
                        )
                    )
                    stop = threading.Event()

                    def flipper(stop: threading.Event = stop) -> None:
                        versions = [other, original]
                        i = 0
                        while not stop.wait(0.5):
                            set_champion(service.settings, "churn", versions[i % 2])
                            i += 1

                    thread = threading.Thread(target=flipper)
                    thread.start()
                    swapping.append(
                        load(
                            f"{url}/score_features",
                            ours_body,
                            headers,
                            clients=2,
                            requests=args.requests,
                            versions=seen,
                        )
                    )
                    stop.set()
                    thread.join()
                    set_champion(service.settings, "churn", original)
                status = httpx.get(f"{url}/models", headers=headers).json()
                results["swap_under_load"] = {
                    "steady": median_of(steady),
                    "during_swaps": median_of(swapping),
                    "p99_ratio": median_of(swapping)["p99_ms"] / median_of(steady)["p99_ms"],
                    "final_churn_version": status["models"]["churn"]["version"],
                }
                print(json.dumps(results["swap_under_load"], indent=1), flush=True)
                results["swap_under_load"]["churn_versions_seen"] = sorted(set(seen))
                results["swap_under_load"]["version_changes_seen"] = sum(
                    a != b for a, b in zip(seen, seen[1:], strict=False)
                )
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
