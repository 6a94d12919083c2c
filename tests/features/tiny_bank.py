"""Tiny hand-made raw tables (a few dozen customers) for pipeline edge cases.

The shared simulated bank is the main test data; these tables exist to exercise
what the simulator never produces: only the mandatory columns, absent tables,
hand-checkable values.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clm.domain import ACQUISITION_CHANNELS, PRODUCTS, SEGMENTS, TXN_CHANNELS, VALUE_TIERS

START = date(2024, 1, 1)
MONTHS = 8


def _ts(values: list[datetime]) -> pa.Array:
    return pa.array(values, type=pa.timestamp("us", tz="UTC"))


def _write_partitioned(
    df: pd.DataFrame, root: Path, month_col: pd.Series, schema: pa.Schema
) -> None:
    for month, part in df.groupby(month_col):
        d = root / f"month={month}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(part.reset_index(drop=True), schema=schema, preserve_index=False),
            d / "part-0.parquet",
        )


def write_tiny_bank(
    raw: Path, customers: int = 40, seed: int = 1, mandatory_only: bool = False
) -> None:
    """Random but small raw tables in the contract's layout under `raw`."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    ids = [f"C{i:07d}" for i in range(customers)]
    end = date(2024, 1 + MONTHS - 1, 28)
    signup = [START + timedelta(days=int(rng.integers(-200, 150))) for _ in ids]
    cust = pd.DataFrame({"customer_id": ids})
    if not mandatory_only:
        cust["signup_date"] = signup
        cust["birth_year"] = rng.integers(1950, 2002, customers)
        cust["region"] = "north"
        cust["value_tier"] = [VALUE_TIERS[i % 3] for i in range(customers)]
        cust["segment"] = [SEGMENTS[i % 5] for i in range(customers)]
        cust["acquisition_channel"] = [ACQUISITION_CHANNELS[i % 5] for i in range(customers)]
        cust["is_payroll"] = [i % 3 == 0 for i in range(customers)]
    pq.write_table(pa.Table.from_pandas(cust, preserve_index=False), raw / "customers.parquet")

    # Holdings: everyone has a current account; some close everything (churn).
    hold_rows = []
    for i, cid in enumerate(ids):
        churn_day = START + timedelta(days=int(rng.integers(60, 230))) if i % 7 == 0 else None
        hold_rows.append((cid, "current_account", signup[i], churn_day))
        for p in PRODUCTS[1:]:
            if rng.random() < 0.25:
                opened = signup[i] + timedelta(days=int(rng.integers(0, 300)))
                closed = churn_day if churn_day and churn_day > opened else None
                hold_rows.append((cid, p, opened, closed))
    hold = pd.DataFrame(hold_rows, columns=["customer_id", "product", "opened_date", "closed_date"])
    hold = hold[hold.closed_date.isna() | (hold.closed_date > hold.opened_date)]
    if not mandatory_only:
        pq.write_table(pa.Table.from_pandas(hold, preserve_index=False), raw / "holdings.parquet")

    # Transactions: salary monthly for payroll customers, random spending otherwise.
    txn = []
    day = datetime(2024, 1, 1, tzinfo=UTC)
    while day.date() <= end:
        for i, cid in enumerate(ids):
            if day.date() < signup[i]:
                continue
            if i % 3 == 0 and day.day == 25 and not (i == 3 and day.month >= 6):
                txn.append((cid, day + timedelta(hours=9), 3000.0 + i, "transfer", "salary"))
            if rng.random() < 0.15:
                amt = (
                    -float(rng.gamma(2.0, 80.0))
                    if rng.random() < 0.7
                    else float(rng.gamma(2.0, 200.0))
                )
                ch = TXN_CHANNELS[int(rng.integers(0, len(TXN_CHANNELS)))]
                cat = "card_spend" if amt < 0 else "transfer_in"
                txn.append(
                    (cid, day + timedelta(seconds=int(rng.integers(0, 86400))), amt, ch, cat)
                )
        day += timedelta(days=1)
    tdf = pd.DataFrame(txn, columns=["customer_id", "timestamp", "amount", "channel", "category"])
    cols = ["customer_id", "timestamp", "amount"] + (
        [] if mandatory_only else ["channel", "category"]
    )
    tdf = tdf[cols]
    fields = [
        pa.field("customer_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("amount", pa.float64()),
    ]
    if not mandatory_only:
        fields += [pa.field("channel", pa.string()), pa.field("category", pa.string())]
    _write_partitioned(
        tdf, raw / "transactions", tdf.timestamp.dt.strftime("%Y-%m"), pa.schema(fields)
    )
    if mandatory_only:
        return

    # Month-end balances per open product.
    bal = []
    for m in range(MONTHS):
        me = (pd.Timestamp(START) + pd.offsets.MonthEnd(m + 1)).date()
        for r in hold.itertuples():
            if r.opened_date <= me and (
                r.closed_date is None or pd.isna(r.closed_date) or r.closed_date > me
            ):
                bal.append((r.customer_id, me, r.product, float(rng.gamma(2.0, 5000.0))))
    bdf = pd.DataFrame(bal, columns=["customer_id", "month_end", "product", "balance"])
    bschema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("month_end", pa.date32()),
            ("product", pa.string()),
            ("balance", pa.float64()),
        ]
    )
    _write_partitioned(
        bdf, raw / "balances", pd.to_datetime(bdf.month_end).dt.strftime("%Y-%m"), bschema
    )

    sess = []
    for cid in ids:
        for _ in range(int(rng.integers(0, 30))):
            d = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
                seconds=int(rng.integers(0, 86400 * 240))
            )
            sess.append((cid, d, float(rng.gamma(2, 60))))
    sdf = pd.DataFrame(sess, columns=["customer_id", "timestamp", "duration_s"])
    sschema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("duration_s", pa.float64()),
        ]
    )
    _write_partitioned(sdf, raw / "app_sessions", sdf.timestamp.dt.strftime("%Y-%m"), sschema)
    meta = {
        "source": "simulator",
        "seed": seed,
        "customers": customers,
        "months": MONTHS,
        "start_month": "2024-01",
        "end_month": f"2024-{MONTHS:02d}",
        "scenario": "baseline",
    }
    (raw / "meta.json").write_text(json.dumps(meta))
