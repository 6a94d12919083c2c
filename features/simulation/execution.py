"""`clm simulate --execute CAMPAIGN_ID`: the simulated bank carries out a campaign.

Re-running the simulation with the same seed and more months reproduces the bank the
list was drawn on, exactly, up to the list date: the customers of the original run
keep their chunks and generators (`chunk_ranges`), later arrivals get chunks of their
own, and nothing the campaign does draws from the bank's random streams. At the end of
the list month the treatment group is contacted (contact date: the 3rd of the next
month, in the raw `campaigns` table with both groups, as a CRM logs a randomized
campaign); the control group is left alone.

What a contact does (the truth behind the evaluation):
- retention (lifecycle and event scenes): the conversation lifts the customer's
  engagement by `RETENTION_LIFT[segment] x CHANNEL_REACH[channel]`, which then decays
  like any engagement shock (AR(1)); churn falls through the engagement term of the
  hazard. Young digital customers called or met in a branch are annoyed: their lift is
  negative ("sleeping dogs"), so contacting them raises churn.
- product: the contact lifts the adoption hazard of the campaign's product for two
  months (the simulator's own campaign effect, `hazards.ADOPT_CAMPAIGN`).

Each member's true effect on the campaign's 90-day outcome (probability with the
contact minus without, from the snapshot at the list date, `hazards.ninety_days`) is
written to the raw table `campaign_truth.parquet` (beside `truth/`), for the control group too (what the
contact would have done), so the true average effect of the list is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.domain import PROPENSITY_PRODUCTS, SEGMENTS
from clm.errors import ClmError

if TYPE_CHECKING:
    import pyarrow as pa

    from clm.settings import Settings
    from features.simulation.bank import ChunkBank
    from features.simulation.population import Calendar

__all__ = ["ExecutionError", "Executor", "chunk_ranges", "load_executor"]

# Engagement lift of a retention contact by segment (SEGMENTS order: retiree,
# middle_class, young_parents, payroll, young_digital) through a personal channel.
RETENTION_LIFT = np.array([0.9, 0.6, 0.4, 0.7, -0.4])
# Digital channels reach less, and do not annoy young digital customers.
CHANNEL_REACH = {"call": 1.0, "branch": 1.0, "app_push": 0.5, "sms": 0.3}
DIGITAL_LIFT_YOUNG = 0.3
CONTACT_DAY = 3
CAMPAIGN_CHANNELS = ("branch", "call", "app_push", "sms")  # features.simulation.tables order


class ExecutionError(ClmError):
    """The campaign cannot be executed in this simulation."""


@dataclass(frozen=True)
class BankOrigin:
    """The simulation a campaign's list was drawn on (from its raw/meta.json)."""

    seed: int
    customers: int
    months: int
    start_month: str
    scenario: str
    shock_month_index: int | None


def chunk_ranges(signups: np.ndarray, months_before: int, chunk: int) -> list[tuple[int, int]]:
    """Customer number ranges per chunk: the customers of a `months_before`-month run in
    that run's own chunks (so their generators are the same), then the later arrivals."""
    total = len(signups)
    kept = int(np.sum(signups < months_before))
    ranges = [(lo, min(lo + chunk, kept)) for lo in range(0, kept, chunk)]
    ranges += [(lo, min(lo + chunk, total)) for lo in range(kept, total, chunk)]
    return ranges


@dataclass
class Executor:
    campaign_id: int
    name: str
    measure: str  # "retention" or a product
    channel: str
    list_month: int  # month index of the list date; contacts in the month after
    origin: BankOrigin
    treatment: frozenset[str]
    control: frozenset[str]

    def __post_init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @property
    def product_index(self) -> int | None:
        """Index in PROPENSITY_PRODUCTS of the campaign's product (None for retention)."""
        return None if self.measure == "retention" else PROPENSITY_PRODUCTS.index(self.measure)

    def check(self, *, seed: int, customers: int, months: int, start_month: str,
              scenario: str, shock_month: int | None) -> None:  # fmt: skip
        o = self.origin
        asked = {"seed": seed, "customers": customers, "start month": start_month,
                 "scenario": scenario, "shock month": shock_month}  # fmt: skip
        drawn = {"seed": o.seed, "customers": o.customers, "start month": o.start_month,
                 "scenario": o.scenario, "shock month": o.shock_month_index}  # fmt: skip
        wrong = [
            f"{k} {asked[k]} (the list's bank: {drawn[k]})" for k in asked if asked[k] != drawn[k]
        ]
        if wrong:
            raise ExecutionError(
                f"campaign {self.campaign_id} was drawn on another bank; --execute needs the same "
                f"simulation with more months: {', '.join(wrong)}"
            )
        if months < o.months:
            raise ExecutionError(
                f"--months {months} is shorter than the bank campaign {self.campaign_id} was "
                f"drawn on ({o.months}); give at least {o.months + 3} to see 90-day outcomes"
            )
        if self.list_month + 1 >= months:
            raise ExecutionError(
                f"campaign {self.campaign_id}'s contact month is after the simulated period; "
                f"give --months {self.list_month + 4} or more"
            )

    def after_month(self, bank: ChunkBank, ids: pa.Array, m: int, calendar: Calendar) -> None:
        """Called after each simulated month of a chunk: contacts the treatment group at the
        end of the list month and records every member's true effect."""
        if m != self.list_month:
            return
        from features.simulation import hazards as hz

        names = np.array([str(x) for x in ids.to_pylist()], dtype=object)
        member = np.flatnonzero(np.isin(names, list(self.treatment | self.control)))
        if len(member) == 0:
            return
        treated = np.isin(names[member], list(self.treatment))
        alive = bank.churn_month[member] > m
        shocked = bank.shock_month is not None and m >= bank.shock_month
        j = self.product_index

        def outcome(snapshot: hz.Snapshot) -> np.ndarray:
            p_churn, p_adopt = hz.ninety_days(snapshot)
            return p_churn[member] if j is None else np.nan_to_num(p_adopt[member, j], nan=0.0)

        untreated = outcome(bank.snapshot(m, shocked))
        saved = bank.engagement.copy(), bank.campaign_until.copy()
        self._contact(bank, member, j)
        with_contact = outcome(bank.snapshot(m, shocked))
        # Put it back, then contact only the living treatment group for real.
        bank.engagement, bank.campaign_until = saved
        contacted = member[treated & alive]
        self._contact(bank, contacted, j)
        bank.next_churn, bank.next_adopt = bank._hazards_for(m + 1)
        effect = np.where(alive, with_contact - untreated, 0.0)
        contact_day = int(calendar.month_start(m + 1)) + CONTACT_DAY - 1
        bank._campaign(
            member[alive],
            m + 1,
            np.full(int(alive.sum()), CONTACT_DAY),
            self.name,
            -1 if j is None else j + 1,
            treated[alive].astype(np.int64),
            channel=CAMPAIGN_CHANNELS.index(self.channel),
        )
        for k, i in enumerate(member):
            self.rows.append(
                {
                    "customer_id": str(names[i]),
                    "campaign_id": self.campaign_id,
                    "group": "treatment" if treated[k] else "control",
                    "contacted": bool(treated[k] and alive[k]),
                    "contact_date": date.fromordinal(date(1970, 1, 1).toordinal() + contact_day),
                    "p_outcome_untreated": float(untreated[k]),
                    "p_outcome_treated": float(with_contact[k]),
                    "true_effect": float(effect[k]),
                }
            )

    def _contact(self, bank: ChunkBank, idx: np.ndarray, j: int | None) -> None:
        if len(idx) == 0:
            return
        if j is None:
            bank.engagement[idx] += retention_lift(bank.pop.segment[idx], self.channel)
        else:
            bank.campaign_until[idx, j] = np.maximum(
                bank.campaign_until[idx, j], self.list_month + 2
            )

    def truth_table(self) -> pa.Table:
        import pyarrow as pa

        schema = pa.schema(
            [
                ("customer_id", pa.string()),
                ("campaign_id", pa.int64()),
                ("group", pa.string()),
                ("contacted", pa.bool_()),
                ("contact_date", pa.date32()),
                ("p_outcome_untreated", pa.float64()),
                ("p_outcome_treated", pa.float64()),
                ("true_effect", pa.float64()),
            ]
        )
        return pa.Table.from_pylist(
            sorted(self.rows, key=lambda r: r["customer_id"]), schema=schema
        )

    def meta(self) -> dict[str, Any]:
        members = len(self.rows)
        return {
            "campaign_id": self.campaign_id,
            "name": self.name,
            "measure": self.measure,
            "members": members,
            "contacted": sum(r["contacted"] for r in self.rows),
            "true_effect": (
                round(sum(r["true_effect"] for r in self.rows) / members, 6) if members else None
            ),
        }


def retention_lift(segment: np.ndarray, channel: str) -> np.ndarray:
    """Engagement lift of a retention contact per customer (segment codes)."""
    lift = RETENTION_LIFT[segment] * CHANNEL_REACH[channel]
    if channel in ("app_push", "sms"):
        lift = np.where(segment == SEGMENTS.index("young_digital"), DIGITAL_LIFT_YOUNG, lift)
    return lift


def load_executor(settings: Settings, campaign_id: int, start_month: str) -> Executor:
    """The campaign from the registry, ready to run inside `run_simulation`."""
    from campaigns.registry import Registry

    registry = Registry.for_settings(settings)
    try:
        campaign = registry.campaign(campaign_id)
        members = registry.members(campaign_id)
    finally:
        registry.close()
    origin = (campaign.details or {}).get("bank")
    if not origin or origin.get("source") != "simulator":
        raise ExecutionError(
            f"campaign {campaign_id} was drawn on a bank's own data, not a simulated bank; "
            "execute it through your CRM (`clm campaign export`)"
        )
    if origin.get("executed_campaign"):
        executed = origin["executed_campaign"].get("campaign_id")
        raise ExecutionError(
            f"campaign {campaign_id} was drawn on a simulated bank that had executed campaign "
            f"{executed}; the simulator replays one campaign at a time: draw the list on a plain "
            "simulation (`clm simulate` without --execute, then `clm features build`)"
        )
    if campaign.channel not in CAMPAIGN_CHANNELS:
        raise ExecutionError(
            f"campaign {campaign_id}: channel {campaign.channel!r} cannot be simulated"
        )
    start = np.datetime64(start_month, "M")
    list_month = int((np.datetime64(campaign.as_of.isoformat()[:7], "M") - start).astype(int))
    return Executor(
        campaign_id=campaign_id,
        name=campaign.name,
        measure=campaign.measure,
        channel=campaign.channel,
        list_month=list_month,
        origin=BankOrigin(
            seed=int(origin["seed"]),
            customers=int(origin["customers"]),
            months=int(origin["months"]),
            start_month=str(origin["start_month"]),
            scenario=str(origin["scenario"]),
            shock_month_index=origin.get("shock_month_index"),
        ),
        treatment=frozenset(m.customer_id for m in members if m.group == "treatment"),
        control=frozenset(m.customer_id for m in members if m.group == "control"),
    )
