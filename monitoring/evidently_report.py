"""Evidently 0.7's data-drift report (HTML) for features and scores.

Evidently is imported here, inside the function (the import alone takes ~12 s).
Its per-column test is set to PSI with our red threshold so its verdicts read
like ours; note it bins numeric columns differently (Sturges bins over both
samples together), so its PSI values are close to ours but not identical — our
own table (monitoring.psi) is the one the bands and the exit code use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from clm import atomic

# Evidently's report holds every row in memory and renders per-column plots;
# a sample this size keeps it to seconds while drawing the same shapes.
EVIDENTLY_MAX_ROWS = 20_000


def drift_preset_verdicts(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    threshold: float,
    html_path: Path | None = None,
    max_rows: int | None = EVIDENTLY_MAX_ROWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Run Evidently's DataDriftPreset with PSI per column; return {column: (psi, drifted)}.

    Writes the HTML report to `html_path` when given (atomically).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(columns)
    ref = _sample(reference[columns], max_rows, seed)
    cur = _sample(current[columns], max_rows, seed + 1)
    definition = DataDefinition(numerical_columns=columns)
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
    values: dict[str, float] = {}
    for metric in snapshot.dict().get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift") and config.get("column") in columns:
            values[config["column"]] = float(metric["value"])
    return {
        c: {"psi": values.get(c), "drifted": (values.get(c) or 0.0) >= threshold} for c in columns
    }


def _sample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    frame = frame.astype("float64")
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed)
    return frame.reset_index(drop=True)
