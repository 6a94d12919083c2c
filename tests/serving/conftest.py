"""Helpers shared by the serving tests (the service itself: tests/fixtures/service.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from clm.settings import Settings


@pytest.fixture(scope="session")
def known_customers(trained_settings: Settings) -> list[str]:
    """A few customers present at the latest snapshot (so in the online store)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(
        trained_settings.feature_dir / "customer_features.parquet",
        columns=["customer_id", "event_timestamp"],
    )
    latest = pc.max(table["event_timestamp"])
    ids = table.filter(pc.equal(table["event_timestamp"], latest))["customer_id"].to_pylist()
    return sorted(str(c) for c in ids)[:5]


@pytest.fixture(scope="session")
def online_rows(
    trained_settings: Settings, known_customers: list[str]
) -> dict[str, dict[str, Any]]:
    """Online features of the known customers per feature service: {service: {id: {name: value}}}."""
    from features.online import OnlineFeatureReader

    reader = OnlineFeatureReader(trained_settings)
    out: dict[str, dict[str, Any]] = {}
    for family in ("churn", "propensity", "stage"):
        service = trained_settings.models.family(family).feature_service
        frame, unknown = reader.lookup(known_customers, service)
        assert unknown == []
        out[service] = {
            cid: {k: (None if np.isnan(v) else float(v)) for k, v in row.items()}
            for cid, row in frame.iterrows()
        }
    reader.close()
    return out


def inline_row(
    trained_settings: Settings, online_rows: dict[str, dict[str, Any]], cid: str
) -> dict[str, Any]:
    """One customer's features for /score_features: the union of the three services."""
    features: dict[str, Any] = {}
    for family in ("churn", "propensity", "stage"):
        features.update(online_rows[trained_settings.models.family(family).feature_service][cid])
    return {"customer_id": cid, "features": features}
