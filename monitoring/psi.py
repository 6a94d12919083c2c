"""Population Stability Index (PSI, called CSI on a single input feature) and KS.

PSI compares how a population spreads over bins fixed on the *reference*
(the validation sample saved with the champion):

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

where r_i and c_i are the shares of reference and current rows in bin i, each
floored at EPSILON (1e-4) so that an empty bin gives a large but finite term
instead of infinity.

Bins (all taken from the reference only, so the current data cannot move them):
- a column with at most `bins` distinct reference values (codes, flags, small
  counts) gets one bin per distinct value; a current value never seen in the
  reference falls in the bin of the nearest reference value at or above it
  (or the top bin);
- otherwise the edges are the reference quantiles at 1/bins, 2/bins, ...;
  repeated edges (ties: e.g. 60 % of balances exactly 0) are merged, so a tied
  value is one bin rather than several empty ones. Bins are right-closed:
  (-inf, e1], (e1, e2], ..., (ek, +inf);
- missing values (NaN) always have a bin of their own, so a rise in missing
  data shows up as drift.

Noise: two samples of one population never have PSI 0. With n1 and n2 rows and
k occupied bins, n_eff * PSI (n_eff = n1 n2 / (n1 + n2)) is close to a chi-square
with k - 1 degrees of freedom (PSI is the symmetric Kullback-Leibler divergence,
whose sampling law is the chi-square statistic's), so PSI averages
(k - 1)(1/n1 + 1/n2) under no change. `noise_levels` gives that mean and the
value noise alone exceeds with probability `alpha / tests`, `tests` being how
many PSIs one verdict looks at (columns x segments): a verdict over 66 columns
in 9 segments then false-alarms with probability at most `alpha`, not 600 times more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

EPSILON = 1e-4


@dataclass(frozen=True)
class Bins:
    """Upper edges of the finite bins (the last bin is open above; NaN is extra)."""

    edges: np.ndarray

    @property
    def count(self) -> int:
        """Number of bins including the top open bin and the NaN bin."""
        return len(self.edges) + 2

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value: 0..len(edges) for numbers, len(edges)+1 for NaN."""
        index = np.searchsorted(self.edges, values, side="left")
        index[np.isnan(values)] = len(self.edges) + 1
        return index

    def shares(self, values: np.ndarray) -> np.ndarray:
        counts = np.bincount(self.assign(values), minlength=self.count)
        return counts / max(len(values), 1)


def reference_bins(reference: np.ndarray, bins: int = 10) -> Bins:
    """Bins for one column, from its reference values (see the module docstring)."""
    finite = np.sort(reference[~np.isnan(reference)])
    if finite.size == 0:
        return Bins(np.empty(0))
    new_value = np.empty(finite.size, dtype=bool)
    new_value[0] = True
    np.not_equal(finite[1:], finite[:-1], out=new_value[1:])
    if np.count_nonzero(new_value) <= bins:
        # One bin per distinct value: right-closed edges at each value but the largest.
        return Bins(finite[new_value][:-1].astype(float))
    # Quantiles with linear interpolation (numpy's default), read off the sorted values.
    position = (finite.size - 1) * np.arange(1, bins) / bins
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, finite.size - 1)
    quantiles = finite[low] + (finite[high] - finite[low]) * (position - low)
    edges = np.unique(quantiles)
    # The largest edge equal to the maximum would leave an always-empty top bin.
    edges = edges[edges < finite[-1]]
    return Bins(edges.astype(float))


def psi_from_shares(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    r = np.maximum(reference_shares, EPSILON)
    c = np.maximum(current_shares, EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of one numeric column (NaN = missing)."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    b = reference_bins(reference, bins)
    return psi_from_shares(b.shares(reference), b.shares(current))


class BinnedColumns:
    """Reference bins for many columns, and bin codes of frames as one 2-D array.

    Binning each frame once and then counting codes lets the same bins serve the
    whole population and every segment (value tier, lifecycle stage) cheaply:
    all segments' shares come from one bincount over (segment, column, bin).
    """

    def __init__(self, reference: pd.DataFrame, columns: Sequence[str], bins: int = 10) -> None:
        self.columns = list(columns)
        self.bins = [reference_bins(_numeric(reference[c]), bins) for c in self.columns]
        self.width = max((b.count for b in self.bins), default=2)
        self.cells = len(self.columns) * self.width

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Flat bin index of every value, shape (rows, columns): column j's bins are
        j*width .. j*width+count-1, so one bincount counts every column at once."""
        # Column-major: each column is written contiguously.
        out = np.empty((len(frame), len(self.columns)), dtype=np.int32, order="F")
        for j, (column, b) in enumerate(zip(self.columns, self.bins, strict=True)):
            out[:, j] = b.assign(_numeric(frame[column]))
            out[:, j] += j * self.width
        return out

    def shares(self, codes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Share of rows per bin, shape (columns, width); padding bins are 0."""
        selected = codes if mask is None else codes[mask]
        counts = np.bincount(selected.ravel(order="K"), minlength=self.cells)
        return counts.reshape(len(self.columns), self.width) / max(selected.shape[0], 1)

    def group_shares(self, codes: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Shares per group, shape (n_groups, columns, width); `groups` holds 0..n_groups-1."""
        keyed = (
            codes
            + (
                groups.astype(np.int64 if n_groups * self.cells >= 2**31 else np.int32) * self.cells
            )[:, None]
        )
        counts = np.bincount(keyed.ravel(order="K"), minlength=n_groups * self.cells).reshape(
            n_groups, -1
        )
        rows = np.bincount(groups, minlength=n_groups)
        return (counts / np.maximum(rows, 1)[:, None]).reshape(
            n_groups, len(self.columns), self.width
        )


def psi_matrix(reference_shares: np.ndarray, current_shares: np.ndarray) -> np.ndarray:
    """PSI along the last axis of two share arrays (..., bins); padding bins add 0."""
    r = np.maximum(reference_shares, EPSILON)
    c = np.maximum(current_shares, EPSILON)
    return np.sum((c - r) * np.log(c / r), axis=-1)


def psi_table(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], bins: int = 10
) -> pd.Series:
    """PSI of each column (index: column name). Columns must be numeric."""
    binned = BinnedColumns(reference, columns, bins)
    values = psi_matrix(
        binned.shares(binned.codes(reference)), binned.shares(binned.codes(current))
    )
    return pd.Series(values, index=binned.columns, dtype=float, name="psi")


def ks_statistic(sample_a: np.ndarray, sample_b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two
    empirical distribution functions (NaN dropped). 0 = same, 1 = disjoint."""
    a = np.sort(np.asarray(sample_a, dtype=float))
    b = np.sort(np.asarray(sample_b, dtype=float))
    a = a[~np.isnan(a)]
    b = b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def noise_levels(
    n_reference: np.ndarray | int,
    n_current: np.ndarray | int,
    occupied_bins: np.ndarray | int,
    *,
    tests: int,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(mean PSI under no change, PSI that noise exceeds with probability alpha / tests).

    Arrays broadcast; rows with no data give NaN.
    """
    from scipy.stats import chi2

    n1 = np.asarray(n_reference, dtype=float)
    n2 = np.asarray(n_current, dtype=float)
    dof = np.maximum(np.asarray(occupied_bins, dtype=float) - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_n = np.where((n1 > 0) & (n2 > 0), 1 / n1 + 1 / n2, np.nan)
    mean = dof * inverse_n
    alarm = chi2.isf(alpha / max(tests, 1), dof) * inverse_n
    return mean, alarm


def occupied_bins(reference_shares: np.ndarray, current_shares: np.ndarray) -> np.ndarray:
    """Bins holding rows of either sample, along the last axis (the chi-square's k)."""
    return np.count_nonzero((reference_shares > 0) | (current_shares > 0), axis=-1)


def calibrated_band(value: float, alarm: float, amber: float, red: float) -> str:
    """The banking band, but green while PSI is within sampling noise (`alarm`)."""
    if value is None or not np.isfinite(value):
        return "grey"
    if np.isfinite(alarm) and value <= alarm:
        return "green"
    return band(value, amber, red)


def band(value: float, amber: float, red: float) -> str:
    """green below `amber`, amber from `amber`, red from `red`; grey when unknown."""
    if value is None or not np.isfinite(value):
        return "grey"
    if value >= red:
        return "red"
    if value >= amber:
        return "amber"
    return "green"


def _numeric(series: pd.Series) -> np.ndarray:
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object:
        raise TypeError(f"column {series.name!r} is not numeric; encode it first")
    if series.dtype == np.float64:
        return series.to_numpy(copy=False)
    return series.to_numpy(dtype=float, na_value=np.nan)
