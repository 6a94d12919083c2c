"""The risk report: one self-contained HTML page per model per period.

Written for model risk management, not for engineers: a verdict in plain words
first, then which versions served, the evidence they were promoted on, how far
inputs and scores moved (drift), how well the scores did once outcomes were
known (performance) and the data quality. No customer ids or other personal
data: only aggregates are rendered (tests check it). No external assets: the
CSS is inline, there is no script, so the file can be mailed or archived as is.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from clm.settings import Settings

VERDICT_WORDS = {
    "green": ("Stable", "Nothing moved beyond the tolerance. No action needed."),
    "amber": (
        "Watch",
        "Something moved noticeably but not enough to distrust the scores. Review it at the next "
        "monitoring meeting.",
    ),
    "red": (
        "Action needed",
        "The customers, the data or the model's behaviour changed materially. Investigate before "
        "relying on these scores for decisions; consider retraining or rolling back.",
    ),
    "grey": ("Not enough data", "Too few rows or outcomes to judge yet."),
}
COLOURS = {"green": "#1b7f3b", "amber": "#b86e00", "red": "#b3261e", "grey": "#6b6b6b"}
BACKGROUNDS = {"green": "#e6f4ea", "amber": "#fff4e0", "red": "#fce8e6", "grey": "#f1f1f1"}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#1f1f1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.muted{color:#666}.verdict{padding:1em 1.2em;border-radius:6px;margin:1em 0;border-left:8px solid}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-weight:600;font-size:.85em}
.explain{background:#f8f8f8;padding:.6em 1em;border-radius:4px;font-size:.92em}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}figure svg{max-width:100%;height:auto}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def badge(band: str) -> str:
    words = {"green": "stable", "amber": "watch", "red": "shifted", "grey": "n/a"}[band]
    return f'<span class="band" style="background:{COLOURS[band]}">{words}</span>'


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if number != number:  # NaN
        return "—"
    return f"{number:.{digits}f}"


def pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def td(text: str, numeric: bool = False) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def render_report(
    *,
    family: str,
    registered_name: str,
    period_label: str,
    champion_version: str,
    verdict: str,
    reasons: Sequence[str],
    served: Sequence[dict[str, Any]],
    registry: Sequence[dict[str, Any]],
    drift: dict[str, Any] | None,
    performance: dict[str, Any] | None,
    thresholds: dict[str, Any],
    generated: str,
    charts: dict[str, str] | None = None,
) -> str:
    """The HTML page (a string). Only aggregates go in: never pass row-level data
    (`charts` are SVG drawn from aggregates by monitoring.charts)."""
    title, meaning = VERDICT_WORDS[verdict]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(registered_name)} risk report {esc(period_label)}</title><style>{CSS}</style></head><body>",
        f"<h1>Model risk report: {esc(registered_name)} ({esc(family)})</h1>",
        f"<p class='muted'>Period: {esc(period_label)} · serving version {esc(champion_version)} · "
        f"generated {esc(generated)}</p>",
        f"<div class='verdict' style='border-color:{COLOURS[verdict]};background:{BACKGROUNDS[verdict]}'>"
        f"<strong style='color:{COLOURS[verdict]};font-size:1.2em'>Overall: {esc(title)}</strong><br>{esc(meaning)}",
    ]
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons[:15]) + "</ul>")
        if len(reasons) > 15:
            parts.append(f"<p>… and {len(reasons) - 15} more in the tables below.</p>")
    parts.append("</div>")
    parts.append(_charts_section(charts or {}))
    parts.append(_how_to_read(thresholds))
    parts.append(_versions_section(served, registry))
    parts.append(_drift_section(drift))
    parts.append(_performance_section(performance))
    parts.append(_quality_section(drift))
    parts.append("</body></html>")
    return "\n".join(parts)


CHART_TITLES = {
    "distribution": "Score distribution: validation sample vs this period",
    "top_psi": "Most moved inputs and scores (PSI; dashed lines: amber and red bands; tick: alarm level)",
    "trend": "Month by month: drift of the score, and AUC realised vs estimated before outcomes",
    "calibration": "Calibration by decile (matured outcomes; on the dashed line = well calibrated)",
    "band_mix": "Risk-band mix per month",
}


def _charts_section(charts: dict[str, str]) -> str:
    if not charts:
        return ""
    out = ["<h2>At a glance</h2><div class='charts'>"]
    for key, title in CHART_TITLES.items():
        if key in charts:
            out.append(f"<figure><figcaption>{esc(title)}</figcaption>{charts[key]}</figure>")
    out.append("</div>")
    return "\n".join(out)


def main_score(family: str, manifest: dict[str, Any]) -> str:
    """The score a family's charts follow (the churn probability, the first product's or stage's)."""
    from monitoring.inputs import score_columns

    return next(c for c in score_columns(family, manifest) if c != "stage_next_code")


def build_charts(
    *,
    family: str,
    reference: pd.DataFrame,
    manifest: dict[str, Any],
    current: pd.DataFrame,
    history: pd.DataFrame,
    drift: dict[str, Any] | None,
    performance: dict[str, Any],
    settings: Settings,
) -> dict[str, str]:
    """The report's charts, each from aggregates computed here (shares, PSI, AUC per month)."""
    import numpy as np

    from monitoring import charts
    from monitoring.psi import psi

    score = main_score(family, manifest)
    t = settings.monitoring
    out: dict[str, str] = {}
    ref_values = reference[score].to_numpy(dtype=float, na_value=np.nan)
    ref_values = ref_values[np.isfinite(ref_values)]

    def shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
        values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
        counts, _ = np.histogram(values, edges)
        return [float(c) for c in counts / max(values.size, 1)]

    if drift is not None and score in current.columns and ref_values.size:
        top = max(float(np.quantile(ref_values, 0.995)), 1e-6)
        edges = np.linspace(0.0, top, 21)
        cur_values = current[score].to_numpy(dtype=float, na_value=np.nan)
        out["distribution"] = charts.score_distribution(
            edges.tolist(), shares(ref_values, edges), shares(cur_values, edges), score
        )
        out["top_psi"] = charts.top_psi(drift["features"] + drift["scores"], t.psi_amber, t.psi_red)

    months_of_history = (
        pd.to_datetime(history["ts"], utc=True).dt.strftime("%Y-%m")
        if not history.empty
        else pd.Series(dtype=str)
    )
    monthly_psi: dict[str, float] = {}
    band_shares: dict[str, list[float]] = {}
    if family == "churn":
        band_edges = [settings.serving.risk_band_medium, settings.serving.risk_band_high]
        band_title = (
            f"churn risk band (medium from {band_edges[0]:.0%}, high from {band_edges[1]:.0%})"
        )
    else:
        band_edges = (
            [float(q) for q in np.quantile(ref_values, [1 / 3, 2 / 3])]
            if ref_values.size
            else [0.0, 0.0]
        )
        band_title = f"{score}: thirds of the validation sample (low, medium, high)"
    month_names = sorted(set(months_of_history))
    for month in month_names:
        values = history.loc[months_of_history == month, score].to_numpy(
            dtype=float, na_value=np.nan
        )
        values = values[np.isfinite(values)]
        if values.size and ref_values.size:
            monthly_psi[month] = psi(ref_values, values, t.bins)
        band_index = np.searchsorted(band_edges, values, side="right")
        counts = np.bincount(band_index, minlength=3)[:3] / max(values.size, 1)
        for name, share in zip(("low", "medium", "high"), counts, strict=True):
            band_shares.setdefault(name, []).append(float(share))
    if month_names:
        out["band_mix"] = charts.band_mix(month_names, band_shares, band_title)

    first = performance["targets"][0] if performance.get("targets") else None
    estimates = performance.get("estimates") or []
    estimated = {
        m["month"]: m.get("estimated_auc") for m in (estimates[0]["by_month"] if estimates else [])
    }
    realised = {m["month"]: m.get("auc") for m in (first["by_month"] if first else [])}
    trend_months = sorted(set(monthly_psi) | set(estimated) | set(realised))
    if trend_months:
        out["trend"] = charts.monthly_trend(
            trend_months,
            [monthly_psi.get(m) for m in trend_months],
            [realised.get(m) for m in trend_months],
            [estimated.get(m) for m in trend_months],
            amber=t.psi_amber,
            red=t.psi_red,
            score=score,
        )
    if first and first.get("calibration"):
        out["calibration"] = charts.calibration(first["calibration"], first["target"])
    return out


def _how_to_read(t: dict[str, Any]) -> str:
    return (
        "<h2>How to read this report</h2><div class='explain'><p><b>Drift (PSI)</b> compares how customers "
        "spread over the value ranges of an input or a score now, against the sample the model was validated "
        "on. 0 means the same spread; "
        f"below {num(t.get('psi_amber'), 2)} is {badge('green')}, {num(t.get('psi_amber'), 2)} to "
        f"{num(t.get('psi_red'), 2)} {badge('amber')}, from {num(t.get('psi_red'), 2)} {badge('red')} "
        "(the usual banking convention). For a single input it is also called CSI.</p>"
        "<p><b>KS</b> on a score is the largest gap between the share of customers below any score value then "
        "and now (0 = same, 1 = completely different).</p>"
        "<p><b>Performance</b> is only known once outcomes happen (90 days after a prediction). "
        "<b>AUC</b> is the chance that a customer who did churn (or buy) was scored above one who did not: "
        "0.5 is a coin toss, 1 is perfect. <b>Gini</b> = 2×AUC−1. It is compared with the value measured "
        f"when the model was developed: a drop of {num(t.get('auc_drop_amber'), 2)} is {badge('amber')}, "
        f"{num(t.get('auc_drop_red'), 2)} {badge('red')}. <b>Calibration</b> compares the average predicted "
        "probability with what actually happened, in ten groups from lowest to highest score.</p>"
        "<p><b>Data quality</b>: how many values are missing compared with the validation sample, and how "
        "many fall outside the range seen then.</p></div>"
    )


def _versions_section(served: Sequence[dict[str, Any]], registry: Sequence[dict[str, Any]]) -> str:
    out = ["<h2>Which versions served</h2>"]
    if served:
        rows = [
            [
                td(esc(v["version"])),
                td(esc(v["first"])),
                td(esc(v["last"])),
                td(f"{v['predictions']:,}", True),
            ]
            for v in served
        ]
        out.append(table(["version", "first prediction", "last prediction", "predictions"], rows))
    else:
        out.append("<p>No predictions were logged in this period.</p>")
    if registry:
        out.append(
            "<p>Registry history (every registered version; the champion is the one served). "
            "The evidence column links to the promotion report and tags recorded when the version was promoted.</p>"
        )
        rows = []
        for v in registry:
            evidence = []
            for key, value in sorted(v.get("evidence", {}).items()):
                text = esc(value)
                if str(value).startswith(
                    ("http://", "https://", "file://", "runs:/", "models:/", "mlflow-artifacts:")
                ):
                    text = f"<a href='{esc(value)}'>{esc(value)}</a>"
                evidence.append(f"{esc(key)}: {text}")
            for link in v.get("evidence_files", []):
                evidence.append(f"<a href='{esc(link)}'>{esc(link.rsplit('/', 1)[-1])}</a>")
            for link in v.get("evidence_links", []):
                evidence.append(f"<a href='{esc(link)}'>{esc(link.rsplit('/', 1)[-1])}</a>")
            rows.append(
                [
                    td(esc(v["version"])),
                    td(esc(v["created"])),
                    td(esc(", ".join(v.get("aliases", [])) or "—")),
                    td(esc(v.get("run_id") or "—")),
                    td("<br>".join(evidence) or "none recorded"),
                ]
            )
        out.append(
            table(
                ["version", "registered", "aliases now", "training run", "promotion evidence"], rows
            )
        )
    return "\n".join(out)


def _drift_section(drift: dict[str, Any] | None) -> str:
    out = ["<h2>Drift of scores and inputs</h2>"]
    if drift is None:
        out.append("<p>No predictions in this period, so nothing to compare.</p>")
        return "\n".join(out)
    out.append(
        f"<p>{drift['rows']['current']:,} predictions in the period compared with "
        f"{drift['rows']['reference']:,} rows of the validation sample.</p>"
    )
    rows = [
        [
            td(esc(r["name"])),
            td(num(r["psi"]), True),
            td(num(r.get("ks")), True),
            td(num(r.get("mean_reference"), 4), True),
            td(num(r.get("mean_current"), 4), True),
            td(badge(r["band"])),
        ]
        for r in drift["scores"]
    ]
    out.append(
        "<h3>Scores</h3>"
        + table(["score", "PSI", "KS", "average then", "average now", "band"], rows)
    )
    features = sorted(drift["features"], key=lambda r: -(r["psi"] or 0))
    rows = [[td(esc(r["name"])), td(num(r["psi"]), True), td(badge(r["band"]))] for r in features]
    shown = max(15, sum(r["band"] != "green" for r in features))
    out.append(
        "<h3>Inputs (CSI), most moved first</h3>" + table(["input", "PSI", "band"], rows[:shown])
    )
    if len(rows) > shown:
        out.append(
            f"<details><summary>The other {len(rows) - shown} inputs (all stable)</summary>"
            + table(["input", "PSI", "band"], rows[shown:])
            + "</details>"
        )
    seg_rows = [
        [
            td(esc(s["segment"].replace("_", " "))),
            td(esc(s["value"])),
            td(f"{s['rows_reference']:,}", True),
            td(f"{s['rows_current']:,}", True),
            td(num(s["max_psi"]), True),
            td(esc(", ".join(f"{c['name']} ({num(c['psi'], 2)})" for c in s["top_columns"][:3]))),
            td(badge(s["band"])),
        ]
        for s in drift["segments"]
    ]
    if seg_rows:
        out.append(
            "<h3>By customer group</h3><p>The same comparison inside each value tier and lifecycle stage: a shift "
            "confined to one group can hide in the totals. Groups with few customers are shown but not judged.</p>"
            + table(
                ["group", "value", "rows then", "rows now", "largest PSI", "moved most", "band"],
                seg_rows,
            )
        )
    return "\n".join(out)


def _estimates_section(performance: dict[str, Any] | None) -> str:
    """AUC estimated from the scores before outcomes (CBPE) beside the realised AUC."""
    estimates = (performance or {}).get("estimates") or []
    if not estimates or not estimates[0]["by_month"]:
        return ""
    entry = estimates[0]
    rows = []
    for m in entry["by_month"]:
        wrong = m.get("estimate_wrong")
        flag = (
            badge("amber") + " estimate was wrong"
            if wrong
            else ("within tolerance" if "realised_auc" in m else "not matured yet")
        )
        rows.append(
            [
                td(esc(m["month"])),
                td(f"{m['rows']:,}", True),
                td(num(m.get("estimated_auc")), True),
                td(num(m.get("realised_auc")), True),
                td(num(m.get("difference")), True),
                td(pct(m.get("estimated_event_rate")), True),
                td(pct(m.get("realised_event_rate")), True),
                td(flag),
            ]
        )
    return (
        f"<h3>{esc(entry['target'])}: performance estimated before outcomes</h3>"
        "<p>Before outcomes are known, the AUC is estimated from the scores themselves, assuming the "
        "model's probabilities are still calibrated (confidence-based estimation, as in NannyML's CBPE; "
        "calibrated on the validation sample). Once outcomes mature the realised AUC is shown beside it; "
        "a month where the two differ by more than the amber AUC drop is flagged: the model's "
        "probabilities no longer mean what they did.</p>"
        + table(
            [
                "month",
                "predictions",
                "estimated AUC",
                "realised AUC",
                "difference",
                "estimated event rate",
                "realised event rate",
                "check",
            ],
            rows,
        )
    )


def _performance_section(performance: dict[str, Any] | None) -> str:
    out = ["<h2>Performance on outcomes that have happened</h2>"]
    estimates = _estimates_section(performance)
    if not performance or not performance.get("targets"):
        out.append(
            "<p>No prediction in this period is old enough for its outcome to be known yet "
            f"(outcomes need {performance.get('min_age_days', 90) if performance else 90} days). "
            "This section fills in as predictions mature.</p>"
        )
        out.append(estimates)
        return "\n".join(out)
    rows = [
        [
            td(esc(t["target"])),
            td(f"{t['rows']:,}", True),
            td(pct(t["event_rate"]), True),
            td(num(t["auc"]), True),
            td(num(t["gini"]), True),
            td(num(t["ks"]), True),
            td(num(t["development_auc"]), True),
            td(badge(t["band"])),
        ]
        for t in performance["targets"]
    ]
    out.append(
        table(
            [
                "outcome",
                "predictions",
                "event rate",
                "AUC",
                "Gini",
                "KS",
                "AUC at development",
                "band",
            ],
            rows,
        )
    )
    first = performance["targets"][0]
    if first["by_month"]:
        rows = [
            [
                td(esc(m["month"])),
                td(f"{m['rows']:,}", True),
                td(num(m["auc"]), True),
                td(num(m["ks"]), True),
            ]
            for m in first["by_month"]
        ]
        out.append(
            f"<h3>{esc(first['target'])} by month</h3>"
            + table(["month", "predictions", "AUC", "KS"], rows)
        )
    if first["calibration"]:
        rows = [
            [
                td(str(c["decile"])),
                td(pct(c["mean_predicted"]), True),
                td(pct(c["observed_rate"]), True),
            ]
            for c in first["calibration"]
        ]
        out.append(
            f"<h3>{esc(first['target'])} calibration (1 = lowest scores)</h3>"
            + table(["score group", "predicted", "happened"], rows)
        )
    out.append(estimates)
    return "\n".join(out)


def _quality_section(drift: dict[str, Any] | None) -> str:
    out = ["<h2>Data quality</h2>"]
    if drift is None:
        out.append("<p>No predictions in this period.</p>")
        return "\n".join(out)
    unknown = drift["quality"]["unknown_customers"]
    if unknown["share"] is None:
        out.append(
            "<p>Unknown customers: the prediction log records only scored customers, so requests for customers "
            "the service did not know are not counted here.</p>"
        )
    else:
        out.append(
            f"<p>Unknown customers: {pct(unknown['share'])} of requests {badge(unknown['band'])}</p>"
        )
    flagged = [q for q in drift["quality"]["columns"] if q["band"] != "green"]
    shown = (
        flagged
        or sorted(drift["quality"]["columns"], key=lambda q: -(q["missing_increase"] or 0))[:5]
    )
    rows = [
        [
            td(esc(q["name"])),
            td(pct(q["missing_reference"]), True),
            td(pct(q["missing_current"]), True),
            td(pct(q["out_of_range"]), True),
            td(badge(q["band"])),
        ]
        for q in shown
    ]
    note = (
        "Inputs with a data-quality flag:"
        if flagged
        else "No input has a data-quality flag; the five with most missing:"
    )
    out.append(
        f"<p>{note}</p>"
        + table(["input", "missing then", "missing now", "outside old range", "band"], rows)
    )
    return "\n".join(out)


def run_report(
    settings: Settings,
    *,
    model: str | None,
    period: str | None,
    scores: Sequence[Path] = (),
    as_of: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """`clm monitor report`: one HTML per model for the period; exit 1 when anything is red.

    With `scores`/`as_of`, a back-test over those snapshots (monitoring.backtest): drift
    is judged on the latest snapshot, trends and performance over all of them."""
    from clm import atomic, mlflow_access
    from clm.progress import step_progress
    from clm.segments import SEGMENTS
    from monitoring import inputs
    from monitoring.drift import compare_populations, print_verdicts
    from monitoring.performance import performance_summaries
    from monitoring.quality import worst
    from monitoring.runlog import log_to_mlflow

    wanted = inputs.families(model)
    client = mlflow_access.client(settings)
    backtest = None
    if scores or as_of:
        from monitoring.backtest import backtest_frame

        backtest, _ = backtest_frame(settings, scores=scores, as_of=as_of, progress=progress)
        stamps = pd.to_datetime(backtest["ts"], utc=True)
        latest = stamps.max()
        window = inputs.Window(
            stamps.min(),
            latest + pd.Timedelta(seconds=1),
            f"back-test {stamps.min().date()} to {latest.date()}",
        )
        log = backtest[stamps == latest]
        history = backtest
    else:
        log, window = inputs.read_prediction_log(settings, window=period)
        history = log
    frame = inputs.normalise_log(log)
    folder = settings.reports_dir / "risk"
    folder.mkdir(parents=True, exist_ok=True)
    slug = window.label.replace(" ", "-")
    # Date-stamped: a report never overwrites an earlier one of the same period.
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    verdicts = {}
    with step_progress("risk report", len(wanted), progress, transient=True) as advance:
        for family in wanted:
            champion = inputs.load_champion(settings, family, client)
            drift = None
            if not frame.empty:
                drift = compare_populations(
                    champion.reference,
                    frame,
                    features=champion.features,
                    scores=inputs.score_columns(family, champion.manifest),
                    segments=SEGMENTS,
                    thresholds=settings.monitoring,
                    unknown_customers=None
                    if backtest is not None
                    else inputs.unknown_customers(settings, window),
                )
            performance = performance_summaries(
                settings,
                [family],
                client=client,
                start=window.start,
                end=window.end,
                predictions=backtest,
            )[family]
            registry = inputs.registry_history(settings, family, client)
            for entry in registry:
                entry["evidence_links"] = _evidence_links(client, entry.get("run_id"))
                # The copies promotion writes beside the reports, linked relatively (../promotion/).
                entry["evidence_files"] = [
                    f"../promotion/{p.name}"
                    for p in sorted(
                        (settings.reports_dir / "promotion").glob(
                            f"{family}-v{entry['version']}-*.md"
                        )
                    )
                ]
            verdict = worst([(drift or {}).get("verdict", "grey"), performance["verdict"]])
            drift_reasons = (
                drift["reasons"]
                if drift
                else ["GREY: not enough data (n = 0 production predictions in the period)"]
            )
            reasons = [
                *drift_reasons,
                *[
                    f"{r.split(': ', 1)[0]}: performance: {r.split(': ', 1)[1]}"
                    for r in performance["reasons"]
                ],
            ]
            html_text = render_report(
                family=family,
                registered_name=champion.registered_name,
                period_label=window.label,
                champion_version=champion.version,
                verdict=verdict,
                reasons=reasons,
                served=inputs.served_versions(log, family),
                registry=registry,
                drift=drift,
                performance=performance,
                thresholds=settings.monitoring.model_dump(),
                generated=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                charts=build_charts(
                    family=family,
                    reference=champion.reference,
                    manifest=champion.manifest,
                    current=frame,
                    history=inputs.normalise_log(history),
                    drift=drift,
                    performance=performance,
                    settings=settings,
                ),
            )
            path = folder / f"{family}-{slug}-{stamp}.html"
            atomic.write_text(path, html_text)
            summary_path = path.with_suffix(".json")
            atomic.write_json(
                summary_path,
                {
                    "model": family,
                    "period": window.label,
                    "version": champion.version,
                    "verdict": verdict,
                    "reasons": reasons,
                    "red_reasons": [r[5:] for r in reasons if r.startswith("RED: ")],
                    "drift": drift,
                    "performance": performance,
                },
            )
            log_to_mlflow(
                settings,
                run_name=f"report-{family}-{slug}",
                tags={
                    "clm.monitor": "report",
                    "clm.family": family,
                    "clm.period": window.label,
                    "clm.version": champion.version,
                    "clm.verdict": verdict,
                },
                # The report's figures, searchable and comparable across periods in MLflow.
                metrics={
                    **{
                        f"psi.{r['name']}": r["psi"]
                        for r in [
                            *(drift or {}).get("features", []),
                            *(drift or {}).get("scores", []),
                        ]
                    },
                    **{f"auc.{t['target']}": t.get("auc") for t in performance.get("targets", [])},
                    **{f"ks.{t['target']}": t.get("ks") for t in performance.get("targets", [])},
                },
                artifacts=[path, summary_path],
            )
            verdicts[family] = (verdict, [path, summary_path], reasons)
            advance()
    print_verdicts(verdicts)
    return 1 if any(v[0] == "red" for v in verdicts.values()) else 0


def _evidence_links(client: Any, run_id: str | None) -> list[str]:
    """Artifacts of the version's run whose name mentions promotion (the promotion report)."""
    if not run_id:
        return []
    try:
        run = client.get_run(run_id)
        found: list[str] = []
        pending = [""]
        while pending and len(found) < 5:
            path = pending.pop()
            for item in client.list_artifacts(run_id, path or None):
                if item.is_dir and item.path.count("/") < 2:
                    pending.append(item.path)
                elif "promot" in item.path.lower():
                    found.append(f"{run.info.artifact_uri}/{item.path}")
        return found
    except Exception:  # artifacts unreachable: the tags still show
        return []
