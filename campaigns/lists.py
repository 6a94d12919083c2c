"""`clm campaign create`: a list drawn from the month-end scores, with its randomized holdout.

Steps, in order (each one a function below):
1. score every customer at the list date with the champions, as batch scoring does
   (`serving.batch`), and lay the scores next to the stage, tier and features;
2. keep the customers the selection expression accepts (never churned ones; for a
   product campaign never those who hold the product already);
3. suppress, inside one registry transaction: members (either group) of a running
   campaign with the same measure, and customers whose treatment contacts in the
   contact month reached the monthly cap;
4. rank, cap at `--max`, and draw the control group at random within strata of value
   tier x stage x fifth of the list by rank (so both groups have the same mix of tiers,
   stages and scores), reproducibly from the seed;
5. the reasons, in words, from the model's own per-feature contributions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.domain import PROPENSITY_PRODUCTS, SEGMENTS
from clm.errors import ClmError

if TYPE_CHECKING:
    import pandas as pd

    from campaigns.registry import Enrolment, Registry
    from clm.settings import Settings
    from serving.scoring import ModelSet

__all__ = [
    "CampaignError",
    "CampaignSpec",
    "ScoredMonth",
    "assign_groups",
    "create_campaign",
    "score_month",
    "select_members",
]

SCENES = ("lifecycle", "product", "event")
CHANNELS = ("call", "branch", "app_push", "sms")
REASONS_PER_MEMBER = 3


class CampaignError(ClmError):
    """A campaign cannot be created as asked (bad scene, product, field, empty list)."""


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    as_of: str
    scene: str
    select: str
    rank_by: str | None = None
    max_members: int | None = None
    holdout: float = 0.1
    seed: int = 0
    product: str | None = None
    channel: str = "call"

    @property
    def measure(self) -> str:
        return self.product if self.scene == "product" and self.product else "retention"

    @property
    def rank_field(self) -> str:
        if self.rank_by:
            return self.rank_by.lstrip("-")
        if self.scene == "product":
            return f"propensity_{self.product}"
        return "churn_probability"

    @property
    def rank_ascending(self) -> bool:
        return bool(self.rank_by and self.rank_by.startswith("-"))

    def validate(self) -> None:
        if not self.name.strip():
            raise CampaignError("the campaign needs a name")
        if self.scene not in SCENES:
            raise CampaignError(f"--scene {self.scene!r}: use one of {', '.join(SCENES)}")
        if self.scene == "product" and self.product is None:
            raise CampaignError(
                "--scene product needs --product (which product the campaign sells)"
            )
        if self.product is not None and self.product not in PROPENSITY_PRODUCTS:
            raise CampaignError(
                f"--product {self.product!r}: use one of {', '.join(PROPENSITY_PRODUCTS)}"
            )
        if self.channel not in CHANNELS:
            raise CampaignError(f"--channel {self.channel!r}: use one of {', '.join(CHANNELS)}")
        if not 0.0 < self.holdout < 1.0:
            raise CampaignError(
                f"--holdout {self.holdout}: the control share must be between 0 and 1 "
                "(e.g. 0.1 keeps a tenth of the list uncontacted)"
            )
        if self.max_members is not None and self.max_members < 2:
            raise CampaignError(f"--max {self.max_members}: a list needs at least 2 customers")


@dataclass
class ScoredMonth:
    """Every customer at one month end: scores, stage, tier, segment and features."""

    frame: pd.DataFrame
    matrix: np.ndarray  # (rows, len(models.union)) feature matrix in the frame's row order
    models: ModelSet
    snapshot: datetime  # first instant of the contact month
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def as_of(self) -> date:
        return (self.snapshot - timedelta(days=1)).date()


def score_month(settings: Settings, as_of: str) -> ScoredMonth:
    """Score every customer at the snapshot for `as_of` with the champion models."""
    import pandas as pd

    from clm.segments import names_from_codes
    from features.catalog import FEATURE_NAMES
    from serving.batch import feature_matrix, load_champions, parse_as_of, read_snapshot
    from serving.scoring import score

    parse_as_of(as_of)
    models = load_champions(settings)
    snapshot, table = read_snapshot(settings, as_of, list(FEATURE_NAMES))
    if table.num_rows == 0:
        raise CampaignError(f"no customers in the feature snapshot {snapshot:%Y-%m-%d}")
    ids = [str(c) for c in table["customer_id"].to_pylist()]
    matrix = feature_matrix(table, models.union)
    scored = score(models, ids, matrix, explain=False, build_results=False)
    frame = pd.DataFrame(
        {name: table[name].to_numpy(zero_copy_only=False) for name in FEATURE_NAMES}
    )
    frame = frame.astype(float)
    frame.insert(0, "customer_id", ids)
    frame["churn_probability"] = scored.churn
    for j, product in enumerate(PROPENSITY_PRODUCTS):
        frame[f"propensity_{product}"] = scored.propensity[:, j]
    frame["next_best_product"] = np.array(scored.next_best, dtype=object)
    frame["stage"] = names_from_codes(frame["stage_code"], "stage")
    frame["stage_next"] = np.array(scored.stage_next, dtype=object)
    frame["value_tier"] = names_from_codes(frame["value_tier_code"], "value_tier")
    codes = frame["segment_code"].to_numpy()
    valid = (codes >= 0) & (codes < len(SEGMENTS))
    frame["segment"] = np.where(
        valid,
        np.array([*SEGMENTS, "unknown"], dtype=object)[
            np.where(valid, codes, len(SEGMENTS)).astype(int)
        ],
        "unknown",
    )
    return ScoredMonth(frame, matrix, models, snapshot.astimezone(UTC), scored.versions)


def select_members(
    frame: pd.DataFrame,
    spec: CampaignSpec,
    enrolments: list[Enrolment],
    contact_month: date,
    monthly_cap: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The selected, unsuppressed, ranked and capped customers, and counts of who was left
    out and why. Raises on an unknown field (in --select or --rank-by) or an empty list."""
    from campaigns.expression import parse

    fields = [c for c in frame.columns if c != "customer_id"]
    if spec.rank_field not in fields:
        import difflib

        close = difflib.get_close_matches(spec.rank_field, fields, n=3)
        raise CampaignError(
            f"--rank-by names unknown field {spec.rank_field!r}"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
        )
    expression = parse(spec.select, fields)
    chosen = expression.evaluate(frame) & (frame["stage"].to_numpy() != "churned")
    counts = {"scored": len(frame), "matched": int(chosen.sum())}
    if spec.scene == "product":
        holds = frame[f"holds_{spec.product}"].to_numpy() >= 0.5
        counts["already_hold_product"] = int((chosen & holds).sum())
        chosen &= ~holds
    ids = frame["customer_id"].to_numpy()
    running = {e.customer_id for e in enrolments if e.measure == spec.measure}
    contacts: dict[str, int] = {}
    for e in enrolments:
        if e.group == "treatment" and e.contact_month == contact_month:
            contacts[e.customer_id] = contacts.get(e.customer_id, 0) + 1
    in_running = np.fromiter((i in running for i in ids), bool, len(ids))
    capped = np.fromiter((contacts.get(i, 0) >= monthly_cap for i in ids), bool, len(ids))
    counts["suppressed_running_campaign"] = int((chosen & in_running).sum())
    counts["suppressed_contact_cap"] = int((chosen & ~in_running & capped).sum())
    chosen &= ~in_running & ~capped
    members = frame.loc[chosen].copy()
    score = members[spec.rank_field].astype(float)
    members["score"] = score
    # Ties broken by customer id, so a list never depends on the feature table's row order.
    members = members.sort_values(
        ["score", "customer_id"], ascending=[spec.rank_ascending, True], na_position="last"
    )
    if spec.max_members is not None:
        members = members.head(spec.max_members)
    members["rank"] = np.arange(1, len(members) + 1)
    counts["members"] = len(members)
    if len(members) < 2:
        raise CampaignError(
            f"--select {spec.select!r} leaves {len(members)} customer(s) at {spec.as_of} "
            f"({counts['matched']} matched, {counts['suppressed_running_campaign']} in a running "
            f"campaign, {counts['suppressed_contact_cap']} at the monthly contact cap); "
            "a list with a control group needs at least 2"
        )
    return members.reset_index(drop=True), counts


RANK_BANDS = 5


def list_strata(members: pd.DataFrame) -> np.ndarray:
    """Each member's stratum: value tier / stage / fifth of the list by rank
    (`affluent/declining/q2`), so the groups match on tier, stage and score."""
    import pandas as pd

    n = len(members)
    band = (np.arange(n) * RANK_BANDS // max(n, 1)) + 1
    return (
        members["value_tier"].astype(str)
        + "/"
        + members["stage"].astype(str)
        + "/q"
        + pd.Series(band, index=members.index).astype(str)
    ).to_numpy()


def assign_groups(strata: np.ndarray, holdout: float, seed: int) -> np.ndarray:
    """True for the control group: within each stratum a random `holdout` share, the
    rounding carried from stratum to stratum so the whole list's share is exact.

    Reproducible: the same strata (in the same order), share and seed give the same draw.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 13])))
    control = np.zeros(len(strata), bool)
    carry = 0.0
    for stratum in sorted(set(strata.tolist())):
        where = np.flatnonzero(strata == stratum)
        wanted = holdout * len(where) + carry
        k = int(np.floor(wanted + rng.random()))  # randomized rounding keeps E[k] exact
        k = min(max(k, 0), len(where))
        carry = wanted - k
        control[rng.permutation(where)[:k]] = True
    return control


def create_campaign(settings: Settings, registry: Registry, spec: CampaignSpec) -> int:
    """Draw the list and its groups and record them; returns the campaign id."""
    from sqlalchemy import select

    from campaigns.reasons import member_reasons
    from campaigns.registry import Campaign

    spec.validate()
    with registry.reading() as session:
        if session.scalars(select(Campaign.id).where(Campaign.name == spec.name)).first():
            raise CampaignError(
                f"a campaign named {spec.name!r} exists already; choose another name"
            )
    month = score_month(settings, spec.as_of)
    return record_campaign(
        registry,
        spec,
        month,
        monthly_cap=settings.campaigns.monthly_contact_cap,
        running_days=settings.campaigns.running_days,
        reasons=lambda rows: member_reasons(month.models, month.matrix[rows], spec),
        bank=bank_origin(settings),
    )


BANK_KEYS = (
    "source",
    "seed",
    "customers",
    "months",
    "start_month",
    "scenario",
    "shock_month_index",
)


def bank_origin(settings: Settings) -> dict[str, Any] | None:
    """What `clm simulate --execute` needs to rebuild the bank the list is drawn on: the
    simulation's parameters from raw/meta.json (None for a bank's own data)."""
    import json

    path = settings.raw_dir / "meta.json"
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    if meta.get("source") != "simulator":
        return None
    return {key: meta.get(key) for key in BANK_KEYS}


def record_campaign(
    registry: Registry,
    spec: CampaignSpec,
    month: ScoredMonth,
    *,
    monthly_cap: int,
    running_days: int,
    reasons: Callable[[np.ndarray], list[str]],
    bank: dict[str, Any] | None = None,
) -> int:
    """Select, suppress, draw the groups and insert the campaign with its members, all in
    one registry transaction under the writer lock (so two lists drawn at once cannot
    both take a customer their suppression rules forbid). `reasons(rows)` words the
    reasons of the month's rows `rows`."""
    from campaigns.registry import Campaign, Member

    spec.validate()
    contact_month = month.snapshot.date()
    running_until = month.as_of + timedelta(days=running_days)
    with registry.writing() as session:
        enrolments = registry.enrolments(session, since=month.as_of)
        members, counts = select_members(month.frame, spec, enrolments, contact_month, monthly_cap)
        strata = list_strata(members)
        control = assign_groups(strata, spec.holdout, spec.seed)
        position = {c: i for i, c in enumerate(month.frame["customer_id"])}
        rows = np.array([position[c] for c in members["customer_id"]], dtype=np.intp)
        words = reasons(rows)
        campaign = Campaign(
            name=spec.name,
            scene=spec.scene,
            measure=spec.measure,
            product=spec.product,
            channel=spec.channel,
            as_of=month.as_of,
            contact_month=contact_month,
            running_until=running_until,
            select_expr=spec.select,
            rank_by=("-" if spec.rank_ascending else "") + spec.rank_field,
            max_members=spec.max_members,
            holdout=spec.holdout,
            seed=spec.seed,
            status="running",
            created_at=datetime.now(UTC),
            details={"model_versions": month.versions, "counts": counts, "bank": bank},
        )
        session.add(campaign)
        session.flush()
        session.add_all(
            Member(
                campaign_id=campaign.id,
                customer_id=str(customer),
                group="control" if is_control else "treatment",
                stratum=str(stratum),
                rank=int(rank),
                score=float(score) if np.isfinite(score) else 0.0,
                reason=reason,
            )
            for customer, is_control, stratum, rank, score, reason in zip(
                members["customer_id"],
                control,
                strata,
                members["rank"],
                members["score"],
                words,
                strict=True,
            )
        )
        return int(campaign.id)


def campaign_summary(registry: Registry, campaign_id: int) -> dict[str, Any]:
    """The campaign as `clm campaign show --json` prints it, with its group counts."""
    c = registry.campaign(campaign_id)
    counts = registry.group_counts(campaign_id)
    evaluations = registry.evaluations(campaign_id)
    return {
        "id": c.id,
        "name": c.name,
        "scene": c.scene,
        "measure": c.measure,
        "product": c.product,
        "channel": c.channel,
        "as_of": c.as_of.isoformat(),
        "contact_month": c.contact_month.isoformat()[:7],
        "running_until": c.running_until.isoformat(),
        "status": c.status,
        "select": c.select_expr,
        "rank_by": c.rank_by,
        "max": c.max_members,
        "holdout": c.holdout,
        "seed": c.seed,
        "created_at": c.created_at.isoformat(),
        "n_members": counts["treatment"] + counts["control"],
        "n_treatment": counts["treatment"],
        "n_control": counts["control"],
        "control_share": round(counts["control"] / max(1, sum(counts.values())), 4),
        "model_versions": (c.details or {}).get("model_versions", {}),
        "counts": (c.details or {}).get("counts", {}),
        "evaluations": [
            {
                "id": e.id,
                "created_at": e.created_at.isoformat(),
                "horizon_days": e.horizon_days,
                "effect": e.result.get("effect"),
                "ci_low": e.result.get("ci_low"),
                "ci_high": e.result.get("ci_high"),
                "p_value": e.result.get("p_value"),
                "report": e.report_path,
            }
            for e in evaluations
        ],
    }


EXPORT_COLUMNS = (
    "customer_id",
    "campaign_id",
    "campaign",
    "channel",
    "product",
    "contact_month",
    "priority",
    "score",
    "why",
)


def export_treatment(registry: Registry, campaign_id: int, out: Any) -> int:
    """Write the treatment group as CSV for a CRM or dialer (control members are never in
    it: they must not be contacted); returns the rows written. All or nothing."""
    import csv
    from pathlib import Path

    from clm import atomic

    c = registry.campaign(campaign_id)
    members = registry.members(campaign_id, group="treatment")
    with atomic.atomic_path(Path(out)) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(EXPORT_COLUMNS)
        for m in members:
            writer.writerow(
                [
                    m.customer_id,
                    c.id,
                    c.name,
                    c.channel,
                    c.product or "",
                    c.contact_month.isoformat()[:7],
                    m.rank,
                    f"{m.score:.4f}",
                    m.reason,
                ]
            )
    return len(members)
