"""The true monthly hazards of the simulated bank, and their 90-day truth.

A customer's churn and product-adoption hazards for month m+1 are fixed by its
state at the end of month m: latent engagement (which the bank never sees but
which drives everything it does see), plus behaviour the bank can observe
(products held, moments of truth, an empty month, a quiet app). The 90-day
truth compounds three monthly hazards along the expected engagement path, so
`churn_hazard_90d` is the probability of churning in the three months after a
snapshot (the snapshot's 90-day window), given what is known at the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Engagement is an AR(1) around the customer's (slowly drifting) level.
PERSISTENCE = 0.88
# Reference engagement: activity rates are quoted at this level.
REFERENCE = 0.2

CHURN_BASE = -4.85
CHURN_BY_SEGMENT = np.array([-0.2, 0.0, 0.1, -0.1, 0.35])
CHURN_ENGAGEMENT = -1.0
CHURN_PER_PRODUCT = -0.3
CHURN_HONEYMOON = 1.4  # first six months: trust is not formed yet
CHURN_SALARY_STOPPED = 1.1  # salary stopped arriving in the last 3 months
CHURN_LARGE_OUTFLOW = 0.9  # a large outflow in the last 2 months
CHURN_DEPOSIT_LOST = 0.7  # a time deposit matured and was not renewed (last 2 months)
CHURN_APP_QUIET = 0.5  # an app user with no session for two months
CHURN_EMPTY_MONTH = 0.9  # no customer-initiated transaction last month
HONEYMOON_MONTHS = 6

# Adoption: product order = PROPENSITY_PRODUCTS (time_deposit ... pension).
ADOPT_BASE = np.array([-5.0, -5.6, -5.5, -5.0, -5.7, -6.3, -5.6, -6.0])
ADOPT_BY_TIER = np.array(
    [  # mass, affluent, private
        [-0.3, 0.6, 0.6],
        [-0.9, 0.9, 1.5],
        [-0.5, 0.6, 0.9],
        [0.0, 0.2, 0.0],
        [0.3, -0.3, -1.0],
        [0.0, 0.3, 0.3],
        [0.0, 0.3, 0.4],
        [0.0, 0.3, 0.3],
    ]
)
ADOPT_BY_SEGMENT = np.array(
    [  # retiree, middle_class, young_parents, payroll, young_digital
        [0.9, 0.0, -0.3, 0.0, -0.6],
        [0.5, 0.4, -0.2, 0.0, -0.6],
        [-0.5, 0.3, 0.0, 0.2, 0.5],
        [-1.0, 0.0, 0.2, 0.5, 0.8],
        [-1.5, 0.0, 0.6, 0.3, 0.5],
        [-2.5, 0.0, 1.0, 0.3, -0.2],
        [-0.5, 0.3, 0.9, 0.2, -0.4],
        [-2.0, 0.5, 0.2, 0.7, 0.2],
    ]
)
ADOPT_ENGAGEMENT = 0.8
ADOPT_CAMPAIGN = 0.9  # a treatment contact lifts adoption for two months
ADOPT_EMPTY_MONTH = -1.2
ADOPT_RATE_SHOCK = -1.0  # customers who moved to the competitor open deposits there
ADOPT_NEWCOMER = 0.5  # cross-selling in the first months

DISCRETIONARY_PER_ENGAGEMENT = 1.1  # log activity per unit of engagement


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Snapshot:
    """What the hazards depend on, at the end of month m (arrays over customers)."""

    month: int
    engagement: np.ndarray
    level: np.ndarray
    segment: np.ndarray
    tier: np.ndarray
    signup_month: np.ndarray
    products_held: np.ndarray  # (n, 9) bool
    salary_active: np.ndarray
    salary_stopped_month: np.ndarray
    outflow_month: np.ndarray
    deposit_lost_month: np.ndarray
    app_quiet: np.ndarray
    empty_month: np.ndarray  # no discretionary transaction in month m
    onboarding_effect: np.ndarray  # logit reduction while in honeymoon (0 for control/none)
    campaign_until: np.ndarray  # (n, 8) last month a campaign lifts adoption
    shocked: np.ndarray  # moved savings to the rate-war competitor (adoption only; churn
    # follows from the observable states the move leaves: outflow, closures, low activity)
    txn_rate: np.ndarray


def churn_logit(
    s: Snapshot, engagement: np.ndarray, ahead: int, empty: np.ndarray | float
) -> np.ndarray:
    """Logit of churning in month s.month + ahead (state aged by `ahead` - 1 months)."""
    at = s.month + ahead - 1  # the month-end whose state sets this month's hazard
    tenure = s.month + ahead - s.signup_month
    honeymoon = tenure < HONEYMOON_MONTHS
    n_products = s.products_held.sum(axis=1)
    return (
        CHURN_BASE
        + CHURN_BY_SEGMENT[s.segment]
        + CHURN_ENGAGEMENT * (engagement - REFERENCE)
        + CHURN_PER_PRODUCT * (n_products - 1)
        + honeymoon * (CHURN_HONEYMOON - s.onboarding_effect)
        + CHURN_SALARY_STOPPED * (at - s.salary_stopped_month < 3)
        + CHURN_LARGE_OUTFLOW * (at - s.outflow_month < 2)
        + CHURN_DEPOSIT_LOST * (at - s.deposit_lost_month < 2)
        + CHURN_APP_QUIET * s.app_quiet
        + CHURN_EMPTY_MONTH * empty
    )


def discretionary_rate(txn_rate: np.ndarray, engagement: np.ndarray) -> np.ndarray:
    """Expected customer-initiated transactions per month."""
    return np.minimum(
        txn_rate * np.exp(DISCRETIONARY_PER_ENGAGEMENT * (engagement - REFERENCE)), 80.0
    )


def next_month(s: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """Churn hazard (n,) and adoption hazards (n, 8) for month s.month + 1 (exact)."""
    h = sigmoid(churn_logit(s, s.engagement, 1, s.empty_month))
    a = sigmoid(_adoption(s, s.engagement, 1, s.empty_month.astype(float)))
    return h, np.where(s.products_held[:, 1:], 0.0, a)


def ninety_days(s: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """P(churn within 90 days) and P(open each product within 90 days | not held).

    The first month is exact; months two and three use the expected engagement
    path and average over whether the intervening month is empty (Poisson).
    """
    n = len(s.engagement)
    alive = np.ones(n)
    not_adopted = np.ones((n, 8))
    adopted = np.zeros((n, 8))
    for ahead in (1, 2, 3):
        e = s.level + PERSISTENCE ** (ahead - 1) * (s.engagement - s.level)
        if ahead == 1:
            h = sigmoid(churn_logit(s, e, ahead, s.empty_month))
            a = sigmoid(_adoption(s, e, ahead, s.empty_month.astype(float)))
        else:
            q_empty = np.exp(-discretionary_rate(s.txn_rate, e))
            h = (1 - q_empty) * sigmoid(churn_logit(s, e, ahead, 0.0)) + q_empty * sigmoid(
                churn_logit(s, e, ahead, 1.0)
            )
            a = (1 - q_empty[:, None]) * sigmoid(_adoption(s, e, ahead, np.zeros(n))) + q_empty[
                :, None
            ] * sigmoid(_adoption(s, e, ahead, np.ones(n)))
        adopted += (alive * (1 - h))[:, None] * not_adopted * a
        not_adopted *= 1 - a
        alive *= 1 - h
    p_adopt = np.where(s.products_held[:, 1:], np.nan, adopted)
    return 1 - alive, p_adopt


def _adoption(s: Snapshot, engagement: np.ndarray, ahead: int, empty: np.ndarray) -> np.ndarray:
    held = s.products_held
    tenure = s.month + ahead - s.signup_month
    cross = np.zeros((len(engagement), 8))
    cross[:, 1] += 0.6 * held[:, 1]
    cross[:, 2] += 0.5 * held[:, 2]
    cross[:, 3] += 0.5 * s.salary_active
    cross[:, 6] += 0.5 * held[:, 6]
    month = s.month + ahead
    campaign = (s.campaign_until >= month) & (s.campaign_until - 1 <= month)
    shock = np.zeros((len(engagement), 8))
    shock[:, :3] = ADOPT_RATE_SHOCK * s.shocked[:, None]
    return (
        ADOPT_BASE
        + ADOPT_BY_TIER.T[s.tier]
        + ADOPT_BY_SEGMENT.T[s.segment]
        + ADOPT_ENGAGEMENT * (engagement - REFERENCE)[:, None]
        + ADOPT_CAMPAIGN * campaign
        + ADOPT_EMPTY_MONTH * empty[:, None]
        + ADOPT_NEWCOMER * (tenure < 4)[:, None]
        + cross
        + shock
    )
