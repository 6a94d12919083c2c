"""The model families (churn, propensity, stage) in one table.

What differs between the families lives here once, so serving, training and
monitoring look a family up instead of branching on its name: the registered
name and feature service (defaults; `mlflow.yaml` may rename them), the task,
the label columns, the boosters a model directory holds and the score columns
it produces (the prediction log's names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.errors import ClmError

__all__ = [
    "FAMILIES",
    "SPECS",
    "FamilyError",
    "FamilySpec",
    "parse_families",
    "spec",
]

# binary: one booster, one probability; per_product: one binary booster per product;
# multiclass: one booster with one output per class.
Task = Literal["binary", "per_product", "multiclass"]


class FamilyError(ClmError):
    """An unknown family name (on the command line or in a manifest)."""


@dataclass(frozen=True)
class FamilySpec:
    """One model family: names, task, labels, boosters and score columns."""

    name: str
    registered_name: str
    feature_service: str
    task: Task
    # What the family predicts, in the bank's words (help texts, docs, messages).
    predicts: str

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The label columns the family learns from (docs/contracts.md, labels)."""
        if self.task == "binary":
            return (f"{self.name}_90d",)
        if self.task == "per_product":
            return tuple(f"adopt_{p}_90d" for p in PROPENSITY_PRODUCTS)
        return (f"{self.name}_next",)

    def classes(self, manifest: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The class order of a multiclass family (empty for the others)."""
        if self.task != "multiclass":
            return ()
        return tuple((manifest or {}).get("classes") or STAGES)

    def products(self, manifest: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The products of a per-product family (empty for the others)."""
        if self.task != "per_product":
            return ()
        return tuple((manifest or {}).get("products") or PROPENSITY_PRODUCTS)

    def booster_keys(self, manifest: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The keys of a model directory's `boosters` mapping."""
        return self.products(manifest) if self.task == "per_product" else (self.name,)

    def outputs_per_booster(self, manifest: Mapping[str, Any] | None = None) -> int:
        """LightGBM's `num_model_per_iteration` each booster must have."""
        return len(self.classes(manifest)) if self.task == "multiclass" else 1

    def score_columns(self, manifest: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The score columns, in output order (as in golden rows and the prediction log)."""
        if self.task == "binary":
            return (f"{self.name}_probability",)
        if self.task == "per_product":
            return tuple(f"{self.name}_{p}" for p in self.products(manifest))
        return tuple(f"{self.name}_prob_{c}" for c in self.classes(manifest))

    def manifest_extras(self, booster_keys: Sequence[str]) -> dict[str, list[str]]:
        """What a manifest records beyond features and boosters (class or product order)."""
        if self.task == "multiclass":
            return {"classes": list(STAGES)}
        if self.task == "per_product":
            return {"products": [p for p in PROPENSITY_PRODUCTS if p in booster_keys]}
        return {}


SPECS: dict[str, FamilySpec] = {
    s.name: s
    for s in (
        FamilySpec(
            "churn",
            "clm-churn",
            "churn_v2",
            "binary",
            "probability of no transaction in the next 90 days",
        ),
        FamilySpec(
            "propensity",
            "clm-propensity",
            "propensity_v2",
            "per_product",
            "probability of taking up each product in the next 90 days",
        ),
        FamilySpec(
            "stage",
            "clm-stage",
            "stage_v2",
            "multiclass",
            "lifecycle stage 90 days from now",
        ),
    )
}
FAMILIES: tuple[str, ...] = tuple(SPECS)


def spec(name: str) -> FamilySpec:
    """The spec of family `name` (FamilyError naming the known ones otherwise)."""
    try:
        return SPECS[name]
    except KeyError:
        raise FamilyError(
            f"unknown model family {name!r}; expected one of {', '.join(FAMILIES)}"
        ) from None


def parse_families(text: str | None) -> tuple[str, ...]:
    """`churn,stage` (or `all`, or None for all) -> the families in their canonical order."""
    if text is None or text.strip() in ("", "all"):
        return FAMILIES
    asked = [part.strip() for part in text.split(",") if part.strip()]
    for name in asked:
        spec(name)
    return tuple(f for f in FAMILIES if f in asked)
