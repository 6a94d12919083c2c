"""The campaign step of `clm demo`: one retention list, executed by the simulated bank,
evaluated against its control group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clm.settings import Settings

__all__ = ["demo_campaign"]

EXTRA_MONTHS = 3


def demo_campaign(
    settings: Settings, *, as_of: str, customers: int, months: int, seed: int
) -> dict[str, Any]:
    """Create (half held out) -> export -> the bank executes it -> features rebuilt ->
    evaluate; returns the evaluation (with the report path)."""
    from campaigns.evaluation import run_evaluation
    from campaigns.lists import CampaignSpec, create_campaign, export_treatment
    from campaigns.registry import Registry
    from features.pipeline import run_build
    from features.simulator import run_simulation

    registry = Registry.for_settings(settings)
    try:
        name = f"demo-retention-{as_of}"
        existing = [c.id for c in registry.campaigns() if c.name == name]
        campaign_id = (
            existing[0]
            if existing
            else create_campaign(
                settings,
                registry,
                CampaignSpec(
                    name=name,
                    as_of=as_of,
                    scene="lifecycle",
                    select="churn_probability > 0.02",
                    holdout=0.5,
                    seed=seed,
                    channel="call",
                ),
            )
        )
        export = settings.home / "campaigns" / f"campaign-{campaign_id}.csv"
        export_treatment(registry, campaign_id, export)
    finally:
        registry.close()
    run_simulation(
        settings,
        customers=customers,
        months=months + EXTRA_MONTHS,
        seed=seed,
        start_month="2024-01",
        execute=campaign_id,
        progress=False,
    )
    run_build(settings, progress=False)
    result = run_evaluation(settings, campaign_id, horizon_days=90)
    result["export"] = str(export)
    return result
