"""Charts of the risk report, drawn from aggregates only, as inline SVG text.

Each function takes numbers already aggregated (bin counts, one value per month
or per decile: never rows or customer ids) and returns an `<svg>` element that
the report embeds as is, so the page stays one self-contained file. Matplotlib
is imported inside `_svg` (the CLI must start fast) and draws with the Agg
backend; text stays text (`svg.fonttype: none`), which keeps each chart small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

REFERENCE = "#7a7a7a"
CURRENT = "#1f5fa8"
ESTIMATE = "#b86e00"
BAND_COLOURS = {"low": "#1b7f3b", "medium": "#e0a100", "high": "#b3261e"}
AMBER, RED = "#b86e00", "#b3261e"


def _svg(figure: Any) -> str:
    import io

    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float = 6.4, height: float = 2.8) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9})
    figure, axes = plt.subplots(figsize=(width, height))
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def score_distribution(
    edges: Sequence[float], reference: Sequence[float], current: Sequence[float], score: str
) -> str:
    """Share of rows per score bin, reference (validation sample) vs current."""
    figure, axes = _figure()
    centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    width = float(np.min(np.diff(edges))) * 0.42 if len(edges) > 1 else 0.02
    axes.bar(centres - width / 2, reference, width, color=REFERENCE, label="validation (reference)")
    axes.bar(centres + width / 2, current, width, color=CURRENT, label="this period")
    axes.set_xlabel(score)
    axes.set_ylabel("share of customers")
    axes.legend(frameon=False)
    return _svg(figure)


def top_psi(rows: Sequence[dict[str, Any]], amber: float, red: float, top: int = 15) -> str:
    """The most moved inputs and scores (PSI), with the band lines and each one's alarm level."""
    ranked = sorted(rows, key=lambda r: -(r["psi"] or 0.0))[:top][::-1]
    figure, axes = _figure(height=0.28 * max(len(ranked), 3) + 0.6)
    names = [r["name"] for r in ranked]
    values = [r["psi"] or 0.0 for r in ranked]
    colours = [{"red": RED, "amber": AMBER}.get(r["band"], CURRENT) for r in ranked]
    axes.barh(names, values, color=colours)
    alarms = [r.get("alarm_above") for r in ranked]
    if any(a is not None for a in alarms):
        axes.scatter(
            [a if a is not None else np.nan for a in alarms],
            names,
            marker="|",
            s=120,
            color="black",
            label="alarm level (band or noise)",
        )
    axes.axvline(amber, color=AMBER, linestyle="--", linewidth=1)
    axes.axvline(red, color=RED, linestyle="--", linewidth=1)
    axes.set_xlabel("PSI against the validation sample")
    axes.legend(frameon=False, loc="lower right")
    return _svg(figure)


def monthly_trend(
    months: Sequence[str],
    psi: Sequence[float | None],
    realised_auc: Sequence[float | None],
    estimated_auc: Sequence[float | None],
    *,
    amber: float,
    red: float,
    score: str,
) -> str:
    """PSI of the score per month (left) and AUC per month, realised and estimated (right)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9})
    figure, (left, right) = plt.subplots(1, 2, figsize=(8.4, 2.8))
    x = np.arange(len(months))
    values = np.array([np.nan if v is None else v for v in psi], dtype=float)
    left.plot(x, values, marker="o", color=CURRENT)
    left.axhline(amber, color=AMBER, linestyle="--", linewidth=1)
    left.axhline(red, color=RED, linestyle="--", linewidth=1)
    left.set_title(f"PSI of {score} per month", fontsize=9)
    for axes, title in ((right, "AUC per month"),):
        realised = np.array([np.nan if v is None else v for v in realised_auc], dtype=float)
        estimated = np.array([np.nan if v is None else v for v in estimated_auc], dtype=float)
        axes.plot(x, realised, marker="o", color=CURRENT, label="realised (matured outcomes)")
        axes.plot(
            x, estimated, marker="s", linestyle=":", color=ESTIMATE, label="estimated from scores"
        )
        axes.set_title(title, fontsize=9)
        axes.legend(frameon=False, fontsize=8)
    for axes in (left, right):
        axes.set_xticks(x, list(months), rotation=45, ha="right")
        axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return _svg(figure)


def calibration(deciles: Sequence[dict[str, Any]], target: str) -> str:
    """Mean predicted vs observed rate in each score decile, against the diagonal."""
    figure, axes = _figure(width=3.6, height=3.2)
    predicted = [d["mean_predicted"] for d in deciles]
    observed = [d["observed_rate"] for d in deciles]
    top = max([*predicted, *observed, 0.01]) * 1.08
    axes.plot([0, top], [0, top], color=REFERENCE, linewidth=1, linestyle="--")
    axes.plot(predicted, observed, marker="o", color=CURRENT)
    axes.set_xlabel(f"predicted {target} rate (decile mean)")
    axes.set_ylabel("observed rate")
    return _svg(figure)


def band_mix(months: Sequence[str], shares: Mapping[str, Sequence[float]], title: str) -> str:
    """Stacked share of customers per risk band, per month."""
    figure, axes = _figure()
    x = np.arange(len(months))
    bottom = np.zeros(len(months))
    for band, values in shares.items():
        axes.bar(x, values, bottom=bottom, color=BAND_COLOURS.get(band), label=band)
        bottom += np.asarray(values, dtype=float)
    axes.set_xticks(x, list(months), rotation=45, ha="right")
    axes.set_ylabel("share of customers")
    axes.set_title(title, fontsize=9)
    axes.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(figure)
