"""Request and response bodies of the scoring API (the HTTP contract in DESIGN.md).

Requests are validated strictly: a wrong type (`"yes"` for a boolean, `42` for
an id), NaN or infinity, or a field the API does not know is a 422 that names
it. Responses are built as plain dicts on the hot path (see scoring.py); the
models below document them in the OpenAPI document (serving/openapi.py).

Every 4xx/5xx the service answers has one shape, `ErrorResponse`:
`{"error": {"code": "...", "message": "...", "fields": [...]}}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

CustomerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Customer id, a string (printable characters).",
        examples=["C0000042"],
    ),
]
# A feature value: a JSON number (never NaN/inf) or null for "missing" (LightGBM's NaN).
FeatureValue = Annotated[float, Field(strict=True, allow_inf_nan=False)] | None
Explain = Annotated[
    bool,
    Field(
        strict=True,
        description="Add `reasons` (LightGBM's per-feature contributions) to each result. "
        "Costs ~100x a plain score: at most `serving.max_explain_ids` ids or rows per "
        "request and `serving.explain_per_key` such requests in flight per key.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ScoreRequest(_Strict):
    """POST /score: customers by id; features come from the Feast online store."""

    customer_ids: list[CustomerId] = Field(
        min_length=1,
        description="1 to `serving.max_ids` customer ids (duplicates are scored twice).",
    )
    explain: Explain = False


class FeatureRow(_Strict):
    customer_id: CustomerId
    features: dict[str, FeatureValue] = Field(
        description="Feature name -> value; names not in any served model are a 422, "
        "missing names and nulls are treated as missing values.",
        examples=[{"age": 41, "tenure_months": 30, "days_since_last_txn": 3}],
    )


class ScoreFeaturesRequest(_Strict):
    """POST /score_features: rows whose features are given inline."""

    rows: list[FeatureRow] = Field(min_length=1, description="1 to `serving.max_ids` rows.")
    explain: Explain = False


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


class RowWarning(BaseModel):
    code: str = Field(description="MOSTLY_MISSING: most of the row's features are missing.")
    message: str


class CustomerResult(BaseModel):
    customer_id: str
    snapshot: str | None = Field(
        description="The feature snapshot that scored the row: the event timestamp the online "
        "store holds for the customer (ISO 8601, UTC); null for /score_features rows."
    )
    # Each family's part is absent when that family is not served (GET /models says why).
    churn: ChurnScore | None = Field(None, description="Absent when churn is not served.")
    propensity: dict[str, float] | None = Field(
        None, description="Absent when propensity is not served."
    )
    next_best_product: str | None = Field(None, description="Absent when propensity is not served.")
    stage: StageScore | None = Field(None, description="Absent when stage is not served.")
    reasons: dict[str, list[Reason]] | None = Field(None, description='Only with "explain": true.')
    warnings: list[RowWarning] = Field(
        description="Problems with the row's inputs (e.g. most features missing)."
    )


class ScoreError(BaseModel):
    customer_id: str
    code: str = Field(description="UNKNOWN_CUSTOMER: no features in the online store.")
    message: str


_EXAMPLE_RESULT: JsonDict = {
    "request_id": "5f0c1d2e3a4b4c5d9e8f7a6b5c4d3e2f",
    "model_versions": {"churn": "4", "propensity": "2", "stage": "3"},
    "results": [
        {
            "customer_id": "C0000042",
            "snapshot": "2025-07-01T00:00:00Z",
            "churn": {"probability": 0.12, "risk_band": "medium"},
            "propensity": {"time_deposit": 0.04, "credit_card": 0.31, "mortgage": 0.02},
            "next_best_product": "credit_card",
            "stage": {
                "current": "growing",
                "next": "mature",
                "next_probabilities": {"growing": 0.3, "mature": 0.6, "declining": 0.1},
            },
            "warnings": [],
        }
    ],
    "errors": [
        {
            "customer_id": "C9999999",
            "code": "UNKNOWN_CUSTOMER",
            "message": "no features for customer C9999999 in the online store",
        }
    ],
}


class ScoreResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_RESULT]})

    request_id: str
    model_versions: dict[str, str]
    results: list[CustomerResult]
    errors: list[ScoreError]


class ShadowStatus(BaseModel):
    """The family's challenger, scored in the background on /score traffic (never answers)."""

    alias: str
    version: str | None
    loaded_at: str | None
    last_load_error: str | None


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
    served: bool = Field(description="Whether this family scores requests now.")
    reason: str | None = Field(
        description="Why the family is not served (no champion, refused version, registry "
        "unreachable); null while it is served."
    )
    shadow: ShadowStatus | None = None


class ModelsResponse(BaseModel):
    models: dict[str, ModelStatus]


# --- errors: one shape for every 4xx/5xx ---


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: see the table in docs/api.md.")
    message: str = Field(description="What is wrong and what to do, in plain words.")
    fields: list[str] = Field(
        description="The request fields concerned (e.g. `customer_ids[3]`, "
        "`rows[0].features.age`); empty when none is."
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


# The code of each status when nothing more specific applies.
ERROR_CODES: Mapping[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_REQUEST",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
    504: "TIMEOUT",
}


def error_body(
    status: int, message: str, *, code: str | None = None, fields: Iterable[str] = ()
) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message", "fields"}}."""
    default = ERROR_CODES.get(status, "CLIENT_ERROR" if status < 500 else "SERVER_ERROR")
    return {"error": {"code": code or default, "message": message, "fields": list(fields)}}


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a path: ('rows', 0, 'features', 'age') -> rows[0].features.age."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_PLAIN = {
    "extra_forbidden": "unknown field (not part of this API)",
    "missing": "required",
    "bool_type": "must be true or false (JSON booleans, not strings or numbers)",
    "string_type": "must be a string",
    "float_type": "must be a JSON number or null",
    "finite_number": "must be a finite number (NaN and infinity are not accepted)",
    "list_type": "must be a JSON array",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "string_too_long": "is too long",
    "string_pattern_mismatch": "must be printable characters (no control characters)",
}


def validation_problems(
    errors: Iterable[Mapping[str, Any]], limit: int = 10
) -> tuple[str, list[str]]:
    """Pydantic's errors (without their inputs) -> our message and the fields named.

    The message never quotes the client's values, only the field paths and what
    each one must be; at most `limit` problems are spelled out.
    """
    problems: list[str] = []
    fields: list[str] = []
    total = 0
    for err in errors:
        total += 1
        kind = str(err.get("type", ""))
        if kind == "json_invalid":
            return f"the body is not valid JSON ({err.get('msg', '')})", []
        path = field_path(err.get("loc", ())) or "body"
        if path not in fields:
            fields.append(path)
        if len(problems) < limit:
            problems.append(f"{path}: {_PLAIN.get(kind) or err.get('msg', kind)}")
    more = total - len(problems)
    message = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
    return message or "the body does not match the API's schema", fields
