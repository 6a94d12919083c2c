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
from monitoring.psi import BinnedColumns, band, ks_statistic, psi_matrix
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
    """
    features = [c for c in features if c in reference.columns and c in current.columns]
    scores = [c for c in scores if c in reference.columns and c in current.columns]
    columns = [*features, *scores]
    binned = BinnedColumns(reference, columns, thresholds.bins)
    ref_codes = binned.codes(reference)
    cur_codes = binned.codes(current)
    psi_all = psi_matrix(binned.shares(ref_codes), binned.shares(cur_codes))
    amber, red = thresholds.psi_amber, thresholds.psi_red

    # PSI over a handful of rows is noise (a few scored requests would all look "red"):
    # below the same minimum as a segment, values are shown but not judged.
    enough_rows = min(len(reference), len(current)) >= thresholds.min_segment_rows

    def rows(names: Sequence[str], values: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"name": n, "psi": _round(v), "band": band(v, amber, red) if enough_rows else "grey"}
            for n, v in zip(names, values, strict=True)
        ]

    feature_rows = rows(features, psi_all[: len(features)])
    score_rows = rows(scores, psi_all[len(features) :])
    for row in score_rows:
        row["ks"] = _round(
            ks_statistic(
                reference[row["name"]].to_numpy(float), current[row["name"]].to_numpy(float)
            )
        )
        row["mean_reference"] = _round(
            float(np.nanmean(reference[row["name"]])) if len(reference) else np.nan
        )
        row["mean_current"] = _round(
            float(np.nanmean(current[row["name"]])) if len(current) else np.nan
        )

    segment_rows: list[dict[str, Any]] = []
    for segment in segments:
        if segment not in reference.columns or segment not in current.columns:
            continue
        ref_names, ref_codes_seg = _segment_codes(reference[segment])
        cur_names, cur_codes_seg = _segment_codes(current[segment])
        values_seen = sorted(set(ref_names) | set(cur_names))
        lookup = {v: i for i, v in enumerate(values_seen)}
        ref_groups = np.array([lookup[n] for n in ref_names], dtype=np.int64)[ref_codes_seg]
        cur_groups = np.array([lookup[n] for n in cur_names], dtype=np.int64)[cur_codes_seg]
        psi_groups = psi_matrix(
            binned.group_shares(ref_codes, ref_groups, len(values_seen)),
            binned.group_shares(cur_codes, cur_groups, len(values_seen)),
        )
        ref_rows = np.bincount(ref_groups, minlength=len(values_seen))
        cur_rows = np.bincount(cur_groups, minlength=len(values_seen))
        for g, value in enumerate(values_seen):
            n_ref, n_cur = int(ref_rows[g]), int(cur_rows[g])
            if n_ref == 0 and n_cur == 0:
                continue  # the "unknown" slot when nothing is missing
            enough = min(n_ref, n_cur) >= thresholds.min_segment_rows
            values = psi_groups[g]
            order = np.argsort(-values)
            top = [{"name": columns[i], "psi": _round(values[i])} for i in order[:5]]
            worst_psi = float(values[order[0]]) if len(order) else float("nan")
            segment_rows.append(
                {
                    "segment": segment,
                    "value": str(value),
                    "rows_reference": n_ref,
                    "rows_current": n_cur,
                    "max_psi": _round(worst_psi),
                    "top_columns": top,
                    # Small segments are shown but not judged: PSI is noisy on a few rows.
                    "band": band(worst_psi, amber, red) if enough else "grey",
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

    reasons = [
        f"PSI of feature {r['name']} = {r['psi']:.3f}" for r in feature_rows if r["band"] == "red"
    ]
    reasons += [
        f"PSI of score {r['name']} = {r['psi']:.3f}" for r in score_rows if r["band"] == "red"
    ]
    reasons += [
        f"segment {r['segment']}={r['value']}: PSI {r['max_psi']:.3f} on {r['top_columns'][0]['name']}"
        for r in segment_rows
        if r["band"] == "red"
    ]
    reasons += [f"data quality of {r['name']}" for r in quality_rows if r["band"] == "red"]
    if unknown["band"] == "red":
        reasons.append(f"unknown customers {unknown['share']:.1%}")
    bands = [r["band"] for r in feature_rows + score_rows + segment_rows + quality_rows] + [
        unknown["band"]
    ]
    return {
        "verdict": worst(bands),
        "red_reasons": reasons,
        "rows": {"reference": len(reference), "current": len(current)},
        "thresholds": {
            "psi_amber": amber,
            "psi_red": red,
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
    progress: bool = True,
) -> int:
    """`clm monitor drift`: compare the champion's reference with the log window or a
    batch file, per family; write JSON + Evidently HTML; exit 1 when anything is red."""
    from clm import atomic, mlflow_access
    from clm.progress import step_progress
    from clm.segments import SEGMENTS
    from monitoring import inputs
    from monitoring.runlog import log_to_mlflow, report_folder

    wanted = inputs.families(model)
    client = mlflow_access.client(settings)
    if current is not None:
        raw = inputs.read_batch(Path(current))
        source: dict[str, Any] = {"kind": "batch", "file": Path(current).name}
    else:
        raw, win = inputs.read_prediction_log(settings, window=window)
        source = {
            "kind": "prediction_log",
            "window": win.label,
            "start": str(win.start),
            "end": str(win.end),
        }
        if raw.empty:
            raise inputs.MonitoringInputError(
                f"no predictions in the window {win.label} ({win.start.date()} to {(win.end - pd.Timedelta(days=1)).date()}) of "
                f"{settings.predictions_dir}; choose another --window"
            )
    frame = inputs.normalise_log(raw)
    unknown = inputs.unknown_customers(settings, win) if current is None else None
    folder = report_folder(settings, "drift")
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
            summary_path = folder / f"{family}-drift.json"
            html_path = folder / f"{family}-evidently.html"
            columns = [r["name"] for r in summary["features"] + summary["scores"]]
            from monitoring.evidently_report import drift_preset_verdicts

            evidently = drift_preset_verdicts(
                champion.reference,
                frame,
                columns,
                threshold=settings.monitoring.psi_red,
                html_path=html_path,
            )
            summary["evidently"] = {
                "html": html_path.name,
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
            verdicts[family] = (summary["verdict"], summary_path, summary["red_reasons"])
            advance()
    _print_verdicts(verdicts)
    return 1 if any(v[0] == "red" for v in verdicts.values()) else 0


def _print_verdicts(verdicts: dict[str, tuple[str, Path, list[str]]]) -> None:
    from rich.console import Console

    console = Console()
    colours = {"green": "green", "amber": "yellow", "red": "bold red", "grey": "dim"}
    for family, (verdict, path, reasons) in verdicts.items():
        console.print(
            f"[{colours[verdict]}]{family}: {verdict.upper()}[/]  {path}",
            highlight=False,
            soft_wrap=True,
        )
        for reason in reasons[:8]:
            console.print(f"   - {reason}", highlight=False, soft_wrap=True)
        if len(reasons) > 8:
            console.print(
                f"   … and {len(reasons) - 8} more (see the JSON summary)", highlight=False
            )
