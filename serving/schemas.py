"""Request and response bodies of the scoring API (the HTTP contract in DESIGN.md).

Requests are validated strictly: a wrong type, NaN or infinity is a 422 that
names the field. Responses are built as plain dicts on the hot path (see
scoring.py); the models below document them in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

CustomerId = Annotated[
    str, Field(min_length=1, max_length=64, description="Customer id, a string.")
]
# A feature value: a JSON number (never NaN/inf) or null for "missing" (LightGBM's NaN).
FeatureValue = Annotated[float, Field(strict=True, allow_inf_nan=False)] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FeatureRow(_Strict):
    customer_id: CustomerId
    features: dict[str, FeatureValue] = Field(
        description="Feature name -> value; names not in any served model are a 422, "
        "missing names and nulls are treated as missing values."
    )


class Reason(BaseModel):
    feature: str
    value: float | None
    contribution: float


class ChurnScore(BaseModel):
    probability: float
    risk_band: str


class StageScore(BaseModel):
    current: str | None
    next: str
    next_probabilities: dict[str, float]


class CustomerResult(BaseModel):
    customer_id: str
    churn: ChurnScore
    propensity: dict[str, float]
    next_best_product: str | None
    stage: StageScore
    reasons: dict[str, list[Reason]] | None = None


class ScoreError(BaseModel):
    customer_id: str
    code: str
    message: str


class ScoreResponse(BaseModel):
    request_id: str
    model_versions: dict[str, str]
    results: list[CustomerResult]
    errors: list[ScoreError]


class ModelStatus(BaseModel):
    family: str
    registered_name: str
    alias: str
    version: str | None
    loaded_at: str | None
    feature_service: str | None
    last_registry_check: str | None
    last_registry_error: str | None
    last_load_error: str | None


class ModelsResponse(BaseModel):
    models: dict[str, ModelStatus]
