"""The raw tables of docs/contracts.md, built from the simulation's arrays.

Strings are taken from small vocabularies with pyarrow `take` (fast for hundreds
of millions of rows); timestamps are microseconds in UTC, dates are date32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clm.domain import (
    ACQUISITION_CHANNELS,
    PRODUCTS,
    PROPENSITY_PRODUCTS,
    REGIONS,
    SEGMENTS,
    STAGES,
    TXN_CATEGORIES,
    TXN_CHANNELS,
    VALUE_TIERS,
)

TS = pa.timestamp("us", tz="UTC")
CAMPAIGN_CHANNELS: tuple[str, ...] = ("branch", "call", "app_push", "sms")
GROUPS: tuple[str, ...] = ("control", "treatment")

SCHEMAS: dict[str, pa.Schema] = {
    "customers": pa.schema(
        [
            ("customer_id", pa.string()),
            ("signup_date", pa.date32()),
            ("birth_year", pa.int64()),
            ("region", pa.string()),
            ("value_tier", pa.string()),
            ("segment", pa.string()),
            ("acquisition_channel", pa.string()),
            ("is_payroll", pa.bool_()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("customer_id", pa.string()),
            ("timestamp", TS),
            ("amount", pa.float64()),
            ("direction", pa.string()),
            ("channel", pa.string()),
            ("category", pa.string()),
            ("product", pa.string()),
        ]
    ),
    "holdings": pa.schema(
        [
            ("customer_id", pa.string()),
            ("product", pa.string()),
            ("opened_date", pa.date32()),
            ("closed_date", pa.date32()),
        ]
    ),
    "balances": pa.schema(
        [
            ("customer_id", pa.string()),
            ("month_end", pa.date32()),
            ("product", pa.string()),
            ("balance", pa.float64()),
        ]
    ),
    "app_sessions": pa.schema(
        [("customer_id", pa.string()), ("timestamp", TS), ("duration_s", pa.float64())]
    ),
    "campaigns": pa.schema(
        [
            ("customer_id", pa.string()),
            ("contact_date", pa.date32()),
            ("campaign", pa.string()),
            ("group", pa.string()),
            ("product", pa.string()),
            ("channel", pa.string()),
            ("responded", pa.bool_()),
            ("response_date", pa.date32()),
        ]
    ),
    "truth": pa.schema(
        [
            ("customer_id", pa.string()),
            ("month_end", pa.date32()),
            ("latent_stage", pa.string()),
            ("engagement", pa.float64()),
            ("churn_hazard_90d", pa.float64()),
        ]
        + [(f"p_adopt_{p}_90d", pa.float64()) for p in PROPENSITY_PRODUCTS]
    ),
}
PARTITIONED = ("transactions", "balances", "app_sessions", "truth")


def customer_ids(number: np.ndarray) -> pa.Array:
    return pa.array([f"C{int(k):07d}" for k in number], pa.string())


def _words(vocabulary: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Codes (-1 = null) to strings."""
    codes = np.asarray(codes)
    mask = codes < 0
    words = pa.array(vocabulary, pa.string()).take(
        pa.array(np.where(mask, 0, codes).astype(np.int32))
    )
    if mask.any():
        words = pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), words)
    return words


def _dates(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(days, np.int32), pa.date32(), mask=null)


def _timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(micros, np.int64), pa.int64()).cast(TS)


def transactions(
    ids: pa.Array, first_day: int, idx, day, amount, category, channel, product
) -> pa.Table:  # type: ignore[no-untyped-def]
    """One month's transactions, sorted by customer and time."""
    micros = ((first_day + day) * 86_400 * 1_000_000).astype(np.int64)
    order = np.lexsort((micros, idx))
    idx, micros, amount = idx[order], micros[order], amount[order]
    return pa.Table.from_arrays(
        [
            ids.take(pa.array(idx)),
            _timestamps(micros),
            pa.array(amount, pa.float64()),
            _words(("debit", "credit"), (amount > 0).astype(np.int8)),
            _words(TXN_CHANNELS, channel[order]),
            _words(TXN_CATEGORIES, category[order]),
            _words(PRODUCTS, product[order]),
        ],
        schema=SCHEMAS["transactions"],
    )


def sessions(
    ids: pa.Array, first_day: int, idx: np.ndarray, day: np.ndarray, duration: np.ndarray
) -> pa.Table:
    micros = ((first_day + day) * 86_400 * 1_000_000).astype(np.int64)
    order = np.lexsort((micros, idx))
    return pa.Table.from_arrays(
        [
            ids.take(pa.array(idx[order])),
            _timestamps(micros[order]),
            pa.array(duration[order], pa.float64()),
        ],
        schema=SCHEMAS["app_sessions"],
    )


def balances(
    ids: pa.Array, month_end: int, idx: np.ndarray, product: np.ndarray, balance: np.ndarray
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            ids.take(pa.array(idx)),
            _dates(np.full(len(idx), month_end)),
            _words(PRODUCTS, product),
            pa.array(balance, pa.float64()),
        ],
        schema=SCHEMAS["balances"],
    )


def truth(ids: pa.Array, month_end: int, idx, stage, engagement, churn, adopt) -> pa.Table:  # type: ignore[no-untyped-def]
    columns = [
        ids.take(pa.array(idx)),
        _dates(np.full(len(idx), month_end)),
        _words(STAGES, stage),
        pa.array(np.round(engagement, 4), pa.float64()),
        pa.array(churn, pa.float64()),
    ] + [
        pa.array(adopt[:, j], pa.float64(), from_pandas=True)
        for j in range(len(PROPENSITY_PRODUCTS))
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMAS["truth"])


def customers(ids: pa.Array, pop, signup_days: np.ndarray) -> pa.Table:  # type: ignore[no-untyped-def]
    return pa.Table.from_arrays(
        [
            ids,
            _dates(signup_days),
            pa.array(pop.birth_year, pa.int64()),
            _words(REGIONS, pop.region),
            _words(VALUE_TIERS, pop.tier),
            _words(SEGMENTS, pop.segment),
            _words(ACQUISITION_CHANNELS, pop.channel),
            pa.array(pop.is_payroll, pa.bool_()),
        ],
        schema=SCHEMAS["customers"],
    )


def holdings(ids: pa.Array, idx, product, opened, closed, is_open) -> pa.Table:  # type: ignore[no-untyped-def]
    order = np.lexsort((opened, product, idx))
    return pa.Table.from_arrays(
        [
            ids.take(pa.array(idx[order])),
            _words(PRODUCTS, product[order]),
            _dates(opened[order]),
            _dates(closed[order], null=is_open[order]),
        ],
        schema=SCHEMAS["holdings"],
    )


def campaigns(
    ids: pa.Array, idx, contact, name, group, product, channel, responded, response
) -> pa.Table:  # type: ignore[no-untyped-def]
    return pa.Table.from_arrays(
        [
            ids.take(pa.array(idx)),
            _dates(contact),
            pa.array(name, pa.string()),
            _words(GROUPS, group),
            _words(PRODUCTS, product),
            _words(CAMPAIGN_CHANNELS, channel),
            pa.array(responded, pa.bool_(), mask=product < 0),
            _dates(response, null=response < 0),
        ],
        schema=SCHEMAS["campaigns"],
    )


def write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", compression_level=1, row_group_size=1 << 20)


def write_part(table: pa.Table, root: Path, name: str, month: str, part: int) -> None:
    """A hive-partitioned part file: root/name/month=YYYY-MM/part-00000.parquet."""
    write(table, root / name / f"month={month}" / f"part-{part:05d}.parquet")
