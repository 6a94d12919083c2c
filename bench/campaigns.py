"""Benchmark: are campaign groups balanced, and do evaluation intervals cover the truth?

For each bank seed: simulate a small bank, build features, train the three families
(one Optuna trial: the list only needs a ranking), score the last month end once; then
for each draw seed: draw a retention list with a holdout (fresh registry), measure the
balance of the groups (control share vs the holdout; standardized mean differences of
value tier, stage and churn score), let the simulator execute it (same seed, 3 more
months) and evaluate it against the simulator's true effect.

Goals (issue 13): control share within ±1 pp of the holdout; SMD < 0.05 on value tier,
stage and churn score; the 95 % interval covers the true effect in ≥ 90 % of draws.
The baseline for balance is a simple (unstratified) random draw of the same share.

    flock /tmp/clm-heavy.lock .venv/bin/python -m bench.campaigns --banks 3 --draws 10
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def smd(x: np.ndarray, control: np.ndarray) -> float:
    """|mean(treatment) - mean(control)| / pooled standard deviation."""
    a, b = x[~control], x[control]
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float(abs(a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0


def balance(members: Any, control: np.ndarray, holdout: float) -> dict[str, float]:
    return {
        "share_gap_pp": abs(float(control.mean()) - holdout) * 100,
        "smd_value_tier": smd(members["value_tier_code"].to_numpy(float), control),
        "smd_stage": smd(members["stage_code"].to_numpy(float), control),
        "smd_churn": smd(members["churn_probability"].to_numpy(float), control),
    }


def run_bank(
    seed: int, draws: int, customers: int, months: int, holdout: float, work: Path
) -> list[dict[str, Any]]:
    from campaigns.evaluation import evaluate_campaign
    from campaigns.lists import (
        CampaignSpec,
        assign_groups,
        bank_origin,
        list_strata,
        record_campaign,
        score_month,
        select_members,
    )
    from campaigns.registry import Registry
    from clm.settings import Settings
    from features.pipeline import run_build
    from features.simulator import run_simulation
    from training.pipeline import run_train

    home = work / f"bank-{seed}"
    settings = Settings.load(home=home, env={})
    run_simulation(settings, customers=customers, months=months, seed=seed, progress=False)
    run_build(settings, progress=False)
    run_train(settings, model="all", trials=1, progress=False)
    last = f"{np.datetime64('2024-01', 'M') + months}"
    as_of = str(np.datetime64(f"{last}-01") - np.timedelta64(1, "D"))
    month = score_month(settings, as_of)
    origin = bank_origin(settings)
    shutil.copytree(settings.raw_dir, home / "raw.orig")
    rows = []
    for draw in range(draws):
        spec = CampaignSpec(
            name=f"bench-{seed}-{draw}",
            as_of=as_of,
            scene="lifecycle",
            select="churn_probability > 0",
            holdout=holdout,
            seed=1000 + draw,
        )
        registry = Registry(f"sqlite:///{home / f'registry-{draw}.db'}")
        members, _ = select_members(month.frame, spec, [], month.snapshot.date(), 2)
        control = assign_groups(list_strata(members), holdout, spec.seed)
        simple = np.random.default_rng(spec.seed).random(len(members)) < holdout
        started = time.perf_counter()
        campaign_id = record_campaign(
            registry,
            spec,
            month,
            monthly_cap=2,
            running_days=90,
            reasons=lambda rows: ["bench"] * len(rows),
            bank=origin,
        )
        run_simulation(
            settings,
            customers=customers,
            months=months + 3,
            seed=seed,
            execute=campaign_id,
            progress=False,
        )
        result = evaluate_campaign(settings, registry, campaign_id, 90)
        seconds = time.perf_counter() - started
        registry.close()
        shutil.rmtree(settings.raw_dir)
        shutil.copytree(home / "raw.orig", settings.raw_dir)
        row = {
            "bank_seed": seed,
            "draw": draw,
            "members": len(members),
            **balance(members, control, holdout),
            **{f"simple_{k}": v for k, v in balance(members, simple, holdout).items()},
            "effect": result["effect"],
            "ci_low": result["ci_low"],
            "ci_high": result["ci_high"],
            "p_value": result["p_value"],
            "true_effect": result["true_effect"],
            "covers": result["covers_truth"],
            "seconds": seconds,
        }
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
        sys.stdout.flush()
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--banks", type=int, default=3, help="bank seeds (7, 8, ...)")
    parser.add_argument("--draws", type=int, default=10, help="lists drawn per bank")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--holdout", type=float, default=0.5)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="clm-bench-campaigns-"))
    rows: list[dict[str, Any]] = []
    for seed in range(7, 7 + args.banks):
        rows += run_bank(seed, args.draws, args.customers, args.months, args.holdout, work)
    covered = [r["covers"] for r in rows if r["covers"] is not None]
    summary = {
        "draws": len(rows),
        "holdout": args.holdout,
        "members_median": statistics.median(r["members"] for r in rows),
        "coverage": sum(covered) / len(covered) if covered else None,
        "significant_share": sum(r["p_value"] < 0.05 for r in rows) / len(rows),
        "true_effect_median": statistics.median(r["true_effect"] for r in rows),
        "seconds_per_draw_median": statistics.median(r["seconds"] for r in rows),
    }
    for key in ("share_gap_pp", "smd_value_tier", "smd_stage", "smd_churn"):
        for prefix in ("", "simple_"):
            values = [r[prefix + key] for r in rows]
            summary[f"{prefix}{key}_median"] = statistics.median(values)
            summary[f"{prefix}{key}_max"] = max(values)
    print(
        json.dumps(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}, indent=2
        )
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
