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
) -> str:
    """The HTML page (a string). Only aggregates go in: never pass row-level data."""
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
    parts.append(_how_to_read(thresholds))
    parts.append(_versions_section(served, registry))
    parts.append(_drift_section(drift))
    parts.append(_performance_section(performance))
    parts.append(_quality_section(drift))
    parts.append("</body></html>")
    return "\n".join(parts)


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


def _performance_section(performance: dict[str, Any] | None) -> str:
    out = ["<h2>Performance on outcomes that have happened</h2>"]
    if not performance or not performance.get("targets"):
        out.append(
            "<p>No prediction in this period is old enough for its outcome to be known yet "
            f"(outcomes need {performance.get('min_age_days', 90) if performance else 90} days). "
            "This section fills in as predictions mature.</p>"
        )
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
    settings: Settings, *, model: str | None, period: str | None, progress: bool = True
) -> int:
    """`clm monitor report`: one HTML per model for the period; exit 1 when anything is red."""
    from clm import atomic, mlflow_access
    from clm.progress import step_progress
    from clm.segments import SEGMENTS
    from monitoring import inputs
    from monitoring.drift import _print_verdicts, compare_populations
    from monitoring.performance import performance_summaries
    from monitoring.quality import worst
    from monitoring.runlog import log_to_mlflow

    wanted = inputs.families(model)
    client = mlflow_access.client(settings)
    log, window = inputs.read_prediction_log(settings, window=period)
    frame = inputs.normalise_log(log)
    folder = settings.reports_dir / "risk"
    folder.mkdir(parents=True, exist_ok=True)
    slug = window.label.replace(" ", "-")
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
                    unknown_customers=inputs.unknown_customers(settings, window),
                )
            performance = performance_summaries(
                settings, [family], client=client, start=window.start, end=window.end
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
            reasons = [*(drift or {}).get("red_reasons", []), *performance["red_reasons"]]
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
            )
            path = folder / f"{family}-{slug}.html"
            atomic.write_text(path, html_text)
            summary_path = folder / f"{family}-{slug}.json"
            atomic.write_json(
                summary_path,
                {
                    "model": family,
                    "period": window.label,
                    "version": champion.version,
                    "verdict": verdict,
                    "red_reasons": reasons,
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
            verdicts[family] = (verdict, path, reasons)
            advance()
    _print_verdicts(verdicts)
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
