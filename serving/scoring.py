"""Turn feature matrices into the response: churn, propensities, stage, reasons.

Everything is numpy on the hot path (no pandas per request). One `ModelSet` is
taken at the start of a request and used to the end, so a response names exactly
the versions that scored it even while a swap happens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.settings import ServingSettings
from serving.models import LoadedModel

# Churn risk bands on the 90-day churn probability: (upper bound, exclusive; band).
# The cut-offs are configuration (mlflow.yaml `serving.risk_band_medium/high`);
# these defaults equal ServingSettings' defaults.
RiskBands = tuple[tuple[float, str], ...]
DEFAULT_RISK_BANDS: RiskBands = ((0.10, "low"), (0.30, "medium"), (math.inf, "high"))
TOP_REASONS = 5


class UnknownFeatures(ValueError):
    """Feature names that no served model uses (the API answers 422 naming them)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = sorted(set(names))
        super().__init__(
            f"unknown feature names: {', '.join(self.names[:20])}"
            + (" ..." if len(self.names) > 20 else "")
        )


@dataclass(frozen=True)
class ModelSet:
    """The served versions, swapped as one immutable value: any non-empty subset of the
    families (a family without a servable champion is absent, and so are its results)."""

    churn: LoadedModel | None = None
    propensity: LoadedModel | None = None
    stage: LoadedModel | None = None
    # Derived: the union of the served feature lists and each family's columns in it.
    union: tuple[str, ...] = field(init=False)
    union_index: dict[str, int] = field(init=False)
    columns: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        if not self.models():
            raise ValueError("a ModelSet needs at least one family's model")
        union: list[str] = []
        for model in self.models():
            union.extend(f for f in model.features if f not in union)
        index = {name: i for i, name in enumerate(union)}
        object.__setattr__(self, "union", tuple(union))
        object.__setattr__(self, "union_index", index)
        object.__setattr__(
            self,
            "columns",
            {
                m.family: np.array([index[f] for f in m.features], dtype=np.intp)
                for m in self.models()
            },
        )

    @classmethod
    def of(cls, models: Iterable[LoadedModel]) -> ModelSet:
        return cls(**{m.family: m for m in models})

    def models(self) -> tuple[LoadedModel, ...]:
        """The served models, in family order."""
        return tuple(m for m in (self.churn, self.propensity, self.stage) if m is not None)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(m.family for m in self.models())

    def family(self, name: str) -> LoadedModel | None:
        return getattr(self, name)  # type: ignore[no-any-return]

    @property
    def versions(self) -> dict[str, str]:
        return {m.family: m.version for m in self.models()}

    def replace(self, model: LoadedModel) -> ModelSet:
        return ModelSet.of([*(m for m in self.models() if m.family != model.family), model])


@dataclass
class Scored:
    """What a request scored: the response rows and the columns for the prediction log."""

    customer_ids: list[str]
    features: np.ndarray  # (rows, len(union)) in ModelSet.union order
    feature_names: tuple[str, ...]
    versions: dict[str, str]
    churn: np.ndarray
    propensity: np.ndarray  # (rows, len(PROPENSITY_PRODUCTS)), NaN for products a model lacks
    stage: np.ndarray  # (rows, len(STAGES))
    next_best: list[str | None]
    stage_current: list[str | None]
    stage_next: list[str | None]
    results: list[dict[str, Any]]


def matrix_from_rows(
    models: ModelSet,
    rows: Sequence[tuple[str, dict[str, float | None]]],
    *,
    ignored: frozenset[str] = frozenset(),
) -> np.ndarray:
    """Inline feature rows -> (rows, union) matrix; missing names and nulls are NaN.

    `ignored`: names of a family that is not served now (accepted, not used)."""
    index = models.union_index
    unknown = {
        name
        for _, features in rows
        for name in features
        if name not in index and name not in ignored
    }
    if unknown:
        raise UnknownFeatures(sorted(unknown))
    matrix = np.full((len(rows), len(models.union)), np.nan)
    for i, (_, features) in enumerate(rows):
        for name, value in features.items():
            if value is not None and name in index:
                matrix[i, index[name]] = value
    return matrix


def score(
    models: ModelSet,
    customer_ids: list[str],
    matrix: np.ndarray,
    *,
    explain: bool,
    build_results: bool = True,
    bands: RiskBands = DEFAULT_RISK_BANDS,
) -> Scored:
    """Score rows of the union feature matrix with the served families (a family not
    served: NaN scores, None labels, absent from the response rows).

    `build_results=False` (batch scoring) skips the per-row response dicts;
    `bands` (from `risk_bands(settings.serving)`) name each row's churn risk band.
    """
    rows = len(customer_ids)
    per_family = {f: np.ascontiguousarray(matrix[:, models.columns[f]]) for f in models.families}
    churn = np.full(rows, np.nan)
    if models.churn is not None:
        churn = models.churn.predict(per_family["churn"])

    propensity = np.full((rows, len(PROPENSITY_PRODUCTS)), np.nan)
    next_best: list[str | None] = [None] * rows
    if models.propensity is not None:
        raw_propensity = models.propensity.predict(per_family["propensity"])
        for j, product in enumerate(models.propensity.products):
            propensity[:, PROPENSITY_PRODUCTS.index(product)] = raw_propensity[:, j]
        # Offer only products the customer does not hold yet (holds_<product> features).
        held = np.zeros_like(propensity, dtype=bool)
        for j, product in enumerate(PROPENSITY_PRODUCTS):
            col = models.union_index.get(f"holds_{product}")
            if col is not None:
                held[:, j] = matrix[:, col] >= 0.5
        candidates = np.where(held | np.isnan(propensity), -1.0, propensity)
        best = np.argmax(candidates, axis=1)
        next_best = [
            PROPENSITY_PRODUCTS[b] if candidates[i, b] >= 0 else None for i, b in enumerate(best)
        ]

    stage_full = np.full((rows, len(STAGES)), np.nan)
    next_index = np.zeros(rows, dtype=np.intp)
    stage_next: list[str | None] = [None] * rows
    if models.stage is not None:
        stage = models.stage.predict(per_family["stage"])
        stage_full[:] = 0.0
        stage_full[:, [STAGES.index(c) for c in models.stage.classes]] = stage
        next_index = np.argmax(stage, axis=1)
        stage_next = [models.stage.classes[k] for k in next_index]
    stage_col = models.union_index.get("stage_code")
    stage_current: list[str | None] = [None] * rows
    if stage_col is not None:
        codes = matrix[:, stage_col]
        stage_current = [
            STAGES[int(c)] if not math.isnan(c) and 0 <= c < len(STAGES) else None for c in codes
        ]

    reasons: dict[str, list[list[dict[str, Any]]]] | None = None
    if explain:
        reasons = _reasons(models, per_family, next_best, next_index)

    results: list[dict[str, Any]] = []
    churn_list = churn.tolist() if build_results else []
    prop_list = propensity.tolist() if build_results else []
    stage_list = stage_full.tolist() if build_results else []
    for i, customer_id in enumerate(customer_ids if build_results else []):
        # A family that is not served is absent from the result (docs/api.md).
        result: dict[str, Any] = {"customer_id": customer_id}
        if models.churn is not None:
            p = churn_list[i]
            result["churn"] = {"probability": p, "risk_band": risk_band(p, bands)}
        if models.propensity is not None:
            result["propensity"] = {
                product: prop_list[i][j]
                for j, product in enumerate(PROPENSITY_PRODUCTS)
                if not math.isnan(prop_list[i][j])
            }
            result["next_best_product"] = next_best[i]
        if models.stage is not None:
            result["stage"] = {
                "current": stage_current[i],
                "next": stage_next[i],
                "next_probabilities": dict(zip(STAGES, stage_list[i], strict=True)),
            }
        if reasons is not None:
            result["reasons"] = {family: rows[i] for family, rows in reasons.items()}
        results.append(result)
    return Scored(
        customer_ids=customer_ids,
        features=matrix,
        feature_names=models.union,
        versions=models.versions,
        churn=churn,
        propensity=propensity,
        stage=stage_full,
        next_best=next_best,
        stage_current=stage_current,
        stage_next=stage_next,
        results=results,
    )


def risk_bands(serving: ServingSettings) -> RiskBands:
    """The configured churn risk bands (ServingSettings checks medium < high)."""
    return (
        (serving.risk_band_medium, "low"),
        (serving.risk_band_high, "medium"),
        (math.inf, "high"),
    )


def risk_band(probability: float, bands: RiskBands = DEFAULT_RISK_BANDS) -> str:
    for upper, band in bands:
        if probability < upper:
            return band
    return bands[-1][1]


def _reasons(
    models: ModelSet,
    per_family: dict[str, np.ndarray],
    next_best: list[str | None],
    next_stage: np.ndarray,
) -> dict[str, list[list[dict[str, Any]]]]:
    """Top contributions per row: churn; the next best product's booster; the predicted next stage."""
    out: dict[str, list[list[dict[str, Any]]]] = {}
    if models.churn is not None:
        churn_x = per_family["churn"]
        out["churn"] = _top(
            models.churn.features, churn_x, models.churn.contributions("churn", churn_x)
        )

    if models.propensity is not None:
        prop_x = per_family["propensity"]
        rows: list[list[dict[str, Any]]] = [[] for _ in next_best]
        for product in {p for p in next_best if p is not None}:
            if product not in models.propensity.boosters:
                continue
            idx = np.array([i for i, p in enumerate(next_best) if p == product], dtype=np.intp)
            sub = prop_x[idx]
            contributions = models.propensity.contributions(product, sub)
            for k, row in zip(
                idx, _top(models.propensity.features, sub, contributions), strict=True
            ):
                rows[int(k)] = row
        out["propensity"] = rows

    if models.stage is not None:
        stage_x = per_family["stage"]
        out["stage"] = _top(
            models.stage.features,
            stage_x,
            models.stage.contributions("stage", stage_x, next_stage),
        )
    return out


def _top(
    features: tuple[str, ...], matrix: np.ndarray, contrib: np.ndarray
) -> list[list[dict[str, Any]]]:
    k = min(TOP_REASONS, contrib.shape[1])
    order = np.argsort(-np.abs(contrib), axis=1)[:, :k]
    out = []
    for i in range(contrib.shape[0]):
        row = []
        for j in order[i]:
            value = float(matrix[i, j])
            row.append(
                {
                    "feature": features[j],
                    "value": None if math.isnan(value) else value,
                    "contribution": float(contrib[i, j]),
                }
            )
        out.append(row)
    return out
