"""The BentoML scoring service (`bentoml serve serving.service:ScoringService`).

Heavy work happens in `__init__` (settings, champions loaded and checked, the
online store opened); endpoints are small typed methods. The HTTP contract is in
DESIGN.md; docs/api.md has examples. The gate (auth.py) runs in front of
everything: keys, body limits, and one error shape for every 4xx/5xx. Scoring
runs on worker threads, explanations on their own bounded lane (limits.py), so
the event loop and plain requests never wait behind an expensive one.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import bentoml
import numpy as np
from fastapi import FastAPI
from starlette.responses import Response

from clm.settings import FAMILIES, Settings
from serving.auth import DropClientErrorTracebacks, EscapeControlCharacters, Gate, current_caller
from serving.holder import ModelHolder
from serving.launch import SUPERVISOR_PID, die_with_parent
from serving.limits import Lanes, Refused
from serving.openapi import PAGE_HEADERS, openapi_document, page_file
from serving.predlog import PredictionLog
from serving.schemas import (
    FeatureRow,
    ModelsResponse,
    ScoreFeaturesRequest,
    ScoreRequest,
    ScoreResponse,
    error_body,
)
from serving.scoring import ModelSet, UnknownFeatures, matrix_from_rows, risk_bands, score
from serving.shadow import ShadowScorer

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("serving")

_settings: Settings | None = None


def service_settings() -> Settings:
    """The service process's settings, read once from the environment (an entry point)."""
    global _settings
    if _settings is None:
        _settings = Settings.load()
    return _settings


# A row whose features are more than this share missing gets a MOSTLY_MISSING warning.
MOSTLY_MISSING = 0.5


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), allow_nan=False),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    fields: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    return _json(error_body(status, message, code=code, fields=fields), status, headers)


def _install_log_filters() -> None:
    """One line per record, and no tracebacks for clients' mistakes (an entry point:
    the worker's logging is configured by BentoML before the service starts)."""
    handlers = {h for name in ("", "bentoml") for h in logging.getLogger(name).handlers}
    for handler in handlers:
        if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            handler.addFilter(EscapeControlCharacters())
    # BentoML's api_endpoint_wrapper logs request errors through this logger.
    bentoml_http = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, DropClientErrorTracebacks) for f in bentoml_http.filters):
        bentoml_http.addFilter(DropClientErrorTracebacks())
    # BentoML reads `model_fields` on an instance for every request (pydantic 2.11
    # deprecated that): one warning line in the service log per request is noise.
    from pydantic.warnings import PydanticDeprecatedSince211

    warnings.filterwarnings(
        "ignore", category=PydanticDeprecatedSince211, module=r"_bentoml_impl\."
    )


# GET /models lives on a FastAPI app mounted at "/" (BentoML APIs are POST only);
# BentoML merges its routes into the served OpenAPI document.
models_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(
    name="clm_scoring",
    workers=1,
    traffic={"timeout": 60},
    labels={"project": "customer-lifecycle-scoring"},
)
@bentoml.asgi_app(models_app, path="/")
class ScoringService:
    """Churn, product propensity and lifecycle stage for bank customers, in one call."""

    def __init__(self) -> None:
        # The worker's entry point: the only place here that reads the environment.
        supervisor = os.environ.get(SUPERVISOR_PID)
        die_with_parent(int(supervisor) if supervisor and supervisor.isdigit() else None)
        _install_log_filters()
        settings = service_settings()
        self.settings = settings
        self.lanes = Lanes(settings.serving)
        self._feature_names: dict[str, list[str]] = {}
        self.holder = ModelHolder(settings, expected_features=self._expected_features)
        self.holder.start()
        self.predictions = PredictionLog.for_settings(settings)
        self.shadow = ShadowScorer(self.predictions)
        self.bands = risk_bands(settings.serving)
        self._reader: Any = None
        self._warm_online()
        # Everything loaded so far (mlflow, feast, pandas, SQLAlchemy, the models)
        # lives as long as the process. Without this, each full (generation 2) GC
        # walks all of it: 300-400 ms pauses every ~30 requests of 100 customers
        # were the /score p99 (bench/results-serving.md). Frozen objects are skipped.
        gc.collect()
        gc.freeze()
        log.info(
            "scoring service ready: %s",
            {f: s["version"] for f, s in self.holder.describe().items()},
        )

    def _expected_features(self, service: str) -> list[str]:
        from features.store import feature_names

        return list(feature_names(self.settings, service))

    def _unserved_features(self, models: ModelSet) -> frozenset[str]:
        """Feature names of the families not served now: a client that sends every family's
        features gets scores from the served ones, not a 422."""
        names: set[str] = set()
        for family in FAMILIES:
            if family in models.families:
                continue
            service = self.settings.models.family(family).feature_service
            if service not in self._feature_names:
                try:
                    self._feature_names[service] = self._expected_features(service)
                except Exception as exc:  # no such feature service: nothing to accept
                    log.warning("feature service %s unreadable: %s", service, exc)
                    continue
            names.update(self._feature_names[service])
        return frozenset(names)

    def _warm_online(self) -> None:
        """Open the online store and read the feature services' layout now, not on a request."""
        for family in FAMILIES:
            service = self.settings.models.family(family).feature_service
            try:
                self._online().lookup([], service)
            except Exception as exc:  # /score answers 503 until the store is there
                log.warning("online feature service %s not ready at start: %s", service, exc)

    def _online(self) -> Any:
        if self._reader is None:
            from features.online import OnlineFeatureReader

            self._reader = OnlineFeatureReader(self.settings)
        return self._reader

    def __is_ready__(self) -> bool:
        return self.holder.current is not None

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Graceful stop: no acknowledged prediction is lost."""
        self.holder.stop()
        self.shadow.close()
        self.predictions.close()

    # --- scoring ---
    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, customer_ids: list[str], explain: bool = False) -> Response:
        """Score customers by id with features from the Feast online store (1 to max_ids ids)."""
        models = self.holder.current
        if models is None:
            return _error(
                503, "no family has a servable champion model; see GET /models", code="NO_MODELS"
            )
        too_many = self._too_many("customer_ids", len(customer_ids), explain)
        if too_many is not None:
            return too_many
        work = functools.partial(self._score_ids, models, customer_ids, explain)
        return await self._run(explain, work)

    def _score_ids(self, models: ModelSet, customer_ids: list[str], explain: bool) -> Response:
        try:
            known, matrix, unknown, snapshots = self._lookup(models, customer_ids)
        except Exception:
            log.exception("online feature lookup failed")
            return _error(
                503,
                "the online feature store is unavailable; try again shortly",
                code="FEATURE_STORE_UNAVAILABLE",
            )
        errors = [
            {
                "customer_id": cid,
                "code": "UNKNOWN_CUSTOMER",
                "message": f"no features for customer {cid} in the online store",
            }
            for cid in unknown
        ]
        return self._respond(
            models, "score", known, matrix, explain, errors, unknown=unknown, snapshots=snapshots
        )

    @bentoml.api(
        route="/score_features", input_spec=ScoreFeaturesRequest, output_spec=ScoreResponse
    )
    async def score_features(self, rows: list[FeatureRow], explain: bool = False) -> Response:
        """Score rows whose features are given inline (names as in the feature services)."""
        models = self.holder.current
        if models is None:
            return _error(
                503, "no family has a servable champion model; see GET /models", code="NO_MODELS"
            )
        too_many = self._too_many("rows", len(rows), explain)
        if too_many is not None:
            return too_many

        def work() -> Response:
            try:
                matrix = matrix_from_rows(
                    models,
                    [(r.customer_id, r.features) for r in rows],
                    ignored=self._unserved_features(models),
                )
            except UnknownFeatures as exc:
                return _error(
                    422,
                    f"rows.features: {exc}",
                    code="UNKNOWN_FEATURES",
                    fields=[f"rows.features.{name}" for name in exc.names],
                )
            ids = [r.customer_id for r in rows]
            return self._respond(models, "score_features", ids, matrix, explain, [])

        return await self._run(explain, work)

    def _too_many(self, field: str, count: int, explain: bool) -> Response | None:
        serving = self.settings.serving
        if count > serving.max_ids:
            return _error(
                413,
                f"{field}: at most {serving.max_ids} per request (got {count})",
                code="TOO_MANY_ROWS",
                fields=[field],
            )
        if explain and count > serving.max_explain_ids:
            return _error(
                413,
                f"{field}: at most {serving.max_explain_ids} per request with explain=true "
                f"(got {count}); split the request, or ask without explain",
                code="TOO_MANY_TO_EXPLAIN",
                fields=[field, "explain"],
            )
        return None

    async def _run(self, explain: bool, work: Callable[[], Response]) -> Response:
        """The request's work on a worker thread of its lane; 429 over the explain limits."""
        try:
            return await self.lanes.run(current_caller(), explain, work)
        except Refused as exc:
            return _error(
                429, str(exc), code="EXPLAIN_BUSY", headers={"Retry-After": str(exc.retry_after)}
            )

    def _respond(
        self,
        models: ModelSet,
        endpoint: str,
        customer_ids: list[str],
        matrix: np.ndarray,
        explain: bool,
        errors: list[dict[str, Any]],
        *,
        unknown: Sequence[str] = (),
        snapshots: np.ndarray | None = None,
    ) -> Response:
        request_id = uuid.uuid4().hex
        results: list[dict[str, Any]] = []
        scored = None
        if customer_ids:
            scored = score(models, customer_ids, matrix, explain=explain, bands=self.bands)
            results = scored.results
            stamps: list[str | None] = [None] * len(results)
            if snapshots is not None:
                text = np.datetime_as_string(snapshots, unit="s", timezone="UTC")
                stamps = [None if t == "NaT" else t for t in text.tolist()]
            missing = np.isnan(matrix).sum(axis=1).tolist()
            width = matrix.shape[1]
            for result, stamp, absent in zip(results, stamps, missing, strict=True):
                result["snapshot"] = stamp
                result["warnings"] = (
                    [
                        {
                            "code": "MOSTLY_MISSING",
                            "message": f"{absent} of {width} features are missing: the scores "
                            "rest on the models' defaults for missing values, not on this "
                            "customer's data",
                        }
                    ]
                    if absent > MOSTLY_MISSING * width
                    else []
                )
        self.predictions.append(
            request_id, endpoint, scored, unknown=unknown, versions=models.versions
        )
        shadow = self.holder.shadow
        if endpoint == "score" and scored is not None and shadow is not None:
            self.shadow.submit(shadow, models, request_id, customer_ids, matrix)
        return _json(
            {
                "request_id": request_id,
                "model_versions": models.versions,
                "results": results,
                "errors": errors,
            }
        )

    def _lookup(
        self, models: ModelSet, customer_ids: Sequence[str]
    ) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
        """Online features for the served families, as one union matrix for the known ids,
        and each known row's snapshot (the oldest event timestamp of its feature views)."""
        reader = self._online()
        # Services with the same feature list are looked up once (same online values).
        frames: dict[tuple[str, ...], pd.DataFrame] = {}
        unknown: set[str] = set()
        snapshot = np.full(len(customer_ids), np.datetime64("NaT"), dtype="datetime64[s]")
        for model in models.models():
            if model.features not in frames:
                rows = reader.read(list(customer_ids), model.feature_service)
                frames[model.features] = rows.frame
                unknown.update(str(c) for c in rows.unknown)
                snapshot = np.fmin(snapshot, rows.snapshot)
        # The reader answers one row per requested id, in request order (duplicates kept).
        keep = np.fromiter(
            (c not in unknown for c in customer_ids), dtype=bool, count=len(customer_ids)
        )
        known = [c for c, k in zip(customer_ids, keep, strict=True) if k]
        matrix = np.full((len(known), len(models.union)), np.nan)
        if known:
            for model in models.models():
                frame = frames[model.features]
                if len(frame) != len(customer_ids):
                    raise RuntimeError(
                        f"online lookup for {model.feature_service} returned {len(frame)} rows"
                    )
                columns = list(model.features)
                block = frame.to_numpy(dtype=np.float64, na_value=np.nan)
                if list(frame.columns) != columns:
                    block = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
                matrix[:, models.columns[model.family]] = block[keep]
        return known, matrix, [c for c in customer_ids if c in unknown], snapshot[keep]

    # --- administration ---
    @bentoml.api(route="/admin/reload", output_spec=ModelsResponse)
    def reload(self) -> Response:
        """Check the registry now (admin token); answers with the state of every model."""
        self.holder.check(retry_refused=True)
        return _json({"models": self.holder.describe()})

    @models_app.get("/models", response_model=ModelsResponse)
    def models(self) -> dict[str, Any]:
        """Per model family: registered name, alias, served version, load and registry status."""
        return {"models": self.holder.describe()}

    # --- the API page (open: no customer data; see openapi.py) ---
    @models_app.get("/", include_in_schema=False)
    def api_page(self) -> Response:
        return Response(page_file("index.html"), media_type="text/html", headers=PAGE_HEADERS)

    @models_app.get("/docs/page.js", include_in_schema=False)
    def api_page_script(self) -> Response:
        return Response(page_file("page.js"), media_type="text/javascript", headers=PAGE_HEADERS)

    @models_app.get("/docs.json", include_in_schema=False)
    def openapi(self) -> Response:
        versions = {f: s["version"] for f, s in self.holder.describe().items()}
        return _json(openapi_document(self.settings, versions))


# The decorator returns a bentoml Service (typed as the class): add the gate in front.
cast(Any, ScoringService).add_asgi_middleware(Gate, settings_provider=service_settings)
