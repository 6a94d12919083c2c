"""One chunk of customers moving through their latent lifecycle, month by month.

Per customer the bank keeps a latent engagement (an AR(1) around a drifting
personal level, hit by life shocks and moments of truth) and the observable
consequences: products opened and closed, balances, transactions, app sessions.
Each month: arrivals join, churners close everything, products open and close,
moments of truth happen, engagement moves, and the month's activity is drawn
from the new engagement. The hazards for the next month come from the state at
month end (`hazards.next_month`), which is also what the truth table reports.

Randomness: the baseline stream draws fixed-size arrays each month; everything
the rate shock adds comes from a separate stream, so a rate_shock bank equals
the baseline bank (same seed) before the shock month.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clm.domain import PRODUCTS, STAGES
from features.simulation import hazards as hz
from features.simulation.population import Calendar, Population

N_PRODUCTS = len(PRODUCTS)
TD, WEALTH, FUND, CARD, LOAN, MORTGAGE, INSURANCE, PENSION = range(1, 9)
NEVER = -10_000  # "month of the last event" before anything happened

# Initial book: log-odds shift from monthly adoption to "holds it already".
INITIAL_HOLDING_SHIFT = 4.3
# The rate war: a competitor's better deposit rate. Savers (time deposit, wealth, fund)
# are the ones who shop for rates: share of them who are rate-sensitive by tier (mass,
# affluent, private), plus a segment lift (retirees and the middle class compare rates,
# young digitals switch in an app). Customers without savings move less often: their
# idle cash is all a better rate can win. About 40% of the book is sensitive.
RATE_SENSITIVE_SAVER_BY_TIER = np.array([0.60, 0.80, 0.70])
RATE_SENSITIVE_BY_SEGMENT = np.array([0.15, 0.10, 0.0, 0.0, 0.05])
RATE_SENSITIVE_NON_SAVER = 0.35
# Of the sensitive customers who have not moved yet, the share who move in the
# competitor's first month and in each month after (the news spreads, deposits mature).
RATE_SHOCK_MOVE_FIRST = 0.6
RATE_SHOCK_MOVE_LATER = 0.4
# A mover breaks each savings product outright with this probability (else withdraws most).
RATE_SHOCK_CLOSE = 0.75
# The day-to-day relationship follows the money: engagement drops, and stays lower.
RATE_SHOCK_ENGAGEMENT_DROP = 1.0
RATE_SHOCK_LEVEL_DROP = 0.8
RATE_SHOCK_CASH_KEPT = 0.5  # the current account is run down to this share of its usual level
# The money leaves in tranches: a further transfer out in each of the next months.
RATE_SHOCK_TRANCHES = 2
# Salaried movers who also redirect their salary to the competitor (a rate war's condition).
RATE_SHOCK_SALARY_MOVES = 0.35
# Customers for whom onboarding contact works: young or digital, not payroll.
ONBOARDING_EFFECT = 1.5
ONBOARDING_SEGMENTS = (1, 2, 4)  # middle_class, young_parents, young_digital
CAMPAIGN_REACH = 0.06
CAMPAIGN_TREATMENT_SHARE = 0.7


def _nothing() -> np.ndarray:
    return np.zeros(0)


@dataclass
class MonthActivity:
    """Row-level arrays of one month (indices are positions in the chunk)."""

    txn_idx: list[np.ndarray] = field(default_factory=list)
    txn_day: list[np.ndarray] = field(default_factory=list)  # float days since month start
    txn_amount: list[np.ndarray] = field(default_factory=list)
    txn_category: list[np.ndarray] = field(default_factory=list)
    txn_channel: list[np.ndarray] = field(default_factory=list)
    txn_product: list[np.ndarray] = field(default_factory=list)
    session_idx: np.ndarray = field(default_factory=_nothing)
    session_day: np.ndarray = field(default_factory=_nothing)
    session_duration: np.ndarray = field(default_factory=_nothing)
    balance_idx: np.ndarray = field(default_factory=_nothing)
    balance_product: np.ndarray = field(default_factory=_nothing)
    balance: np.ndarray = field(default_factory=_nothing)
    truth_idx: np.ndarray = field(default_factory=_nothing)
    truth_stage: np.ndarray = field(default_factory=_nothing)
    truth_engagement: np.ndarray = field(default_factory=_nothing)
    truth_churn: np.ndarray = field(default_factory=_nothing)
    truth_adopt: np.ndarray = field(default_factory=_nothing)

    def add_txn(self, idx, day, amount, category, channel, product) -> None:  # type: ignore[no-untyped-def]
        n = len(idx)
        if n == 0:
            return
        self.txn_idx.append(np.asarray(idx))
        self.txn_day.append(np.broadcast_to(day, n).astype(np.float64))
        self.txn_amount.append(np.broadcast_to(amount, n).astype(np.float64))
        self.txn_category.append(np.broadcast_to(category, n).astype(np.int8))
        self.txn_channel.append(np.broadcast_to(channel, n).astype(np.int8))
        self.txn_product.append(np.broadcast_to(product, n).astype(np.int8))


class ChunkBank:
    """The state of one chunk of customers; call `month(m)` for m = 0, 1, ...."""

    def __init__(
        self,
        pop: Population,
        rng: np.random.Generator,
        shock_rng: np.random.Generator,
        calendar: Calendar,
        shock_month: int | None,
    ) -> None:
        self.pop, self.rng, self.shock_rng, self.cal = pop, rng, shock_rng, calendar
        self.shock_month = shock_month
        n = len(pop)
        M = calendar.months
        self.n = n
        self.churn_month = np.full(n, 1 << 30)
        self.churn_day = np.zeros(n, np.int64)
        self.level = pop.engagement_level.copy()
        new = pop.signup_month >= 0
        start = pop.signup_month.clip(max=0)
        # Newcomers start tentative and grow into their level (the growing stage).
        self.engagement = self.level + np.where(
            new | (start > -4), rng.normal(-0.5, 0.4, n), rng.normal(0.0, 0.45, n)
        )
        self.history = np.repeat(self.engagement[:, None], 3, axis=1)  # lags 1..3
        self.held = np.zeros((n, N_PRODUCTS), bool)
        self.open_day = np.zeros((n, N_PRODUCTS), np.int64)
        self.term_end = np.full((n, N_PRODUCTS), 1 << 30)
        self.balance = np.zeros((n, N_PRODUCTS))
        self.principal = np.zeros((n, N_PRODUCTS))
        self.salary_active = pop.is_payroll.copy()
        self.salary_stopped_month = np.full(n, NEVER)
        self.outflow_month = np.full(n, NEVER)
        self.deposit_lost_month = np.full(n, NEVER)
        self.sessions = np.zeros((n, 2), np.int64)  # this month, last month
        self.used_app = np.zeros(n, bool)
        self.empty_month = np.zeros(n, bool)
        self.campaign_until = np.full((n, 8), NEVER)
        self.cash_factor = rng.lognormal(0.0, 0.4, n)
        # Onboarding: new customers randomised 50/50 between contact and control.
        self.onboarding_group = np.where(new, (rng.random(n) < 0.5).astype(np.int64), -1)
        responsive = np.isin(pop.segment, ONBOARDING_SEGMENTS) & ~pop.is_payroll
        self.onboarding_effect = np.where(
            (self.onboarding_group == 1) & responsive, ONBOARDING_EFFECT, 0.0
        )
        # Rate sensitivity is decided when the competitor moves (it depends on what the
        # customer holds then); the draw is fixed here, from the shock's own stream.
        self.u_sensitive = self.shock_rng.random(n)
        self.rate_sensitive = np.zeros(n, bool)
        self.moved_away = np.zeros(n, bool)  # moved their savings to the competitor
        self.moved_month = np.full(n, NEVER)
        # Bookkeeping for the tables written at the end of the chunk.
        self.closed_holdings: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.campaign_rows: list[tuple[np.ndarray, ...]] = []
        self.adoptions: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.truth_churn = np.full((n, M), np.nan, np.float32)
        self.truth_adopt = np.full((n, M, 8), np.nan, np.float32)
        self.opened = np.zeros((n, M, 8), bool)
        self.alive_months = np.zeros(M, np.int64)
        self.churn_events = np.zeros(M, np.int64)
        self._open_initial_book()
        self.next_churn, self.next_adopt = self._hazards_for(0)

    # ------------------------------------------------------------------ setup
    def _open_initial_book(self) -> None:
        pop, rng, n = self.pop, self.rng, self.n
        book = pop.signup_month < 0
        signup_day = self.cal.month_start(pop.signup_month) + pop.signup_day - 1
        self._open(np.flatnonzero(book), np.zeros(book.sum(), np.int64), signup_day[book], month=-1)
        logits = hz.ADOPT_BASE + hz.ADOPT_BY_TIER.T[pop.tier] + hz.ADOPT_BY_SEGMENT.T[pop.segment]
        tenure_years = np.clip(-pop.signup_month, 0, 120) / 12.0
        p = hz.sigmoid(logits + INITIAL_HOLDING_SHIFT - 1.2 / (1.0 + tenure_years[:, None]))
        has = (rng.random((n, 8)) < p) & book[:, None]
        start = self.cal.month_start(0)
        for j in range(8):
            idx = np.flatnonzero(has[:, j])
            span = np.maximum(start - signup_day[idx], 1)
            day = signup_day[idx] + (rng.random(len(idx)) * span).astype(np.int64)
            self._open(idx, np.full(len(idx), j + 1), np.minimum(day, start - 1), month=-1)
        # The initial book's deposits and loans reach their term during the simulation.
        for product, longest in ((TD, 12), (LOAN, 60), (MORTGAGE, 300)):
            holders = np.flatnonzero(self.held[:, product])
            self.term_end[holders, product] = rng.integers(0, longest, len(holders))

    def _open(self, idx: np.ndarray, product: np.ndarray, day: np.ndarray, month: int) -> None:
        """Open `product` for customers `idx` on `day` (days since epoch), with its starting balance."""
        if len(idx) == 0:
            return
        rng = self.rng
        income = self.pop.income[idx]
        self.held[idx, product] = True
        self.open_day[idx, product] = day
        u = rng.random(len(idx))
        amount = np.select(
            [
                product == TD,
                product == WEALTH,
                product == FUND,
                product == PENSION,
                product == INSURANCE,
                product == LOAN,
                product == MORTGAGE,
                product == 0,
            ],
            [
                income * (2 + 8 * u),
                income * (3 + 12 * u),
                income * (1 + 7 * u),
                income * (1 + 19 * u),
                income * (0.5 + 2.5 * u),
                -income * (3 + 9 * u),
                -income * (40 + 80 * u),
                income * (0.5 + u),
            ],
            0.0,
        )
        self.balance[idx, product] = amount
        self.principal[idx, product] = amount
        term = np.select(
            [product == TD, product == LOAN, product == MORTGAGE],
            [
                np.array([3, 6, 12])[(u * 3).astype(int)],
                24 + (u * 37).astype(int),
                120 + (u * 180).astype(int),
            ],
            1 << 30,
        )
        self.term_end[idx, product] = month + term

    # ------------------------------------------------------------------ month
    def month(self, m: int) -> MonthActivity:
        pop, rng, cal, n = self.pop, self.rng, self.cal, self.n
        act = MonthActivity()
        shocked = self.shock_month is not None and m >= self.shock_month
        first_day = cal.month_start(m)[()]
        days = int(cal.days_in(m))
        # Fixed-size draws from the baseline stream (see module docstring).
        u_churn, u_salary, u_outflow, u_jump, u_campaign, u_group = rng.random((6, n))
        u_close, u_adopt = rng.random((n, N_PRODUCTS)), rng.random((n, 8))
        day_close, day_open = rng.integers(2, 28, n), rng.integers(2, 28, (n, 8))
        noise = rng.normal(0.0, 1.0, (4, n))

        existing = (pop.signup_month < m) & (self.churn_month > m)
        new = pop.signup_month == m
        # --- churn: the last holding closes, the money leaves the same day.
        churn = existing & (u_churn < self.next_churn)
        c_idx = np.flatnonzero(churn)
        self.churn_month[c_idx] = m
        self.churn_day[c_idx] = day_close[c_idx]
        positive = np.clip(self.balance[c_idx], 0, None).sum(axis=1)
        act.add_txn(c_idx, day_close[c_idx] - 1 + 0.4, -positive - 1.0, 2, 4, 0)
        rows, cols = np.nonzero(self.held[c_idx])
        self._close(c_idx[rows], cols, first_day + day_close[c_idx[rows]] - 1)
        # --- newcomers open their current account (some a credit card too).
        n_idx = np.flatnonzero(new)
        signup = first_day + pop.signup_day[n_idx] - 1
        self._open(n_idx, np.zeros(len(n_idx), np.int64), signup, m)
        card = n_idx[u_adopt[n_idx, CARD - 1] < 0.15]
        self._open(card, np.full(len(card), CARD), first_day + pop.signup_day[card] - 1, m)
        on = n_idx[self.onboarding_group[n_idx] >= 0]
        self._campaign(
            on,
            m,
            np.minimum(pop.signup_day[on] + 5, days),
            "onboarding",
            -1,
            self.onboarding_group[on],
            channel=1,
        )
        # --- products: term ends, ordinary closures, adoptions (not for churners).
        stay = existing & ~churn
        if shocked:
            self._rate_sensitivity()
        self._products(m, stay, first_day, u_close, u_adopt, day_close, day_open, act, shocked)
        # --- moments of truth.
        stop = (
            stay
            & self.salary_active
            & (u_salary < hz.sigmoid(-4.3 - 0.9 * (self.engagement - hz.REFERENCE)))
        )
        restart = stay & pop.is_payroll & ~self.salary_active & (u_salary < 0.06)
        self.salary_active = (self.salary_active & ~stop) | restart
        self.salary_stopped_month[stop] = m
        outflow = stay & (u_outflow < hz.sigmoid(-5.0 - 1.2 * (self.engagement - hz.REFERENCE)))
        o_idx = np.flatnonzero(outflow)
        self.outflow_month[o_idx] = m
        moved = self.balance[o_idx, 0] * (0.6 + 0.3 * u_jump[o_idx]) + pop.income[o_idx] * 2
        act.add_txn(o_idx, day_close[o_idx] - 1 + 0.6, -moved, 2, 5, 0)
        self.balance[o_idx, 0] -= moved
        if shocked:
            self._rate_shock(m, stay, int(first_day), act)
        # --- engagement moves (life shocks, moments of truth, the shock's pull).
        self.history = np.column_stack([self.engagement, self.history[:, :2]])
        self.level += 0.05 * noise[0]
        down = u_jump < 0.015
        up = u_jump > 0.99
        self.level -= 0.35 * down + 0.4 * stop
        self.engagement = (
            self.engagement
            + (1 - hz.PERSISTENCE) * (self.level - self.engagement)
            + 0.22 * noise[1]
            - (0.6 + 0.8 * noise[2].clip(-1, 1) ** 2) * down
            + 0.5 * up
            - 0.5 * stop
        )
        # --- the month's observable activity.
        active = (existing | new) & (pop.signup_month <= m)
        start = np.where(new, pop.signup_day - 1, 0).astype(np.float64)
        end = np.where(churn, self.churn_day - 1, days).astype(np.float64)
        self._activity(active, start, end, days, noise[3], act)
        # --- month-end: balances, stage, truth, next month's hazards.
        alive_end = active & ~churn
        self._balances(m, alive_end, act)
        self._campaigns(m, alive_end & ~new, u_campaign, u_group, day_open[:, 0], days)
        self.alive_months[m] = (existing).sum()
        self.churn_events[m] = churn.sum()
        self._truth(m, active, alive_end, churn, act)
        self.next_churn, self.next_adopt = self._hazards_for(m + 1)
        return act

    def _products(  # type: ignore[no-untyped-def]
        self, m, stay, first_day, u_close, u_adopt, day_close, day_open, act, shocked
    ) -> None:
        e = self.engagement
        held_before = self.held.copy()
        # Time deposits mature: renewed by engaged customers, otherwise the money goes.
        renew_logit = 1.2 + 1.2 * (e - hz.REFERENCE) - 2.0 * (self.rate_sensitive & shocked)
        matured = stay & self.held[:, TD] & (self.term_end[:, TD] <= m)
        renewed = matured & (u_close[:, TD] < hz.sigmoid(renew_logit))
        self.term_end[renewed, TD] = m + 6
        lost = matured & ~renewed
        self.deposit_lost_month[lost] = m
        l_idx = np.flatnonzero(lost)
        act.add_txn(l_idx, day_close[l_idx] - 1 + 0.5, -self.balance[l_idx, TD], 2, 5, TD)
        self._close(l_idx, np.full(len(l_idx), TD), first_day + day_close[l_idx] - 1)
        # Loans end at their term; other products close now and then (more when disengaged).
        p_close = hz.sigmoid(-5.3 - 0.6 * (e - hz.REFERENCE) + 1.0 * self.empty_month)
        for p in (WEALTH, FUND, CARD, INSURANCE, PENSION, LOAN, MORTGAGE):
            ends = self.term_end[:, p] <= m if p in (LOAN, MORTGAGE) else u_close[:, p] < p_close
            idx = np.flatnonzero(stay & self.held[:, p] & ends)
            self._close(idx, np.full(len(idx), p), first_day + day_close[idx] - 1)
        # Adoption, drawn against the hazards fixed at the end of last month.
        adopt = stay[:, None] & ~held_before[:, 1:] & (u_adopt < self.next_adopt)
        rows, cols = np.nonzero(adopt)
        day = first_day + day_open[rows, cols] - 1
        self._open(rows, cols + 1, day, m)
        self.opened[rows, m, cols] = True
        self.adoptions.append((rows, cols + 1, day))
        funded = np.isin(cols + 1, (TD, WEALTH, FUND, PENSION))
        act.add_txn(
            rows[funded],
            day_open[rows[funded], cols[funded]] - 1 + 0.45,
            self.balance[rows[funded], cols[funded] + 1],
            6,
            1,
            cols[funded] + 1,
        )

    def _close(self, idx: np.ndarray, product: np.ndarray, day: np.ndarray) -> None:
        if len(idx) == 0:
            return
        self.closed_holdings.append((idx, product, self.open_day[idx, product], day))
        self.held[idx, product] = False
        self.balance[idx, product] = 0.0
        self.term_end[idx, product] = 1 << 30

    def _rate_sensitivity(self) -> None:
        """Who shops for rates, from what they hold now (sticky once sensitive)."""
        pop = self.pop
        saver = self.held[:, [TD, WEALTH, FUND]].any(axis=1)
        p = np.where(
            saver,
            RATE_SENSITIVE_SAVER_BY_TIER[pop.tier] + RATE_SENSITIVE_BY_SEGMENT[pop.segment],
            RATE_SENSITIVE_NON_SAVER,
        )
        self.rate_sensitive |= self.u_sensitive < p

    def _rate_shock(self, m: int, stay: np.ndarray, first_day: int, act: MonthActivity) -> None:
        """A competitor's better rate: sensitive customers move their savings and idle cash out.

        Everything it does is observable and feeds the baseline hazard, not a hidden
        multiplier: large outflows (`outflow_month`), savings products broken or
        redeemed (closures, `deposit_lost_month`, fewer products), a current account
        run down, and engagement that follows the money (fewer transactions and logins).
        """
        srng, n = self.shock_rng, self.n
        u, share, day = srng.random(n), srng.uniform(0.6, 0.95, n), srng.integers(2, 28, n)
        u_close, u_salary = srng.random((n, 3)), srng.random(n)
        # Earlier movers send the next tranche of what is left in the current account.
        tranche = np.flatnonzero(
            stay & (m - self.moved_month >= 1) & (m - self.moved_month <= RATE_SHOCK_TRANCHES)
        )
        sent = self.balance[tranche, 0].clip(0) * share[tranche] + self.pop.income[tranche] * 0.5
        act.add_txn(tranche, day[tranche] - 1 + 0.6, -sent, 2, 4, 0)
        self.balance[tranche, 0] -= sent
        self.outflow_month[tranche] = m
        p_move = RATE_SHOCK_MOVE_FIRST if m == self.shock_month else RATE_SHOCK_MOVE_LATER
        idx = np.flatnonzero(stay & self.rate_sensitive & ~self.moved_away & (u < p_move))
        self.moved_away[idx] = True
        self.moved_month[idx] = m
        redirect = idx[self.salary_active[idx] & (u_salary[idx] < RATE_SHOCK_SALARY_MOVES)]
        self.salary_active[redirect] = False
        self.salary_stopped_month[redirect] = m
        for k, p in enumerate((TD, WEALTH, FUND)):
            has = idx[self.held[idx, p]]
            broken = has[u_close[has, k] < RATE_SHOCK_CLOSE]
            drawn = has[u_close[has, k] >= RATE_SHOCK_CLOSE]
            act.add_txn(broken, day[broken] - 1 + 0.55, -self.balance[broken, p], 2, 4, p)
            self._close(broken, np.full(len(broken), p), first_day + day[broken] - 1)
            self.deposit_lost_month[broken] = m
            moved = self.balance[drawn, p] * share[drawn]
            self.balance[drawn, p] -= moved
            act.add_txn(drawn, day[drawn] - 1 + 0.55, -moved, 2, 4, p)
        # Idle cash follows: a large transfer out of the current account, which stays low.
        cash = self.balance[idx, 0].clip(0) * share[idx] + self.pop.income[idx] * 1.5
        act.add_txn(idx, day[idx] - 1 + 0.6, -cash, 2, 4, 0)
        self.balance[idx, 0] -= cash
        self.cash_factor[idx] *= RATE_SHOCK_CASH_KEPT
        self.outflow_month[idx] = m
        self.engagement[idx] -= RATE_SHOCK_ENGAGEMENT_DROP
        self.level[idx] -= RATE_SHOCK_LEVEL_DROP

    def _activity(self, active, start, end, days, noise, act) -> None:  # type: ignore[no-untyped-def]
        from features.simulation.activity import draw_activity

        draw_activity(self, active, start, end, days, noise, act)

    def _balances(self, m: int, alive: np.ndarray, act: MonthActivity) -> None:
        pop, rng, e = self.pop, self.rng, self.engagement - hz.REFERENCE
        income = pop.income
        pull = 0.35 + 0.9 * np.exp(0.6 * e) * np.where(
            pop.is_payroll & ~self.salary_active, 0.5, 1.0
        )
        target = income * pull * self.cash_factor
        self.balance[:, 0] = 0.5 * self.balance[:, 0].clip(0) + 0.5 * target * rng.lognormal(
            0, 0.2, self.n
        )
        ret = rng.normal(0.004, 0.015, (self.n, 2))
        contrib = 0.04 * income * np.exp(0.5 * e) * (e > -0.3)
        self.balance[:, WEALTH] = (
            self.balance[:, WEALTH] * (1 + ret[:, 0]) + contrib * self.held[:, WEALTH]
        )
        self.balance[:, FUND] = (
            self.balance[:, FUND] * (1 + ret[:, 1]) + contrib * self.held[:, FUND]
        )
        self.balance[:, [WEALTH, FUND]] *= np.where(e < -0.8, 0.95, 1.0)[:, None]
        self.balance[:, TD] *= 1.002
        self.balance[:, PENSION] += 0.05 * income * self.salary_active
        self.balance[:, INSURANCE] += 0.01 * income
        self.balance[:, CARD] = -income * rng.uniform(0.1, 0.6, self.n) * np.exp(0.5 * e)
        for p in (LOAN, MORTGAGE):
            term = np.maximum(self.term_end[:, p] - m, 1)
            self.balance[:, p] = np.minimum(self.balance[:, p] - self.balance[:, p] / term, 0.0)
        self.balance *= self.held
        idx, prod = np.nonzero(self.held & alive[:, None])
        act.balance_idx, act.balance_product, act.balance = (
            idx,
            prod,
            self.balance[idx, prod].round(2),
        )

    def _campaign(self, idx, m, day, name, product, group, channel) -> None:  # type: ignore[no-untyped-def]
        if len(idx):
            self.campaign_rows.append(
                (
                    idx,
                    np.full(len(idx), m),
                    np.asarray(day),
                    name,
                    product,
                    np.asarray(group),
                    channel,
                )
            )

    def _campaigns(self, m, eligible, u_reach, u_group, day, days) -> None:  # type: ignore[no-untyped-def]
        """Two product campaigns a month, each to a random 6% with a randomised 30% control group."""
        for k, j in enumerate((m % 8, (3 * m + 5) % 8)):
            reach = (
                eligible
                & ~self.held[:, j + 1]
                & (u_reach >= 0.5 * k)
                & (u_reach < 0.5 * k + CAMPAIGN_REACH)
            )
            idx = np.flatnonzero(reach)
            group = (u_group[idx] < CAMPAIGN_TREATMENT_SHARE).astype(np.int64)
            self.campaign_until[idx[group == 1], j] = m + 2
            self._campaign(
                idx,
                m,
                np.minimum(day[idx], days),
                f"{self.cal.label(m)}-{PRODUCTS[j + 1]}",
                j + 1,
                group,
                channel=2 + k,
            )

    # ------------------------------------------------------------------ truth
    def snapshot(self, m: int, shocked: bool) -> hz.Snapshot:
        return hz.Snapshot(
            month=m,
            engagement=self.engagement,
            level=self.level,
            segment=self.pop.segment,
            tier=self.pop.tier,
            signup_month=self.pop.signup_month,
            products_held=self.held,
            salary_active=self.salary_active,
            salary_stopped_month=self.salary_stopped_month,
            outflow_month=self.outflow_month,
            deposit_lost_month=self.deposit_lost_month,
            app_quiet=self.used_app & (self.sessions.sum(axis=1) == 0),
            empty_month=self.empty_month,
            onboarding_effect=self.onboarding_effect,
            campaign_until=self.campaign_until,
            shocked=self.moved_away & shocked,
            txn_rate=self.pop.txn_rate,
        )

    def _hazards_for(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Hazards of month m from the state at the end of m-1 (the shock is felt from its month)."""
        shocked = self.shock_month is not None and m >= self.shock_month
        return hz.next_month(self.snapshot(m - 1, shocked))

    def _truth(self, m, active, alive_end, churn, act) -> None:  # type: ignore[no-untyped-def]
        # The competitor's move is unforeseen: the truth at month end m knows it only once it happened.
        known_shock = self.shock_month is not None and m >= self.shock_month
        p_churn, p_adopt = hz.ninety_days(self.snapshot(m, known_shock))
        idx = np.flatnonzero(active)
        self.truth_churn[alive_end, m] = p_churn[alive_end]
        self.truth_adopt[alive_end, m] = p_adopt[alive_end]
        act.truth_idx = idx
        act.truth_stage = self.stage(m)[idx]
        act.truth_engagement = self.engagement[idx]
        act.truth_churn = np.where(churn[idx], 0.0, p_churn[idx])
        act.truth_adopt = np.where(churn[idx, None], 0.0, p_adopt[idx])

    def stage(self, m: int) -> np.ndarray:
        """Latent stage code (index in STAGES) at the end of month m."""
        e, trend = self.engagement, self.engagement - self.history[:, 2]
        tenure = m - self.pop.signup_month
        stage = np.where(
            tenure <= 2,
            0,
            np.where(
                e < -1.4,
                4,
                np.where(trend < -0.45, 3, np.where((trend > 0.25) | (tenure < 12), 1, 2)),
            ),
        )
        return np.where(self.churn_month <= m, STAGES.index("churned"), stage)
