"""Small synthetic labels + feature rows with a known signal, for fast training tests.

Not a stand-in for the feature store (integration tests use `feature_settings`):
it lets splitting, tuning, logging and the registry run in seconds on frames
whose answer we know.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from training.data import TrainingSet, assemble, labelled_rows, out_of_time_split

FEATURES = [
    "engagement",
    "balance_trend",
    "tenure_months",
    "noise",
    "value_tier_code",
    "stage_code",
]


def frames(
    customers: int = 400, months: int = 10, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labels, feature_rows) for `customers` x `months` snapshots."""
    rng = np.random.default_rng(seed)
    snapshots = pd.date_range("2024-02-01", periods=months, freq="MS", tz="UTC")
    ids = [f"C{i:07d}" for i in range(customers)]
    n = customers * months
    cust = np.repeat(ids, months)
    snap = np.tile(snapshots, customers)
    engagement = rng.normal(size=n)
    trend = rng.normal(size=n)
    stage = rng.integers(0, len(STAGES) - 1, size=n)
    feats = pd.DataFrame(
        {
            "customer_id": cust,
            "event_timestamp": snap,
            "engagement": engagement,
            "balance_trend": trend,
            "tenure_months": rng.integers(1, 120, size=n).astype(float),
            "noise": rng.normal(size=n),
            "value_tier_code": rng.choice([0, 0, 0, 1, 2], size=n).astype(float),
            "stage_code": stage.astype(float),
        }
    )
    churn_p = 1 / (1 + np.exp(-(-2.0 - 1.5 * engagement - 0.8 * trend)))
    labels = pd.DataFrame({"customer_id": cust, "snapshot_ts": snap})
    labels["churn_90d"] = (rng.random(n) < churn_p).astype(float)
    for j, product in enumerate(PROPENSITY_PRODUCTS):
        p = 1 / (1 + np.exp(-(-2.0 + (0.5 + 0.1 * j) * trend)))
        held = rng.random(n) < 0.3
        labels[f"adopt_{product}_90d"] = np.where(held, np.nan, (rng.random(n) < p).astype(float))
    moves = rng.random(n) < 1 / (1 + np.exp(-engagement))
    labels["stage"] = [STAGES[s] for s in stage]
    labels["stage_next"] = [
        STAGES[min(s + 1, len(STAGES) - 1)] if m else STAGES[s]
        for s, m in zip(stage, moves, strict=True)
    ]
    # The last two snapshots' horizon runs past the data: unlabelled.
    late = labels["snapshot_ts"] >= snapshots[-2]
    label_cols = [c for c in labels.columns if c not in ("customer_id", "snapshot_ts")]
    labels.loc[late, label_cols] = None
    return labels, feats


def training_set(family: str, customers: int = 400, months: int = 10, seed: int = 0) -> TrainingSet:
    labels, feats = frames(customers, months, seed)
    rows = labelled_rows(labels, family)
    split = out_of_time_split(
        list(rows["snapshot_ts"].unique()), validation_months=2, test_months=1
    )
    service = {"churn": "churn_v1", "propensity": "propensity_v1", "stage": "stage_v1"}[family]
    return assemble(family, service, FEATURES, rows, feats, split)
