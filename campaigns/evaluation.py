"""`clm campaign evaluate`: did the campaign work? Treatment against its randomized control.

The outcome of each member over `horizon_days` after the list date comes from the raw
tables, with the definitions of the labels (features/pipeline.py): a retention
campaign's outcome is churn (no holding open at the end of the window), a product
campaign's is opening the product within the window. Then:

- intent-to-treat: the outcome rate in treatment minus control (`effect`), its 95 %
  confidence interval (normal approximation, unpooled variance), the two-sided p-value
  (pooled z-test) and the smallest effect this sample could have detected (80 % power);
  "not significant" is said plainly when the interval holds zero;
- the effect on the treated, when the contact log says who was actually reached
  (the raw `campaigns` table: the simulator's, or a CRM's ingested contacts):
  intent-to-treat divided by the share of the treatment group reached (Bloom);
- the effect by decile of the ranking score and by segment (value tier, stage);
- the Qini curve of the ranking: cumulative extra successes (customers kept, or
  products opened) against contacting the same number at random;
- `true_effect`: the mean of the members' true effects when the simulator executed
  the campaign (raw `campaign_truth.parquet`), 90-day horizon only.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.errors import ClmError

if TYPE_CHECKING:
    import pandas as pd

    from campaigns.registry import Campaign, Registry
    from clm.settings import Settings

__all__ = ["EvaluationError", "diff_in_rates", "evaluate_campaign", "qini_curve"]

Z95 = 1.959963984540054
Z80 = 0.8416212335729143
ALPHA = 0.05


class EvaluationError(ClmError):
    """The campaign cannot be evaluated yet (outcomes not known, no raw data)."""


def diff_in_rates(y_t: np.ndarray, y_c: np.ndarray) -> dict[str, Any]:
    """Treatment rate − control rate of a 0/1 outcome, with its 95 % CI and p-value."""
    n_t, n_c = len(y_t), len(y_c)
    if n_t == 0 or n_c == 0:
        return {
            "n_treatment": n_t,
            "n_control": n_c,
            "rate_treatment": float(np.mean(y_t)) if n_t else None,
            "rate_control": float(np.mean(y_c)) if n_c else None,
            "effect": None,
            "ci_low": None,
            "ci_high": None,
            "p_value": None,
            "significant": False,
        }
    p_t, p_c = float(np.mean(y_t)), float(np.mean(y_c))
    effect = p_t - p_c
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    pooled = (p_t * n_t + p_c * n_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    p_value = 1.0 if se0 == 0 else math.erfc(abs(effect) / se0 / math.sqrt(2))
    return {
        "n_treatment": n_t,
        "n_control": n_c,
        "rate_treatment": p_t,
        "rate_control": p_c,
        "effect": effect,
        "ci_low": effect - Z95 * se,
        "ci_high": effect + Z95 * se,
        "p_value": p_value,
        "significant": p_value < ALPHA,
        "min_detectable_effect": (Z95 + Z80) * (se0 if se0 > 0 else se),
    }


def qini_curve(
    treated: np.ndarray, success: np.ndarray, points: int = 50
) -> dict[str, list[float] | float]:
    """Qini curve of a ranking (rows already in rank order): at each share of the list,
    successes in treatment minus control successes scaled to the treatment count."""
    n = len(treated)
    t = np.cumsum(treated)
    c = np.cumsum(~treated)
    st = np.cumsum(success & treated)
    sc = np.cumsum(success & ~treated)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(c > 0, st - sc * t / np.maximum(c, 1), st)
    ks = np.unique(np.linspace(0, n, points + 1).astype(int))
    share = ks / max(n, 1)
    values = np.concatenate([[0.0], q])[ks]
    total = float(values[-1]) if len(values) else 0.0
    # Area between the curve and the straight line of random targeting, per customer.
    area = float(np.trapezoid(values - share * total, share)) if n else 0.0
    return {
        "share": share.round(4).tolist(),
        "qini": values.round(3).tolist(),
        "random": (share * total).round(3).tolist(),
        "qini_coefficient": area / max(n, 1),
    }


def _raw_period_end(settings: Settings) -> date | None:
    meta_path = settings.raw_dir / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        end = meta.get("end_month")
        if end:
            first = date.fromisoformat(f"{end}-01")
            return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return None


def member_outcomes(
    settings: Settings, campaign: Campaign, customer_ids: list[str], horizon_days: int
) -> np.ndarray:
    """0/1 outcome of each member in (list date, list date + horizon]."""
    import pyarrow.parquet as pq

    start = campaign.as_of + timedelta(days=1)
    end = start + timedelta(days=horizon_days)
    data_end = _raw_period_end(settings)
    if data_end is not None and end - timedelta(days=1) > data_end:
        raise EvaluationError(
            f"campaign {campaign.id}: a {horizon_days}-day horizon needs data through "
            f"{end - timedelta(days=1)}, but the raw data ends {data_end}; wait, or simulate "
            "more months (`clm simulate ... --execute`), or use a shorter --horizon-days"
        )
    path = settings.raw_dir / "holdings.parquet"
    if not path.exists():
        raise EvaluationError(
            f"{path} does not exist: outcomes are read from the holdings table "
            "(simulate, or ingest --holdings)"
        )
    holdings = pq.read_table(
        path, columns=["customer_id", "product", "opened_date", "closed_date"]
    ).to_pandas()
    holdings = holdings[holdings["customer_id"].isin(set(customer_ids))]
    opened = holdings["opened_date"]
    closed = holdings["closed_date"]
    if campaign.measure == "retention":
        still = holdings[(opened < end) & (closed.isna() | (closed >= end))]
        kept = set(still["customer_id"])
        return np.array([c not in kept for c in customer_ids])
    got = holdings[(holdings["product"] == campaign.measure) & (opened >= start) & (opened < end)]
    adopters = set(got["customer_id"])
    return np.array([c in adopters for c in customer_ids])


def _contacted(settings: Settings, campaign: Campaign) -> set[str] | None:
    """Who the contact log says was reached for this campaign (None: no log for it)."""
    import pyarrow.parquet as pq

    path = settings.raw_dir / "campaigns.parquet"
    if not path.exists():
        return None
    log = pq.read_table(path, columns=["customer_id", "campaign", "group"]).to_pandas()
    rows = log[log["campaign"] == campaign.name]
    if rows.empty:
        return None
    return set(rows.loc[rows["group"] == "treatment", "customer_id"])


def _true_effect(settings: Settings, campaign_id: int, members: pd.DataFrame) -> float | None:
    import pyarrow.parquet as pq

    path = settings.raw_dir / "campaign_truth.parquet"
    if not path.exists():
        return None
    truth = pq.read_table(path).to_pandas()
    truth = truth[truth["campaign_id"] == campaign_id]
    if truth.empty:
        return None
    merged = members[["customer_id"]].merge(truth, on="customer_id", how="left")
    return float(merged["true_effect"].fillna(0.0).mean())


def evaluate_campaign(
    settings: Settings, registry: Registry, campaign_id: int, horizon_days: int = 90
) -> dict[str, Any]:
    """The evaluation as `clm campaign evaluate --json` prints it (not yet recorded)."""
    import pandas as pd

    if horizon_days < 1:
        raise EvaluationError(f"--horizon-days {horizon_days}: must be at least 1")
    campaign = registry.campaign(campaign_id)
    rows = registry.members(campaign_id)
    members = pd.DataFrame(
        {
            "customer_id": [m.customer_id for m in rows],
            "group": [m.group for m in rows],
            "rank": [m.rank for m in rows],
            "score": [m.score for m in rows],
            "stratum": [m.stratum for m in rows],
        }
    ).sort_values("rank", kind="stable")
    members["outcome"] = member_outcomes(
        settings, campaign, members["customer_id"].tolist(), horizon_days
    )
    treated = (members["group"] == "treatment").to_numpy()
    y = members["outcome"].to_numpy(bool)
    outcome = "churn" if campaign.measure == "retention" else f"adopt_{campaign.measure}"
    result: dict[str, Any] = {
        "campaign_id": campaign_id,
        "name": campaign.name,
        "as_of": campaign.as_of.isoformat(),
        "horizon_days": horizon_days,
        "outcome": outcome,
        # A retention campaign works when it lowers churn: a negative effect is good.
        "good_direction": "negative" if outcome == "churn" else "positive",
        **diff_in_rates(y[treated], y[~treated]),
    }
    contacted = _contacted(settings, campaign)
    result["treated"] = None
    if contacted is not None:
        ids = members["customer_id"].to_numpy()
        reached = np.isin(ids, list(contacted))
        compliance = float(reached[treated].mean()) if treated.any() else 0.0
        result["treated"] = {
            "reached_share": compliance,
            "control_reached": int(reached[~treated].sum()),
            "effect": result["effect"] / compliance
            if compliance and result["effect"] is not None
            else None,
            "ci_low": result["ci_low"] / compliance
            if compliance and result["ci_low"] is not None
            else None,
            "ci_high": result["ci_high"] / compliance
            if compliance and result["ci_high"] is not None
            else None,
        }
    true_effect = _true_effect(settings, campaign_id, members) if horizon_days == 90 else None
    result["true_effect"] = true_effect
    result["covers_truth"] = (
        None
        if true_effect is None or result["ci_low"] is None
        else bool(result["ci_low"] <= true_effect <= result["ci_high"])
    )
    # By decile of the ranking (1 = the top tenth of the list).
    n = len(members)
    decile = (np.arange(n) * 10 // max(n, 1)) + 1
    result["by_decile"] = [
        {"decile": int(d), **diff_in_rates(y[(decile == d) & treated], y[(decile == d) & ~treated])}
        for d in range(1, 11)
        if (decile == d).any()
    ]
    tiers = members["stratum"].str.split("/").str[0].to_numpy()
    stages = members["stratum"].str.split("/").str[1].to_numpy()
    result["by_segment"] = {
        name: [
            {name: str(v), **diff_in_rates(y[(values == v) & treated], y[(values == v) & ~treated])}
            for v in sorted(set(values.tolist()))
        ]
        for name, values in (("value_tier", tiers), ("stage", stages))
    }
    success = ~y if outcome == "churn" else y
    result["qini"] = qini_curve(treated, success)
    result["verdict"] = verdict(result)
    return result


def verdict(r: dict[str, Any]) -> str:
    """One honest sentence for the strategy owner."""
    if r["effect"] is None:
        return "cannot tell: one of the groups is empty"
    what = "churn rate" if r["outcome"] == "churn" else "adoption rate"
    pp = f"{r['effect'] * 100:+.1f} pp {what} ({r['ci_low'] * 100:+.1f} to {r['ci_high'] * 100:+.1f})"
    if not r["significant"]:
        return (
            f"not significant: {pp}, p = {r['p_value']:.2f}; the interval holds zero, so this "
            f"list cannot tell whether the contact helped (it could detect about "
            f"{r['min_detectable_effect'] * 100:.1f} pp)"
        )
    good = (r["effect"] < 0) == (r["good_direction"] == "negative")
    return f"{'worked' if good else 'backfired'}: {pp}, p = {r['p_value']:.3g}"


def run_evaluation(
    settings: Settings, campaign_id: int, *, horizon_days: int = 90, mlflow_run: bool = True
) -> dict[str, Any]:
    """Evaluate, write the HTML report, log the MLflow run and record the evaluation."""
    from campaigns.lists import campaign_summary
    from campaigns.registry import Registry
    from campaigns.report import log_mlflow_run, write_html

    registry = Registry.for_settings(settings)
    try:
        result = evaluate_campaign(settings, registry, campaign_id, horizon_days)
        summary = campaign_summary(registry, campaign_id)
        report = write_html(
            result,
            summary,
            settings.reports_dir / "campaigns" / f"campaign-{campaign_id}-{horizon_days}d.html",
        )
        result["report"] = str(report)
        result["mlflow_run_id"] = (
            log_mlflow_run(settings, result, summary, report) if mlflow_run else None
        )
        result["evaluation_id"] = registry.add_evaluation(
            campaign_id, horizon_days, result, str(report), result["mlflow_run_id"]
        )
    finally:
        registry.close()
    return result
