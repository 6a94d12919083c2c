"""Evidently 0.7's data-drift report (HTML): a second opinion on *our* bins.

Evidently is imported here, inside the function (the import alone takes ~12 s).
Left to itself Evidently bins numeric columns its own way (Sturges bins over both
samples together), so its PSI disagreed with ours (0.384 vs 0.055 on one column)
and extreme values (age = 1e300) crashed it. So it is fed each column's *bin*
under our reference bins (monitoring.psi, the NaN bin included), as a categorical
label such as `03 (12.5, 40]`: its per-column PSI is then our PSI on the same
bins and reference (up to its own zero-share floor), the page stays small (bar
charts of ~12 bins instead of raw-value plots), and no raw value reaches it.
The page is headed with the model, version, period and the rule it applies
(per-column PSI ≥ our red band; "dataset drift" when half the columns drift),
which is not our verdict: ours also weighs sampling noise and segments.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clm import atomic
from monitoring.psi import BinnedColumns, Bins

# Evidently's report holds every row in memory; a sample this size keeps it to seconds.
EVIDENTLY_MAX_ROWS = 20_000


def bin_labels(bins: Bins) -> list[str]:
    """Readable label of each bin of a column, in order (NaN bin last)."""
    edges = [f"{e:.4g}" for e in bins.edges]
    if not edges:
        inner = ["all values"]
    else:
        inner = [f"≤ {edges[0]}"]
        inner += [f"({a}, {b}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        inner.append(f"> {edges[-1]}")
    labels = [*inner, "missing"]
    return [f"{i:02d} {text}" for i, text in enumerate(labels)]


def binned_frame(binned: BinnedColumns, frame: pd.DataFrame) -> pd.DataFrame:
    """Each column's bin label per row (strings: Evidently treats them as categories)."""
    codes = binned.codes(frame)
    out = {}
    for j, (column, bins) in enumerate(zip(binned.columns, binned.bins, strict=True)):
        labels = np.array(bin_labels(bins), dtype=object)
        out[column] = labels[codes[:, j] - j * binned.width]
    return pd.DataFrame(out)


def drift_preset_verdicts(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    threshold: float,
    bins: int = 10,
    html_path: Path | None = None,
    heading: dict[str, str] | None = None,
    max_rows: int | None = EVIDENTLY_MAX_ROWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Run Evidently's DataDriftPreset with PSI per column on our bins; {column: {psi, drifted}}.

    Writes the HTML report to `html_path` when given (atomically), headed with `heading`
    (e.g. model, version, period).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(columns)
    binned = BinnedColumns(reference, columns, bins)
    ref = binned_frame(binned, _sample(reference[columns], max_rows, seed))
    cur = binned_frame(binned, _sample(current[columns], max_rows, seed + 1))
    definition = DataDefinition(categorical_columns=columns)
    preset = DataDriftPreset(
        columns=columns,
        method="psi",
        threshold=threshold,
        per_column_method={c: "psi" for c in columns},
        per_column_threshold={c: threshold for c in columns},
    )
    report = Report([preset])
    snapshot = report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    if html_path is not None:
        with atomic.atomic_path(html_path) as tmp:
            snapshot.save_html(str(tmp))
            text = tmp.read_text(encoding="utf-8")
            banner = _banner(heading or {}, threshold, len(ref), len(cur))
            text = (
                text.replace("<body>", "<body>" + banner, 1) if "<body>" in text else banner + text
            )
            tmp.write_text(text, encoding="utf-8")
    values: dict[str, float] = {}
    for metric in snapshot.dict().get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift") and config.get("column") in columns:
            values[config["column"]] = float(metric["value"])
    return {
        c: {"psi": values.get(c), "drifted": (values.get(c) or 0.0) >= threshold} for c in columns
    }


def _banner(heading: dict[str, str], threshold: float, n_ref: int, n_cur: int) -> str:
    facts = " · ".join(
        f"{html.escape(k)}: <b>{html.escape(str(v))}</b>" for k, v in heading.items()
    )
    return (
        "<div style='font-family:sans-serif;padding:10px 16px;background:#fff4e0;"
        "border-left:6px solid #b86e00;margin:8px'>"
        f"<div>{facts}</div><div>Evidently's second opinion on the same reference bins as our PSI "
        f"(each column as its bin under the champion's validation-sample bins; {n_ref:,} reference "
        f"and {n_cur:,} current rows). A column is marked drifted at PSI ≥ {threshold:g}; "
        'Evidently\'s "dataset drift" means half the columns drifted. This is not our verdict, '
        "which also weighs sampling noise and customer groups: see the risk report.</div></div>"
    )


def _sample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed)
    return frame.reset_index(drop=True)
