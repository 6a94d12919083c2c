"""The evaluation's outputs: a self-contained HTML report (charts inlined) and an MLflow run."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clm.settings import Settings

__all__ = ["log_mlflow_run", "write_html"]

EXPERIMENT = "clm-campaigns"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(r: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    fig, ax = plt.subplots(figsize=(4.5, 3))
    rates = [r["rate_treatment"] or 0.0, r["rate_control"] or 0.0]
    ax.bar(["treatment", "control"], [x * 100 for x in rates], color=["#2a6f97", "#adb5bd"])
    ax.set_ylabel(f"{r['outcome']} rate (%)")
    ax.set_title("Outcome rate by group")
    charts.append(("Outcome rate by group", _png(fig)))

    deciles = [d for d in r["by_decile"] if d["effect"] is not None]
    if deciles:
        fig, ax = plt.subplots(figsize=(6, 3))
        x = [d["decile"] for d in deciles]
        e = [d["effect"] * 100 for d in deciles]
        err = [
            [(d["effect"] - d["ci_low"]) * 100 for d in deciles],
            [(d["ci_high"] - d["effect"]) * 100 for d in deciles],
        ]
        ax.errorbar(x, e, yerr=err, fmt="o", color="#2a6f97", capsize=3)
        ax.axhline(0, color="#666", lw=0.8)
        ax.set_xlabel("decile of the ranking score (1 = top)")
        ax.set_ylabel("effect (pp)")
        ax.set_title("Effect by decile, 95 % intervals")
        charts.append(("Effect by decile", _png(fig)))

    q = r["qini"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(q["share"], q["qini"], color="#2a6f97", label="ranking")
    ax.plot(q["share"], q["random"], color="#adb5bd", ls="--", label="random")
    ax.set_xlabel("share of the list contacted (by rank)")
    ax.set_ylabel("extra successes vs. control")
    ax.set_title(f"Qini curve (coefficient {q['qini_coefficient']:.4f})")
    ax.legend()
    charts.append(("Qini curve", _png(fig)))
    return charts


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.2f} pp"


def _rate(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def _table(rows: list[dict[str, Any]], key: str) -> str:
    head = (
        f"<tr><th>{html.escape(key)}</th><th>n treatment</th><th>n control</th>"
        "<th>rate treatment</th><th>rate control</th><th>effect</th><th>95 % CI</th><th>p</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(str(r[key]))}</td><td>{r['n_treatment']}</td>"
        f"<td>{r['n_control']}</td><td>{_rate(r['rate_treatment'])}</td>"
        f"<td>{_rate(r['rate_control'])}</td><td>{_pct(r['effect'])}</td>"
        f"<td>{_pct(r['ci_low'])} … {_pct(r['ci_high'])}</td><td>{_p(r['p_value'])}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def write_html(result: dict[str, Any], campaign: dict[str, Any], path: Path) -> Path:
    """The report a strategy owner reads: verdict, rates, intervals, charts."""
    from clm import atomic

    r = result
    images = "".join(
        f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"></figure>'
        for t, b in _charts(r)
    )
    truth = (
        ""
        if r["true_effect"] is None
        else f"<p>Simulator truth: the contact's true average effect on this list is "
        f"{_pct(r['true_effect'])}; the interval {'covers' if r['covers_truth'] else 'misses'} it.</p>"
    )
    treated = ""
    if r.get("treated") and r["treated"]["effect"] is not None:
        t = r["treated"]
        treated = (
            f"<p>Reached {t['reached_share']:.1%} of the treatment group; effect on those reached "
            f"{_pct(t['effect'])} ({_pct(t['ci_low'])} … {_pct(t['ci_high'])}). "
            f"Control customers reached by mistake: {t['control_reached']}.</p>"
        )
    body = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Campaign {r["campaign_id"]}: {html.escape(r["name"])}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}}
.verdict{{font-size:1.2rem;padding:.6rem;background:#f1f3f5}}figure{{display:inline-block;margin:.5rem}}</style>
</head><body>
<h1>Campaign {r["campaign_id"]}: {html.escape(r["name"])}</h1>
<p>{html.escape(campaign["scene"])} campaign for {html.escape(campaign["measure"])} via
{html.escape(campaign["channel"])}; list drawn {r["as_of"]} with rule
<code>{html.escape(campaign["select"])}</code>, ranked by <code>{html.escape(campaign["rank_by"])}</code>;
control share {campaign["holdout"]:.0%} drawn at random within value tier × stage × rank fifth (seed {campaign["seed"]}).
Outcome: <b>{html.escape(r["outcome"])}</b> within {r["horizon_days"]} days (intent-to-treat: every member
counts in the group they were drawn into).</p>
<p class="verdict">{html.escape(r["verdict"])}</p>
<table><tr><th></th><th>members</th><th>{html.escape(r["outcome"])} rate</th></tr>
<tr><td>treatment</td><td>{r["n_treatment"]}</td><td>{(r["rate_treatment"] or 0):.2%}</td></tr>
<tr><td>control</td><td>{r["n_control"]}</td><td>{(r["rate_control"] or 0):.2%}</td></tr></table>
<p>Effect (treatment − control): <b>{_pct(r["effect"])}</b>, 95 % CI {_pct(r["ci_low"])} … {_pct(r["ci_high"])},
p = {_p(r["p_value"])}.</p>
{treated}{truth}
{images}
<h2>By decile of the ranking score</h2>{_table(r["by_decile"], "decile")}
<h2>By value tier</h2>{_table(r["by_segment"]["value_tier"], "value_tier")}
<h2>By stage at the list date</h2>{_table(r["by_segment"]["stage"], "stage")}
<p>Segment and decile effects are smaller samples: read their intervals, not their points.</p>
</body></html>
"""
    atomic.write_text(path, body)
    return path


def log_mlflow_run(
    settings: Settings, result: dict[str, Any], campaign: dict[str, Any], report: Path
) -> str:
    """One run in the `clm-campaigns` experiment: parameters, the effect, the report."""
    import tempfile

    from clm.mlflow_access import client, experiment_id

    mlflow = client(settings)
    run = mlflow.create_run(
        experiment_id(settings, EXPERIMENT, mlflow_client=mlflow),
        run_name=f"campaign-{result['campaign_id']}-{result['horizon_days']}d",
        tags={"campaign_id": str(result["campaign_id"]), "campaign": result["name"]},
    )
    run_id = str(run.info.run_id)
    for key in ("scene", "measure", "channel", "select", "rank_by", "holdout", "seed"):
        mlflow.log_param(run_id, key, str(campaign[key])[:500])
    mlflow.log_param(run_id, "horizon_days", result["horizon_days"])
    for key in ("effect", "ci_low", "ci_high", "p_value", "rate_treatment", "rate_control",
                "n_treatment", "n_control", "true_effect"):  # fmt: skip
        if result.get(key) is not None:
            mlflow.log_metric(run_id, key, float(result[key]))
    mlflow.log_metric(run_id, "qini_coefficient", float(result["qini"]["qini_coefficient"]))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "evaluation.json"
        data.write_text(json.dumps(result, indent=2, default=str))
        mlflow.log_artifact(run_id, str(data))
        mlflow.log_artifact(run_id, str(report))
    mlflow.set_terminated(run_id)
    return run_id
