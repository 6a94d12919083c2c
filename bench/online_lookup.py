"""Online lookup latency for 1, 10 and 100 customers, side by side in one run:

- ours: features.online.OnlineFeatureReader.lookup (batched read + bulk decoding),
- raw: the same keys read from the same store with no decoding at all (SQLite: one
  SELECT of Feast's rows; Redis: one pipelined HMGET), the floor any path pays,
- feast: FeatureStore.get_online_features for the same feature service.

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.online_lookup --home /tmp/clm-bench-online \\
        --customers 20000 --store sqlite --store redis

Builds a small simulated bank in --home the first time (simulate, build, apply, materialize).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def _time(fn: Callable[[list[str]], Any], batches: list[list[str]]) -> list[float]:
    """Seconds per call, each call on the next batch (so no path re-reads one cached batch)."""
    fn(batches[0])  # warm
    out = []
    for ids in batches:
        t = time.perf_counter()
        fn(ids)
        out.append(time.perf_counter() - t)
    return out


# A fresh Feast project per invocation: Feast's SQL registry keeps a deleted project's
# feature_view_version_history rows, so re-applying the same name after teardown fails.
BENCH_PROJECT = f"clm_bench_{os.getpid()}"


def _settings(home: Path, store: str):  # type: ignore[no-untyped-def]
    from clm.settings import Settings

    s = Settings.load(home=home, env={})
    if store == "redis":
        s = s.model_copy(
            update={
                "features": s.features.model_copy(
                    update={"profile": "production", "project": "clm_bench"}
                )
            }
        )
    return s


def prepare(home: Path, customers: int, store: str) -> list[str]:
    from features.catalog import FEATURE_FILE
    from features.pipeline import run_build
    from features.store import run_apply, run_materialize

    base = _settings(home, "sqlite")
    if not (base.feature_dir / FEATURE_FILE).is_file():
        from features.simulator import run_simulation

        run_simulation(base, customers=customers, months=12, seed=5, progress=False)
        run_build(base, progress=False)
    settings = _settings(home, store)
    marker = home / f".materialized-{store}"
    if store == "redis" or not marker.is_file():  # redis: a fresh project every invocation
        run_apply(settings)
        run_materialize(settings)
        marker.write_text("ok")
    table = pd.read_parquet(base.feature_dir / FEATURE_FILE, columns=["customer_id"])
    return list(table["customer_id"].drop_duplicates())


def _raw_reader(settings: Any, reader: Any, service: str) -> Callable[[list[str]], Any]:
    spec = reader._service(service)
    if reader.backend == "sqlite":
        conn = reader._sqlite_conn()

        def raw(ids: list[str]) -> Any:
            keys = reader._entity_keys(ids)
            sql = (
                f"WITH k(ek, i) AS (VALUES {', '.join(['(?, ?)'] * len(ids))}) {spec['sql_union']}"
            )
            params: list[Any] = []
            for i, key in enumerate(keys):
                params.extend((key, i))
            return conn.execute(sql, params).fetchall()

        return raw
    reader._read_redis(["warm"], spec)
    client = reader._redis
    project = settings.features.project.encode()
    fields = spec["redis_fields"]

    def raw_redis(ids: list[str]) -> Any:
        with client.pipeline(transaction=False) as pipe:
            for key in reader._entity_keys(ids):
                pipe.hmget(key + project, fields)
            return pipe.execute()

    return raw_redis


def bench_store(
    home: Path, store: str, ids_all: list[str], service: str, repeats: int
) -> list[dict]:
    from features.online import OnlineFeatureReader
    from features.store import feature_store

    settings = _settings(home, store)
    reader = OnlineFeatureReader(settings)
    fs = feature_store(settings)
    service_obj = fs.get_feature_service(service)
    raw = _raw_reader(settings, reader, service)
    rng = np.random.default_rng(0)
    rows = []
    for n in (1, 10, 100):
        batches = [list(rng.choice(ids_all, n, replace=False)) for _ in range(repeats)]

        # Same-values check before timing: ours == Feast's.
        ours, _ = reader.lookup(batches[0], service)
        ref = fs.get_online_features(
            features=service_obj, entity_rows=[{"customer_id": c} for c in batches[0]]
        ).to_df()
        ref = ref.set_index("customer_id")[ours.columns].astype("float64")
        np.testing.assert_array_equal(ours.to_numpy(), ref.to_numpy())
        # Warm the store's pages for every batch first, so no path pays cold reads for another.
        for ids in batches:
            raw(ids)
        t_ours = _time(lambda ids: reader.lookup(ids, service), batches)
        t_raw = _time(raw, batches)
        t_feast = _time(
            lambda ids: fs.get_online_features(
                features=service_obj, entity_rows=[{"customer_id": c} for c in ids]
            ).to_dict(),
            batches[: max(20, repeats // 5)],
        )
        rows.append(
            {
                "store": store,
                "customers": n,
                "ours_p50": _pct(t_ours, 50),
                "ours_p99": _pct(t_ours, 99),
                "raw_p50": _pct(t_raw, 50),
                "raw_p99": _pct(t_raw, 99),
                "feast_p50": _pct(t_feast, 50),
                "feast_p99": _pct(t_feast, 99),
            }
        )
        print(
            f"{store} n={n}: ours p50 {rows[-1]['ours_p50']:.3f} ms, raw {rows[-1]['raw_p50']:.3f} ms, "
            f"feast {rows[-1]['feast_p50']:.3f} ms",
            flush=True,
        )
    return rows


def _delete_version_history(url: str, project: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM feature_view_version_history WHERE project_id = :p"),
            {"p": project},
        )
    engine.dispose()


def _teardown_redis(home: Path) -> None:
    """Leave the machine's Redis and registry as found (the bench's own project only)."""
    from feast.errors import ProjectObjectNotFoundException

    from features.store import feature_store

    settings = _settings(home, "redis")
    store = feature_store(settings)
    store.teardown()
    try:
        store.registry.delete_project(settings.features.project, commit=True)
    except ProjectObjectNotFoundException:
        pass
    _delete_version_history(settings.features.registry_postgres, settings.features.project)
    (home / ".materialized-redis").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--home", type=Path, default=Path("/tmp/clm-bench-online"))
    p.add_argument("--customers", type=int, default=20000)
    p.add_argument(
        "--store", action="append", choices=["sqlite", "redis"], help="repeatable; default sqlite"
    )
    p.add_argument("--service", default="churn_v1")
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument(
        "--runs", type=int, default=3, help="whole runs; the table reports medians over runs"
    )
    args = p.parse_args(argv)
    stores = args.store or ["sqlite"]
    home = args.home.resolve()
    all_rows: list[dict] = []
    for store in stores:
        ids = prepare(home, args.customers, store)
        try:
            for _ in range(args.runs):
                all_rows.extend(bench_store(home, store, ids, args.service, args.repeats))
        finally:
            if store == "redis":
                _teardown_redis(home)
    df = pd.DataFrame(all_rows).groupby(["store", "customers"]).median().reset_index()
    print(
        f"\nonline lookup, service {args.service}, ms, medians of {args.runs} runs x {args.repeats} lookups"
    )
    print(
        "| store | customers | ours p50 | ours p99 | raw p50 | raw p99 | Feast p50 | Feast p99 | ours/raw p50 | Feast/ours p50 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in df.itertuples():
        print(
            f"| {r.store} | {r.customers} | {r.ours_p50:.3f} | {r.ours_p99:.3f} | {r.raw_p50:.3f} | {r.raw_p99:.3f} | "
            f"{r.feast_p50:.2f} | {r.feast_p99:.2f} | {r.ours_p50 / r.raw_p50:.2f}x | {r.feast_p50 / r.ours_p50:.1f}x |"
        )


if __name__ == "__main__":
    main()
