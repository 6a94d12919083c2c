"""Drift of inputs and scores against the champion's reference sample.

`compare_populations` works on two frames already in monitoring's shape (one
numeric column per feature and per score, plus segment columns) and returns the
JSON-ready summary; `run_drift` is `clm monitor drift`: it reads the real inputs,
compares, writes the summary and the Evidently report under the reports folder,
logs them to MLflow and returns 1 when anything is red.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clm.settings import MonitoringSettings, Settings
from monitoring.psi import (
    BinnedColumns,
    band,
    calibrated_band,
    ks_statistic,
    noise_levels,
    occupied_bins,
    psi_matrix,
)
from monitoring.quality import quality_table, unknown_customer_share, worst


def compare_populations(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str],
    scores: Sequence[str],
    segments: Sequence[str] = (),
    thresholds: MonitoringSettings,
    unknown_customers: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """PSI/CSI per feature and score, KS per score, per-segment PSI, data quality.

    `segments` are columns (e.g. value tier, lifecycle stage) whose values split
    both populations; each segment is compared with the same reference bins.
    `unknown_customers` is (requested, unknown) when the source records it.

    A PSI is amber/red only when it crosses the banking band *and* exceeds its
    sampling noise (monitoring.psi.noise_levels) at `drift_false_alarm_rate` over
    every column and segment judged; fewer than `min_segment_rows` rows is grey.
    `reasons` says why, one line per non-green finding (or one line why green/grey).
    """
    features = [c for c in features if c in reference.columns and c in current.columns]
    scores = [c for c in scores if c in reference.columns and c in current.columns]
    columns = [*features, *scores]
    binned = BinnedColumns(reference, columns, thresholds.bins)
    ref_codes = binned.codes(reference)
    cur_codes = binned.codes(current)
    ref_shares, cur_shares = binned.shares(ref_codes), binned.shares(cur_codes)
    psi_all = psi_matrix(ref_shares, cur_shares)
    amber, red = thresholds.psi_amber, thresholds.psi_red
    minimum = thresholds.min_segment_rows

    segment_groups = []
    for segment in segments:
        if segment not in reference.columns or segment not in current.columns:
            continue
        ref_names, ref_codes_seg = _segment_codes(reference[segment])
        cur_names, cur_codes_seg = _segment_codes(current[segment])
        values_seen = sorted(set(ref_names) | set(cur_names))
        lookup = {v: i for i, v in enumerate(values_seen)}
        ref_groups = np.array([lookup[n] for n in ref_names], dtype=np.int64)[ref_codes_seg]
        cur_groups = np.array([lookup[n] for n in cur_names], dtype=np.int64)[cur_codes_seg]
        segment_groups.append((segment, values_seen, ref_groups, cur_groups))
    judged_groups = sum(
        int(
            min(
                np.count_nonzero(r == g),
                np.count_nonzero(c == g),
            )
            >= minimum
        )
        for _, values, r, c in segment_groups
        for g in range(len(values))
    )
    # Every PSI one verdict looks at: columns over the whole book and in each judged group.
    tests = max(len(columns) * (1 + judged_groups), 1)
    alpha = thresholds.drift_false_alarm_rate
    noise, alarm = noise_levels(
        len(reference),
        len(current),
        occupied_bins(ref_shares, cur_shares),
        tests=tests,
        alpha=alpha,
    )
    # PSI over a handful of rows is noise (a few scored requests would all look "red"):
    # below the same minimum as a segment, values are shown but not judged.
    enough_rows = min(len(reference), len(current)) >= minimum

    def rows(names: Sequence[str], offset: int) -> list[dict[str, Any]]:
        out = []
        for i, n in enumerate(names):
            j = offset + i
            value = float(psi_all[j])
            out.append(
                {
                    "name": n,
                    "psi": _round(value),
                    "noise": _round(noise[j]),
                    "alarm_above": _round(max(alarm[j], amber)),
                    "band": calibrated_band(value, alarm[j], amber, red) if enough_rows else "grey",
                }
            )
        return out

    feature_rows = rows(features, 0)
    score_rows = rows(scores, len(features))
    for row in score_rows:
        ref_values = _finite(reference[row["name"]])
        cur_values = _finite(current[row["name"]])
        row["ks"] = _round(ks_statistic(ref_values, cur_values))
        row["mean_reference"] = _round(_mean(ref_values))
        row["mean_current"] = _round(_mean(cur_values))

    segment_rows: list[dict[str, Any]] = []
    for segment, values_seen, ref_groups, cur_groups in segment_groups:
        seg_ref = binned.group_shares(ref_codes, ref_groups, len(values_seen))
        seg_cur = binned.group_shares(cur_codes, cur_groups, len(values_seen))
        psi_groups = psi_matrix(seg_ref, seg_cur)
        ref_rows = np.bincount(ref_groups, minlength=len(values_seen))
        cur_rows = np.bincount(cur_groups, minlength=len(values_seen))
        for g, value in enumerate(values_seen):
            n_ref, n_cur = int(ref_rows[g]), int(cur_rows[g])
            if n_ref == 0 and n_cur == 0:
                continue  # the "unknown" slot when nothing is missing
            enough = min(n_ref, n_cur) >= minimum
            values = psi_groups[g]
            seg_noise, seg_alarm = noise_levels(
                n_ref, n_cur, occupied_bins(seg_ref[g], seg_cur[g]), tests=tests, alpha=alpha
            )
            seg_bands = [
                calibrated_band(float(values[i]), float(seg_alarm[i]), amber, red)
                for i in range(len(columns))
            ]
            # The most alarming column leads: worst band, then PSI above its alarm level.
            excess = np.nan_to_num(values - np.maximum(seg_alarm, amber), nan=-np.inf)
            order = sorted(
                range(len(columns)), key=lambda i: (-_SEVERITY[seg_bands[i]], -excess[i])
            )
            top = [
                {
                    "name": columns[i],
                    "psi": _round(values[i]),
                    "noise": _round(seg_noise[i]),
                    "alarm_above": _round(max(seg_alarm[i], amber)),
                }
                for i in order[:5]
            ]
            lead = order[0] if order else None
            segment_rows.append(
                {
                    "segment": segment,
                    "value": str(value),
                    "rows_reference": n_ref,
                    "rows_current": n_cur,
                    "max_psi": _round(float(np.max(values)) if len(values) else np.nan),
                    "top_columns": top,
                    # Small segments are shown but not judged: PSI is noisy on a few rows.
                    "band": seg_bands[lead] if enough and lead is not None else "grey",
                    "columns": {columns[i]: _round(values[i]) for i in range(len(columns))},
                }
            )

    quality = quality_table(reference, current, features, thresholds)
    quality_rows = [
        {"name": str(name), **{k: _round(v) if k != "band" else v for k, v in row.items()}}
        for name, row in quality.iterrows()
    ]
    unknown: dict[str, Any] = {"requested": None, "unknown": None, "share": None, "band": "grey"}
    if unknown_customers is not None:
        share = unknown_customer_share(*unknown_customers)
        unknown = {
            "requested": unknown_customers[0],
            "unknown": unknown_customers[1],
            "share": _round(share),
            "band": band(
                share, thresholds.unknown_customers_amber, thresholds.unknown_customers_red
            ),
        }

    judged = feature_rows + score_rows + segment_rows + quality_rows
    verdict = worst([r["band"] for r in judged] + [unknown["band"]])
    reasons = _reasons(feature_rows, score_rows, segment_rows, quality_rows, unknown, thresholds)
    if not enough_rows:
        n = min(len(reference), len(current))
        verdict = "grey"
        reasons = [
            f"GREY: not enough data (n = {n:,} rows; at least {minimum:,} are needed to judge drift)"
        ] + [r for r in reasons if r.startswith(("RED: unknown", "AMBER: unknown"))]
    elif verdict == "green":
        leading = max(feature_rows + score_rows, key=lambda r: r["psi"] or 0.0, default=None)
        reasons = [
            "GREEN: no PSI above both its band and its noise level"
            + (
                f"; largest PSI({leading['name']}) {_fmt(leading['psi'])} "
                f"(noise level {_fmt(leading['noise'])}, alarm above {_fmt(leading['alarm_above'])})"
                if leading
                else ""
            )
        ]
    return {
        "verdict": verdict,
        "reasons": reasons,
        "red_reasons": [r[5:] for r in reasons if r.startswith("RED: ")],
        "rows": {"reference": len(reference), "current": len(current)},
        "tests": tests,
        "thresholds": {
            "psi_amber": amber,
            "psi_red": red,
            "drift_false_alarm_rate": alpha,
            "bins": thresholds.bins,
            "missing_increase_amber": thresholds.missing_increase_amber,
            "missing_increase_red": thresholds.missing_increase_red,
            "out_of_range_amber": thresholds.out_of_range_amber,
            "out_of_range_red": thresholds.out_of_range_red,
            "unknown_customers_amber": thresholds.unknown_customers_amber,
            "unknown_customers_red": thresholds.unknown_customers_red,
            "min_segment_rows": thresholds.min_segment_rows,
        },
        "features": feature_rows,
        "scores": score_rows,
        "segments": segment_rows,
        "quality": {"columns": quality_rows, "unknown_customers": unknown},
    }


_SEVERITY = {"grey": 0, "green": 1, "amber": 2, "red": 3}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _reasons(
    feature_rows: list[dict[str, Any]],
    score_rows: list[dict[str, Any]],
    segment_rows: list[dict[str, Any]],
    quality_rows: list[dict[str, Any]],
    unknown: dict[str, Any],
    thresholds: MonitoringSettings,
) -> list[str]:
    """One line per amber/red finding, red first: what moved, by how much, against what."""
    found: list[tuple[str, str]] = []

    def psi_line(r: dict[str, Any]) -> str:
        return (
            f"PSI({r['name']}) {_fmt(r['psi'])} (noise level {_fmt(r['noise'])}, "
            f"alarm above {_fmt(r['alarm_above'])})"
        )

    for r in score_rows:
        if r["band"] in ("amber", "red"):
            found.append((r["band"], f"score {psi_line(r)}"))
    for r in feature_rows:
        if r["band"] in ("amber", "red"):
            found.append((r["band"], f"feature {psi_line(r)}"))
    for s in segment_rows:
        if s["band"] in ("amber", "red") and s["top_columns"]:
            found.append(
                (
                    s["band"],
                    f"{s['segment']}={s['value']} ({s['rows_current']:,} rows), "
                    + psi_line(s["top_columns"][0]),
                )
            )
    for q in quality_rows:
        if q["band"] in ("amber", "red"):
            parts = []
            if (q.get("missing_increase") or 0) >= thresholds.missing_increase_amber:
                parts.append(f"missing rate up {q['missing_increase']:.1%}")
            if (q.get("out_of_range") or 0) >= thresholds.out_of_range_amber:
                parts.append(f"{q['out_of_range']:.1%} outside the reference range")
            found.append((q["band"], f"data quality of {q['name']}: {', '.join(parts)}"))
    if unknown["band"] in ("amber", "red"):
        found.append(
            (
                unknown["band"],
                f"unknown customers {unknown['share']:.1%} of {unknown['requested']:,} requested",
            )
        )
    found.sort(key=lambda item: -_SEVERITY[item[0]])
    return [f"{b.upper()}: {text}" for b, text in found]


def _finite(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype=float, na_value=np.nan)
    return values[np.isfinite(values)]


def _mean(values: np.ndarray) -> float:
    """Mean that stays finite on extreme values (1e300 rows would overflow a sum)."""
    if values.size == 0:
        return float("nan")
    scale = float(np.max(np.abs(values))) or 1.0
    return float(np.mean(values / scale) * scale)


def _segment_codes(series: pd.Series) -> tuple[list[str], np.ndarray]:
    """Segment values as (names, code per row); missing is the name "unknown"."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype("category")
    names = [str(c) for c in series.cat.categories] + ["unknown"]
    codes = series.cat.codes.to_numpy().astype(np.int64)
    codes[codes < 0] = len(names) - 1
    return names, codes


def _round(value: float) -> float | None:
    """JSON-friendly: NaN becomes null, floats keep 6 decimals."""
    if value is None:
        return None
    value = float(value)
    return None if not np.isfinite(value) else round(value, 6)


def run_drift(
    settings: Settings,
    *,
    model: str | None,
    window: str | None,
    current: Path | None,
    traffic: str = "production",
    progress: bool = True,
) -> int:
    """`clm monitor drift`: compare the champion's reference with the log window or a
    batch file, per family; write JSON + Evidently HTML; exit 1 when anything is red.

    From the log, only `traffic` rows are judged (default: production, i.e. `/score`
    and batch by the champions); the other kinds are counted beside it in the JSON."""
    from clm import atomic, mlflow_access
    from clm.progress import step_progress
    from clm.segments import SEGMENTS
    from monitoring import inputs
    from monitoring.evidently_report import drift_preset_verdicts
    from monitoring.runlog import log_to_mlflow, report_folder

    wanted = inputs.families(model)
    client = mlflow_access.client(settings)
    if current is not None:
        raw = inputs.read_batch(Path(current))
        source: dict[str, Any] = {"kind": "batch", "file": Path(current).name}
        period = Path(current).name
    else:
        raw, win = inputs.read_prediction_log(settings, window=window, traffic=traffic)
        source = {
            "kind": "prediction_log",
            "traffic": traffic,
            "window": win.label,
            "start": str(win.start),
            "end": str(win.end),
            "rows_by_traffic": inputs.traffic_counts(settings, win),
        }
        period = f"{win.start.date()} to {(win.end - pd.Timedelta(days=1)).date()}"
        if raw.empty:
            raise inputs.MonitoringInputError(
                f"no {traffic} predictions in the window {win.label} ({period}) of "
                f"{settings.predictions_dir} (rows by traffic: {source['rows_by_traffic']}); "
                "choose another --window or --traffic"
            )
    frame = inputs.normalise_log(raw)
    unknown = inputs.unknown_customers(settings, win) if current is None else None
    folder = report_folder(settings, "drift")
    stamp = folder.name[:8]
    verdicts = {}
    with step_progress("drift", len(wanted), progress, transient=True) as advance:
        for family in wanted:
            champion = inputs.load_champion(settings, family, client)
            summary = compare_populations(
                champion.reference,
                frame,
                features=champion.features,
                scores=inputs.score_columns(family, champion.manifest),
                segments=SEGMENTS,
                thresholds=settings.monitoring,
                unknown_customers=unknown,
            )
            summary.update(
                {
                    "model": family,
                    "registered_name": champion.registered_name,
                    "version": champion.version,
                    "reference": {"kind": "validation_sample", "version": champion.version},
                    "current": source,
                    "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                }
            )
            summary_path = folder / f"{family}-drift-{stamp}.json"
            html_path = folder / f"{family}-evidently-{stamp}.html"
            columns = [r["name"] for r in summary["features"] + summary["scores"]]
            evidently = drift_preset_verdicts(
                champion.reference,
                frame,
                columns,
                threshold=settings.monitoring.psi_red,
                bins=settings.monitoring.bins,
                html_path=html_path,
                heading={
                    "model": champion.registered_name,
                    "version": champion.version,
                    "period": period,
                    "traffic": source.get("traffic", "batch file"),
                },
            )
            summary["evidently"] = {
                "html": html_path.name,
                "test": f"PSI on our reference bins, drifted at >= {settings.monitoring.psi_red}",
                "drifted_columns": sorted(c for c, v in evidently.items() if v["drifted"]),
            }
            atomic.write_json(summary_path, summary)
            log_to_mlflow(
                settings,
                run_name=f"drift-{family}",
                tags={
                    "clm.monitor": "drift",
                    "clm.family": family,
                    "clm.version": champion.version,
                    "clm.verdict": summary["verdict"],
                },
                metrics={
                    f"psi.{r['name']}": r["psi"] for r in summary["features"] + summary["scores"]
                },
                artifacts=[summary_path, html_path],
            )
            verdicts[family] = (summary["verdict"], [summary_path, html_path], summary["reasons"])
            advance()
    print_verdicts(verdicts)
    return 1 if any(v[0] == "red" for v in verdicts.values()) else 0


def print_verdicts(verdicts: dict[str, tuple[str, list[Path], list[str]]]) -> None:
    """Each family's verdict, every file written, and the reasons (the why of the verdict)."""
    from rich.console import Console

    console = Console()
    colours = {"green": "green", "amber": "yellow", "red": "bold red", "grey": "dim"}
    for family, (verdict, paths, reasons) in verdicts.items():
        console.print(f"[{colours[verdict]}]{family}: {verdict.upper()}[/]", highlight=False)
        for path in paths:
            console.print(f"   {path}", highlight=False, soft_wrap=True)
        for reason in reasons[:8]:
            console.print(f"   - {reason}", highlight=False, soft_wrap=True)
        if len(reasons) > 8:
            console.print(
                f"   … and {len(reasons) - 8} more (see the JSON summary)", highlight=False
            )
