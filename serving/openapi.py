"""The API page: our OpenAPI document and the Swagger UI page that shows it.

BentoML's own page is its boilerplate (its title, version `None`, its team as
contact, Slack and Twitter badges, a Google Tag Manager script, no security
scheme, only 200/400/404/500). This document is ours: title, version (package
plus the served model versions), a description of limits and errors, a bearer
security scheme (Swagger UI's Authorize button), every status the service
really answers with the one error shape, and `minItems`/`maxItems` from the
settings. The page loads Swagger UI from the copy shipped inside the installed
bentoml package (served at /static_content/) and nothing from anywhere else;
its Content-Security-Policy lets the browser enforce that.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from serving.schemas import (
    ErrorResponse,
    ModelsResponse,
    ScoreFeaturesRequest,
    ScoreRequest,
    ScoreResponse,
    error_body,
)

if TYPE_CHECKING:
    from clm.settings import Settings

STATIC = Path(__file__).with_name("static")
TITLE = "clm scoring API"
# The page's own policy: everything from this origin; Swagger UI needs inline styles
# and data: images (its icons); scripts only from files, never inline or remote.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# (status, when, example code, example message) per route family; all answer ErrorResponse.
Documented = tuple[int, str, str, str]
_AUTH: list[Documented] = [
    (
        401,
        "Missing or invalid bearer key (`UNAUTHORIZED`).",
        "UNAUTHORIZED",
        "missing or invalid bearer key",
    )
]
_BODY: list[Documented] = [
    (
        408,
        "The body did not arrive within `serving.body_timeout_seconds` (`REQUEST_TIMEOUT`).",
        "REQUEST_TIMEOUT",
        "the request body did not arrive within 10 s",
    ),
    (
        413,
        "Body over `serving.max_body_bytes` (`TOO_LARGE`), more than `serving.max_ids` "
        "ids or rows (`TOO_MANY_ROWS`), or more than `serving.max_explain_ids` with "
        "explain (`TOO_MANY_TO_EXPLAIN`).",
        "TOO_MANY_TO_EXPLAIN",
        "customer_ids: at most 100 per request with explain=true (got 250); split the "
        "request, or ask without explain",
    ),
    (
        415,
        "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
        "UNSUPPORTED_MEDIA_TYPE",
        "send the body as application/json",
    ),
]
_SCORING: list[Documented] = [
    (
        422,
        "The body does not validate (`INVALID_REQUEST`: invalid JSON, a wrong type, NaN or "
        "infinity, an empty list, an unknown field) or names features no served model uses "
        "(`UNKNOWN_FEATURES`); `fields` names each problem.",
        "INVALID_REQUEST",
        "explain: must be true or false (JSON booleans, not strings or numbers)",
    ),
    (
        429,
        "Too many requests with explain in flight for this key or the service "
        "(`EXPLAIN_BUSY`); retry after the `Retry-After` header's seconds.",
        "EXPLAIN_BUSY",
        "at most 1 request(s) with explain in flight per API key; wait for the previous "
        "one or retry later",
    ),
    (
        503,
        "No family has a servable champion (`NO_MODELS`) or the online feature store is "
        "unavailable (`FEATURE_STORE_UNAVAILABLE`).",
        "NO_MODELS",
        "no family has a servable champion model; see GET /models",
    ),
]
_SERVER: list[Documented] = [
    (
        500,
        "An unexpected error (`INTERNAL_ERROR`); the service log has the details.",
        "INTERNAL_ERROR",
        "An unexpected error has occurred, please check the server log.",
    )
]
_EXAMPLE_FIELDS = {
    "INVALID_REQUEST": ["explain"],
    "TOO_MANY_TO_EXPLAIN": ["customer_ids", "explain"],
}
_FORBIDDEN: Documented = (
    403,
    "An API key instead of the admin token (`FORBIDDEN`).",
    "FORBIDDEN",
    "this route needs the admin token (CLM_ADMIN_TOKEN)",
)


def package_version() -> str:
    try:
        return metadata.version("clm")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def api_version(versions: dict[str, str | None]) -> str:
    """`0.1.0 (churn v4, propensity v2, stage v3)`: the code and the models answering."""
    served = ", ".join(f"{family} v{v}" for family, v in versions.items() if v) or "no models"
    return f"{package_version()} ({served})"


@cache
def _schemas() -> dict[str, Any]:
    """Component schemas of the request/response models (JSON Schema 2020-12, as OAS 3.1 uses)."""
    from pydantic.json_schema import JsonSchemaMode, models_json_schema

    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (ScoreRequest, "validation"),
        (ScoreFeaturesRequest, "validation"),
        (ScoreResponse, "serialization"),
        (ModelsResponse, "serialization"),
        (ErrorResponse, "serialization"),
    ]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return dict(top["$defs"])


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _responses(ok: str | None, errors: list[Documented]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok is not None:
        out["200"] = {
            "description": "Success.",
            "content": {"application/json": {"schema": _ref(ok)}},
        }
    for status, when, code, message in sorted(errors):
        fields = _EXAMPLE_FIELDS.get(code, [])
        out[str(status)] = {
            "description": when,
            "content": {
                "application/json": {
                    "schema": _ref("ErrorResponse"),
                    "example": error_body(status, message, code=code, fields=fields),
                }
            },
        }
    return out


def _probe(operation: str, description: str, *, ready: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK."}}
    if ready:
        responses["503"] = {
            "description": "Not ready: no family has a servable champion model yet.",
            "content": {"application/json": {"schema": _ref("ErrorResponse")}},
        }
    return {
        "get": {
            "tags": ["Operations"],
            "operationId": operation,
            "summary": description,
            "security": [],
            "responses": responses,
        }
    }


def _description(settings: Settings) -> str:
    s = settings.serving
    contact = s.contact_name + (f" <{s.contact_email}>" if s.contact_email else "")
    return f"""Churn risk, product propensities with the next best product, and the current and
next lifecycle stage of retail-bank customers, from the champion models in the MLflow
registry (hot-swapped when the `champion` alias moves) on features from the Feast online
store. Every scored row is logged for monitoring.

**Authentication.** Every route but this page, `/docs.json` and the probes needs
`Authorization: Bearer <key>` with a key from `CLM_API_KEYS`; `/admin/*` needs
`CLM_ADMIN_TOKEN`. Use **Authorize** to set it for *Try it out*.

**Limits.** Up to {s.max_ids:,} ids or rows per request, up to {s.max_explain_ids:,} with
`"explain": true`, {s.explain_per_key} such request(s) in flight per key and
{s.explain_queue} in the service (then 429 with `Retry-After`); bodies up to
{s.max_body_bytes:,} bytes, sent within {s.body_timeout_seconds:g} s.

**Errors.** Every 4xx/5xx answer is `{{"error": {{"code", "message", "fields"}}}}`: a stable
code, a message that says what to do, and the request fields concerned. Customers the
online store does not know are not errors of the request: they come back in `errors`
with code `UNKNOWN_CUSTOMER`, never as a score on empty features.

**Each result** names the feature `snapshot` that scored it and carries `warnings`
(`MOSTLY_MISSING` when most of the row's features are missing).

**Contact:** {contact}."""


def openapi_document(settings: Settings, versions: dict[str, str | None]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service as configured and as serving now."""
    schemas = {k: dict(v) for k, v in _schemas().items()}
    # The configured bounds, so clients and fuzzers see the real limits.
    for name, field in (("ScoreRequest", "customer_ids"), ("ScoreFeaturesRequest", "rows")):
        prop = dict(schemas[name]["properties"][field])
        prop["maxItems"] = settings.serving.max_ids
        schemas[name] = {
            **schemas[name],
            "properties": {**schemas[name]["properties"], field: prop},
        }
    contact: dict[str, str] = {"name": settings.serving.contact_name}
    if settings.serving.contact_email:
        contact["email"] = settings.serving.contact_email
    scoring_errors = _AUTH + _BODY + _SCORING + _SERVER

    def scoring(operation: str, summary: str, request: str) -> dict[str, Any]:
        return {
            "post": {
                "tags": ["Scoring"],
                "operationId": operation,
                "summary": summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(request)}},
                },
                "responses": _responses("ScoreResponse", scoring_errors),
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": api_version(versions),
            "description": _description(settings),
            "contact": contact,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "Scoring", "description": "Scores for customers."},
            {"name": "Models", "description": "What is served, and reloading it."},
            {"name": "Operations", "description": "Probes and metrics (no key needed)."},
        ],
        "paths": {
            "/score": scoring(
                "score",
                "Score customers by id (features from the Feast online store)",
                "ScoreRequest",
            ),
            "/score_features": scoring(
                "score_features",
                "Score rows whose features are given inline",
                "ScoreFeaturesRequest",
            ),
            "/models": {
                "get": {
                    "tags": ["Models"],
                    "operationId": "models",
                    "summary": "Per family: registered name, alias, served version, "
                    "load and registry status",
                    "responses": _responses("ModelsResponse", _AUTH + _SERVER),
                }
            },
            "/admin/reload": {
                "post": {
                    "tags": ["Models"],
                    "operationId": "reload",
                    "summary": "Check the registry now (admin token); answers like /models",
                    "responses": _responses(
                        "ModelsResponse",
                        [*_AUTH, _FORBIDDEN, *_SERVER],
                    ),
                }
            },
            "/healthz": _probe("healthz", "Alive (deprecated alias of /livez)"),
            "/livez": _probe("livez", "Alive"),
            "/readyz": _probe(
                "readyz", "Ready: at least one family's champion is served", ready=True
            ),
            "/metrics": _probe("metrics", "Prometheus metrics"),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from CLM_API_KEYS (the admin token for /admin/*).",
                }
            },
        },
    }


@cache
def page_file(name: str) -> bytes:
    """A file of the page (serving/static/), read once."""
    return (STATIC / name).read_bytes()
