"""PSI/CSI and KS against independent plain-Python / scipy computations."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring.psi import (
    EPSILON,
    BinnedColumns,
    band,
    ks_statistic,
    psi,
    psi_table,
    reference_bins,
)


def plain_psi(reference: list[float], current: list[float], bins: int = 10) -> float:
    """The documented formula written out with lists, bisect and math only."""
    ref = sorted(v for v in reference if not math.isnan(v))
    distinct = sorted(set(ref))
    if len(distinct) <= bins:
        edges = distinct[:-1]
    else:
        # Linear-interpolated quantiles (numpy's default), written by hand.
        qs = []
        for k in range(1, bins):
            pos = (len(ref) - 1) * k / bins
            lo = math.floor(pos)
            hi = min(lo + 1, len(ref) - 1)
            qs.append(ref[lo] + (ref[hi] - ref[lo]) * (pos - lo))
        edges = sorted({q for q in qs if q < distinct[-1]})

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(edges) + 2)
        for v in values:
            counts[len(edges) + 1 if math.isnan(v) else bisect.bisect_left(edges, v)] += 1
        return [c / len(values) for c in counts]

    total = 0.0
    for r, c in zip(shares(reference), shares(current), strict=True):
        r, c = max(r, EPSILON), max(c, EPSILON)
        total += (c - r) * math.log(c / r)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_plain_python_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.lognormal(3, 1, 3000)
    current = rng.lognormal(3 + 0.3 * seed, 1.2, 2000)
    # Ties at zero (dormant balances) and missing values in both.
    reference[rng.random(3000) < 0.3] = 0.0
    current[rng.random(2000) < 0.1] = 0.0
    reference[rng.random(3000) < 0.05] = np.nan
    current[rng.random(2000) < 0.15] = np.nan
    expected = plain_psi(reference.tolist(), current.tolist())
    assert psi(reference, current) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_of_codes_matches_plain_python() -> None:
    rng = np.random.default_rng(11)
    reference = rng.integers(0, 6, 5000).astype(float)
    current = rng.choice(6, 4000, p=[0.4, 0.1, 0.1, 0.1, 0.1, 0.2]).astype(float)
    current[:10] = 9.0  # a code the reference never had
    assert psi(reference, current) == pytest.approx(
        plain_psi(reference.tolist(), current.tolist()), rel=1e-9
    )
    assert len(reference_bins(reference).edges) == 5


def test_psi_is_near_zero_on_the_same_population_and_large_on_a_shift() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, 50_000)
    assert psi(reference, rng.normal(0, 1, 50_000)) < 0.01
    assert psi(reference, rng.normal(1, 1, 50_000)) > 0.25


def test_missing_data_is_drift() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, 10_000)
    current = rng.normal(0, 1, 10_000)
    current[:4000] = np.nan
    assert psi(reference, current) > 0.25


def test_psi_table_is_vectorised_psi_and_segments_use_the_same_bins() -> None:
    rng = np.random.default_rng(5)
    reference = pd.DataFrame(
        {"a": rng.normal(0, 1, 4000), "b": rng.integers(0, 3, 4000).astype(float)}
    )
    current = pd.DataFrame(
        {"a": rng.normal(0.5, 1, 3000), "b": rng.integers(0, 4, 3000).astype(float)}
    )
    table = psi_table(reference, current, ["a", "b"])
    for column in ("a", "b"):
        assert table[column] == pytest.approx(
            psi(reference[column].to_numpy(), current[column].to_numpy())
        )
    binned = BinnedColumns(reference, ["a", "b"])
    mask = current["b"].to_numpy() == 1
    shares = binned.shares(binned.codes(current), mask)
    assert shares.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert shares[1, 1] == pytest.approx(1.0)  # every row of the segment in code 1's bin


@pytest.mark.parametrize("seed", range(5))
def test_ks_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, 1000 + seed * 100)
    b = rng.normal(0.2 * seed, 1 + 0.1 * seed, 800)
    b[:50] = np.round(b[:50], 1)  # ties
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_bands() -> None:
    assert [band(v, 0.10, 0.25) for v in (0.0, 0.0999, 0.10, 0.2499, 0.25, 3.0)] == [
        "green",
        "green",
        "amber",
        "amber",
        "red",
        "red",
    ]
    assert band(float("nan"), 0.1, 0.25) == "grey"
