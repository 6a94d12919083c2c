"""A month of observable activity: transactions and app sessions.

Customer-initiated activity is Poisson with a rate that rises with the latent
engagement, so counts, amounts and logins reveal engagement with noise. Salary,
pension, loan repayments, interest and fees are the regular flows a bank sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clm.domain import TXN_CATEGORIES, TXN_CHANNELS
from features.simulation import hazards as hz

if TYPE_CHECKING:
    from features.simulation.bank import ChunkBank, MonthActivity

CAT = {name: i for i, name in enumerate(TXN_CATEGORIES)}
CHAN = {name: i for i, name in enumerate(TXN_CHANNELS)}
# Customer-initiated categories and their mix by segment.
DISCRETIONARY = np.array(
    [
        CAT[c]
        for c in ("transfer_in", "transfer_out", "card_spend", "cash", "bill_payment", "investment")
    ]
)
MIX_BY_SEGMENT = np.array(
    [  # retiree, middle_class, young_parents, payroll, young_digital
        [0.10, 0.12, 0.28, 0.30, 0.16, 0.04],
        [0.10, 0.15, 0.45, 0.10, 0.15, 0.05],
        [0.08, 0.15, 0.50, 0.08, 0.17, 0.02],
        [0.08, 0.15, 0.50, 0.10, 0.14, 0.03],
        [0.12, 0.18, 0.55, 0.04, 0.09, 0.02],
    ]
)
# Typical amount per category as a share of monthly income, and its sign.
SCALE = np.zeros(len(TXN_CATEGORIES))
SCALE[
    [
        CAT["transfer_in"],
        CAT["transfer_out"],
        CAT["card_spend"],
        CAT["cash"],
        CAT["bill_payment"],
        CAT["investment"],
    ]
] = [
    0.08,
    0.10,
    0.012,
    0.03,
    0.04,
    0.15,
]
SIGN = np.where(np.isin(np.arange(len(TXN_CATEGORIES)), [CAT["transfer_in"]]), 1.0, -1.0)
SESSIONS_PER_MONTH = 8.0


def draw_activity(
    bank: ChunkBank,
    active: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    days: int,
    noise: np.ndarray,
    act: MonthActivity,
) -> None:
    """Draw month m's transactions and sessions for the `active` customers within [start, end) days."""
    from features.simulation.bank import CARD, FUND, LOAN, MORTGAGE, TD, WEALTH

    pop, rng = bank.pop, bank.rng
    idx = np.flatnonzero(active)
    s0, span = start[idx], np.maximum(end[idx] - start[idx], 0.0)
    frac = span / days
    e = bank.engagement[idx]
    income = pop.income

    count = rng.poisson(hz.discretionary_rate(pop.txn_rate[idx], e) * frac)
    bank.empty_month[:] = False
    bank.empty_month[idx] = count == 0
    rows = np.repeat(idx, count)
    day = np.repeat(s0, count) + rng.random(rows.size) * np.repeat(span, count)
    cum = np.cumsum(MIX_BY_SEGMENT, axis=1)[pop.segment[rows]]
    pick = np.minimum((rng.random(rows.size)[:, None] >= cum).sum(axis=1), len(DISCRETIONARY) - 1)
    category = DISCRETIONARY[pick]
    invests = bank.held[rows, WEALTH] | bank.held[rows, FUND]
    category = np.where((category == CAT["investment"]) & ~invests, CAT["transfer_out"], category)
    u = rng.random(rows.size)
    digital = np.minimum(pop.digital[rows], 1.0)
    channel = np.select(
        [
            category == CAT["card_spend"],
            category == CAT["cash"],
            category == CAT["transfer_in"],
            (category == CAT["transfer_out"]) | (category == CAT["bill_payment"]),
        ],
        [
            np.where(u < 0.3 * digital, CHAN["online"], CHAN["pos"]),
            np.where(u < 0.85, CHAN["atm"], CHAN["branch"]),
            CHAN["transfer"],
            np.where(
                u < digital,
                CHAN["app"],
                np.where(u < digital + 0.3, CHAN["online"], CHAN["branch"]),
            ),
        ],
        np.where(u < digital, CHAN["app"], CHAN["branch"]),
    )
    amount = SIGN[category] * income[rows] * SCALE[category] * rng.lognormal(0.0, 0.7, rows.size)
    product = np.where(
        category == CAT["investment"],
        np.where(bank.held[rows, WEALTH], WEALTH, FUND),
        np.where((category == CAT["card_spend"]) & bank.held[rows, CARD] & (u < 0.6), CARD, 0),
    )
    act.add_txn(rows, day, amount.round(2), category, channel, product)

    def within(day_of_month: np.ndarray | int) -> np.ndarray:
        d = np.broadcast_to(np.asarray(day_of_month) - 1, idx.shape)
        return (d >= s0) & (d < end[idx])

    # Salary through the bank on payday; retirees' pension around the 10th.
    paid = idx[bank.salary_active[idx] & within(pop.payday[idx])]
    act.add_txn(
        paid,
        pop.payday[paid] - 1 + 0.33,
        (income[paid] * (1 + 0.02 * noise[paid])).round(2),
        CAT["salary"],
        CHAN["transfer"],
        0,
    )
    retired = idx[(pop.segment[idx] == 0) & ~pop.is_payroll[idx] & within(10)]
    act.add_txn(retired, 9.4, income[retired].round(2), CAT["transfer_in"], CHAN["transfer"], 0)
    for p, share in ((LOAN, 0.025), (MORTGAGE, 0.006)):
        debtors = idx[bank.held[idx, p] & within(5)]
        act.add_txn(
            debtors,
            4.3,
            (bank.principal[debtors, p] * share).round(2),
            CAT["loan_repayment"],
            CHAN["transfer"],
            p,
        )
    savers = idx[bank.held[idx, TD] & (end[idx] >= days)]
    act.add_txn(
        savers,
        days - 0.2,
        (bank.balance[savers, TD] * 0.002).round(2),
        CAT["interest"],
        CHAN["transfer"],
        TD,
    )
    fee_payers = idx[(pop.tier[idx] == 0) & within(1)]
    act.add_txn(fee_payers, 0.05, -3.0, CAT["fee"], CHAN["transfer"], 0)

    # App sessions: more with engagement and app affinity.
    rate = np.minimum(
        SESSIONS_PER_MONTH * pop.digital[idx] * np.exp(0.9 * (e - hz.REFERENCE)), 60.0
    )
    sessions = rng.poisson(rate * frac)
    bank.sessions[:, 1] = bank.sessions[:, 0]
    bank.sessions[:, 0] = 0
    bank.sessions[idx, 0] = sessions
    bank.used_app[idx] |= sessions > 0
    srows = np.repeat(idx, sessions)
    act.session_idx = srows
    act.session_day = np.repeat(s0, sessions) + rng.random(srows.size) * np.repeat(span, sessions)
    act.session_duration = rng.lognormal(np.log(150.0), 0.8, srows.size).round(1)
