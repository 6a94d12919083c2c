"""Data quality beside drift: missing values, values outside the reference range,
and customers the service could not score.

All shares are fractions of rows (0..1). A missing rate is judged by how much it
rose over the reference (a feature that was always 30 % missing is not news);
out-of-range is the share of current non-missing values below the reference
minimum or above its maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from clm.settings import MonitoringSettings
from monitoring.psi import band


def missing_rates(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    if len(frame) == 0:
        return pd.Series(np.nan, index=list(columns), dtype=float)
    # Column by column: selecting all columns at once would copy the whole frame.
    return pd.Series({c: float(frame[c].isna().to_numpy().mean()) for c in columns}, dtype=float)


def out_of_range_shares(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]
) -> pd.Series:
    shares = {}
    for column in columns:
        ref = reference[column].to_numpy(dtype=float, na_value=np.nan)
        cur = current[column].to_numpy(dtype=float, na_value=np.nan)
        cur = cur[~np.isnan(cur)]
        if cur.size == 0 or np.isnan(ref).all():
            shares[column] = np.nan
            continue
        low, high = np.nanmin(ref), np.nanmax(ref)
        shares[column] = float(np.mean((cur < low) | (cur > high)))
    return pd.Series(shares, dtype=float)


def quality_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    thresholds: MonitoringSettings,
) -> pd.DataFrame:
    """One row per column: reference and current missing rate, its rise, out-of-range share, band."""
    table = pd.DataFrame(
        {
            "missing_reference": missing_rates(reference, columns),
            "missing_current": missing_rates(current, columns),
        }
    )
    table["missing_increase"] = (table["missing_current"] - table["missing_reference"]).clip(
        lower=0
    )
    table["out_of_range"] = out_of_range_shares(reference, current, columns)
    missing_band = [
        band(v, thresholds.missing_increase_amber, thresholds.missing_increase_red)
        for v in table["missing_increase"]
    ]
    range_band = [
        band(v, thresholds.out_of_range_amber, thresholds.out_of_range_red)
        for v in table["out_of_range"]
    ]
    table["band"] = [worst([a, b]) for a, b in zip(missing_band, range_band, strict=True)]
    table.index.name = "column"
    return table


def unknown_customer_share(requested: int, unknown: int) -> float:
    """Share of requested customers the service answered with UNKNOWN_CUSTOMER."""
    return unknown / requested if requested else float("nan")


_ORDER = {"grey": 0, "green": 1, "amber": 2, "red": 3}


def worst(bands: Sequence[str]) -> str:
    """The most severe band (grey when nothing could be judged)."""
    return max(bands, key=lambda b: _ORDER[b], default="grey")
