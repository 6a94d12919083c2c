"""Who the simulated bank's customers are: static attributes and the calendar.

Everything here is drawn once per customer when its chunk starts. Attributes are
integer codes into the vocabularies of `clm.domain` (index = code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clm.domain import ACQUISITION_CHANNELS, REGIONS, SEGMENTS, VALUE_TIERS

# Segment shares of the book and of new arrivals.
SEGMENT_SHARE = np.array([0.18, 0.27, 0.18, 0.20, 0.17])
# Value tier (mass, affluent, private) by segment: retirees and the middle class hold wealth.
TIER_BY_SEGMENT = np.array(
    [
        [0.58, 0.33, 0.09],
        [0.55, 0.37, 0.08],
        [0.76, 0.21, 0.03],
        [0.76, 0.21, 0.03],
        [0.90, 0.09, 0.01],
    ]
)
# Acquisition channel (branch, app, referral, payroll, campus_merchant) by segment.
CHANNEL_BY_SEGMENT = np.array(
    [
        [0.75, 0.05, 0.18, 0.02, 0.00],
        [0.40, 0.25, 0.20, 0.10, 0.05],
        [0.30, 0.35, 0.20, 0.05, 0.10],
        [0.08, 0.07, 0.05, 0.80, 0.00],
        [0.07, 0.50, 0.13, 0.00, 0.30],
    ]
)
PAYROLL_BY_SEGMENT = np.array([0.0, 0.15, 0.25, 0.95, 0.10])
BIRTH_YEARS_BY_SEGMENT = np.array(
    [[1940, 1962], [1964, 1990], [1984, 1997], [1970, 2001], [1996, 2006]]
)
# Monthly income (or pension) by tier, in the bank's currency.
INCOME_BY_TIER = np.array([2800.0, 7500.0, 24000.0])
# App affinity: retirees use the branch, young digital customers live in the app.
DIGITAL_BY_SEGMENT = np.array([0.25, 0.65, 0.75, 0.7, 1.1])
# Discretionary transactions per month at average engagement.
TXN_RATE_BY_SEGMENT = np.array([9.0, 12.0, 14.0, 12.0, 15.0])
# Long-run engagement level by segment (payroll and retirees are sticky).
ENGAGEMENT_BY_SEGMENT = np.array([0.30, 0.20, 0.15, 0.35, 0.05])
# Initial book tenure: months since signup (exponential, mean ~5 years).
MEAN_TENURE_MONTHS = 60.0
# New customers per month, as a share of the initial book.
ARRIVAL_RATE = 0.013

assert len(SEGMENT_SHARE) == len(SEGMENTS) and TIER_BY_SEGMENT.shape == (
    len(SEGMENTS),
    len(VALUE_TIERS),
)
assert CHANNEL_BY_SEGMENT.shape == (len(SEGMENTS), len(ACQUISITION_CHANNELS))


class Calendar:
    """Month index m (0 = start_month; negative = before the simulation) to dates."""

    def __init__(self, start_month: np.datetime64, months: int) -> None:
        self.start = start_month.astype("datetime64[M]")
        self.months = months

    def month_start(self, m: np.ndarray | int) -> np.ndarray:
        """Days since 1970-01-01 of the first day of month m."""
        return (self.start + np.asarray(m)).astype("datetime64[D]").astype(np.int64)

    def month_end(self, m: np.ndarray | int) -> np.ndarray:
        return self.month_start(np.asarray(m) + 1) - 1

    def days_in(self, m: np.ndarray | int) -> np.ndarray:
        return self.month_start(np.asarray(m) + 1) - self.month_start(m)

    def label(self, m: int) -> str:
        return str(self.start + m)


@dataclass
class Population:
    """Static attributes of one chunk of customers (arrays of equal length)."""

    number: np.ndarray  # global customer number -> "C%07d"
    signup_month: np.ndarray  # month index (negative: initial book)
    signup_day: np.ndarray  # day of month, 2..27
    segment: np.ndarray
    tier: np.ndarray
    region: np.ndarray
    channel: np.ndarray
    is_payroll: np.ndarray
    birth_year: np.ndarray
    income: np.ndarray
    digital: np.ndarray
    txn_rate: np.ndarray
    engagement_level: np.ndarray  # the customer's long-run engagement (drifts)
    payday: np.ndarray

    def __len__(self) -> int:
        return len(self.number)


def signup_months(rng: np.random.Generator, customers: int, months: int) -> np.ndarray:
    """Signup month of every customer: the initial book, then monthly arrivals in order."""
    back = 1 + np.floor(rng.exponential(MEAN_TENURE_MONTHS, customers)).astype(np.int64)
    initial = -np.minimum(back, 300)
    arrivals = rng.poisson(ARRIVAL_RATE * customers, months)
    later = np.repeat(np.arange(months, dtype=np.int64), arrivals)
    return np.concatenate([initial, later])


def draw_population(
    rng: np.random.Generator, number: np.ndarray, signup_month: np.ndarray
) -> Population:
    """Draw the attributes of the customers `number` (whose signup months are given)."""
    n = len(number)
    segment = _categorical(rng, np.broadcast_to(SEGMENT_SHARE, (n, len(SEGMENT_SHARE))))
    tier = _categorical(rng, TIER_BY_SEGMENT[segment])
    channel = _categorical(rng, CHANNEL_BY_SEGMENT[segment])
    is_payroll = (rng.random(n) < PAYROLL_BY_SEGMENT[segment]) | (channel == 3)
    lo, hi = BIRTH_YEARS_BY_SEGMENT[segment].T
    birth_year = rng.integers(lo, hi + 1)
    income = INCOME_BY_TIER[tier] * rng.lognormal(0.0, 0.35, n)
    income = np.where(segment == 0, income * 0.65, income)
    digital = DIGITAL_BY_SEGMENT[segment] * rng.lognormal(0.0, 0.35, n)
    txn_rate = TXN_RATE_BY_SEGMENT[segment] * rng.lognormal(0.0, 0.15, n)
    level = ENGAGEMENT_BY_SEGMENT[segment] + rng.normal(0.0, 0.45, n)
    return Population(
        number=number,
        signup_month=signup_month,
        signup_day=rng.integers(2, 28, n),
        segment=segment,
        tier=tier,
        region=rng.integers(0, len(REGIONS), n),
        channel=channel,
        is_payroll=is_payroll,
        birth_year=birth_year,
        income=income,
        digital=digital,
        txn_rate=txn_rate,
        engagement_level=level,
        payday=rng.integers(24, 29, n),
    )


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row from the row's probabilities (vectorised inverse CDF)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)
