"""`clm campaign create | list | show | export | evaluate`: lists with a randomized holdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from clm.context import State, user_errors

campaign_app = typer.Typer(
    help="Strategy lists with a randomized control group, and their post-evaluation.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")


@campaign_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name, e.g. retain-declining-2025-06.")],
    as_of: Annotated[str, typer.Option("--as-of", help="List date YYYY-MM-DD (a month end).")],
    scene: Annotated[
        Literal["lifecycle", "product", "event"],
        typer.Option("--scene", help="What the campaign answers: a stage, a product, an event."),
    ],
    select: Annotated[
        str,
        typer.Option(
            "--select",
            help="Who is eligible, e.g. \"churn_probability > 0.2 and stage in ('declining', "
            "'dormant')\": scores, stage, value_tier, segment and features.",
        ),
    ],
    rank_by: Annotated[
        str | None,
        typer.Option(
            "--rank-by",
            help="Field to rank by, highest first ('-field' for lowest first). Default: "
            "churn_probability, or propensity_<product> for a product campaign.",
        ),
    ] = None,
    max_members: Annotated[
        int | None, typer.Option("--max", min=2, help="At most this many customers (both groups).")
    ] = None,
    holdout: Annotated[
        float, typer.Option("--holdout", help="Share kept uncontacted as the control group.")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the group draw.")] = 0,
    product: Annotated[
        str | None, typer.Option("--product", help="The product sold (product scene).")
    ] = None,
    channel: Annotated[
        Literal["call", "branch", "app_push", "sms"],
        typer.Option("--channel", help="How the treatment group is contacted."),
    ] = "call",
) -> None:
    """Draw a list from the month-end scores with a randomized, stratified control group; print its id."""
    state: State = ctx.obj
    with user_errors():
        from campaigns.lists import CampaignSpec, campaign_summary, create_campaign
        from campaigns.registry import Registry

        spec = CampaignSpec(
            name=name,
            as_of=as_of,
            scene=scene,
            select=select,
            rank_by=rank_by,
            max_members=max_members,
            holdout=holdout,
            seed=seed,
            product=product,
            channel=channel,
        )
        registry = Registry.for_settings(state.settings)
        campaign_id = create_campaign(state.settings, registry, spec)
        summary = campaign_summary(registry, campaign_id)
    counts = summary["counts"]
    typer.echo(
        f"campaign {campaign_id} {name!r}: {summary['n_treatment']:,} to contact, "
        f"{summary['n_control']:,} held out as control (contact month {summary['contact_month']}); "
        f"{counts.get('suppressed_running_campaign', 0):,} suppressed by running campaigns, "
        f"{counts.get('suppressed_contact_cap', 0):,} by the monthly contact cap",
        err=True,
    )
    typer.echo(campaign_id)


@campaign_app.command("list")
def list_campaigns(ctx: typer.Context) -> None:
    """Every campaign with its groups."""
    state: State = ctx.obj
    with user_errors():
        from campaigns.lists import campaign_summary
        from campaigns.registry import Registry

        registry = Registry.for_settings(state.settings)
        rows = [campaign_summary(registry, c.id) for c in registry.campaigns()]
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Campaigns")
    for column in ("id", "name", "scene", "measure", "as of", "treatment", "control", "status"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["scene"],
            r["measure"],
            r["as_of"],
            f"{r['n_treatment']:,}",
            f"{r['n_control']:,}",
            r["status"],
        )
    Console().print(table)


@campaign_app.command("show")
def show(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One campaign: its rule, groups, suppressions and evaluations."""
    state: State = ctx.obj
    with user_errors():
        from campaigns.lists import campaign_summary
        from campaigns.registry import Registry

        summary = campaign_summary(Registry.for_settings(state.settings), campaign_id)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if key != "evaluations":
            typer.echo(f"{key:>16}: {value}")
    for e in summary["evaluations"]:
        typer.echo(
            f"      evaluation: {e['horizon_days']} days, effect {e['effect']:+.4f} "
            f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}], p={e['p_value']:.3g} ({e['report']})"
        )


@campaign_app.command("export")
def export(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file for the CRM or dialer.")],
) -> None:
    """Write the treatment group (never the control group) with reasons in plain words."""
    state: State = ctx.obj
    with user_errors():
        from campaigns.lists import export_treatment
        from campaigns.registry import Registry

        rows = export_treatment(Registry.for_settings(state.settings), campaign_id, out)
    typer.echo(f"wrote {rows:,} customers to contact -> {out}")


@campaign_app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, help="Outcome window after the list date.")
    ] = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
    mlflow_run: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the evaluation as an MLflow run.")
    ] = True,
) -> None:
    """Treatment vs control: effect with 95 % CI and p-value, by decile and segment, Qini curve;
    an HTML report and an MLflow run."""
    state: State = ctx.obj
    with user_errors():
        from campaigns.evaluation import run_evaluation

        result = run_evaluation(
            state.settings, campaign_id, horizon_days=horizon_days, mlflow_run=mlflow_run
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(
        f"campaign {campaign_id} ({result['outcome']}, {horizon_days} days): "
        f"treatment {result['n_treatment']:,} at {result['rate_treatment']:.2%}, "
        f"control {result['n_control']:,} at {result['rate_control']:.2%}"
    )
    typer.echo(f"  {result['verdict']}")
    if result["true_effect"] is not None:
        typer.echo(f"  simulator truth: {result['true_effect'] * 100:+.2f} pp")
    typer.echo(f"  report: {result['report']}")
    if result.get("mlflow_run_id"):
        typer.echo(f"  MLflow run: {result['mlflow_run_id']}")
