"""The BentoML scoring service (`bentoml serve serving.service:ScoringService`).

Heavy work happens in `__init__` (settings, champions loaded and checked, the
online store opened); endpoints are small typed methods. The HTTP contract is in
DESIGN.md; docs/api.md has examples. The gate (auth.py) runs in front of
everything but BentoML's health and metrics routes.
"""

from __future__ import annotations

import gc
import json
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import bentoml
import numpy as np
from fastapi import FastAPI
from starlette.responses import Response

from clm.settings import FAMILIES, Settings
from serving.auth import Gate
from serving.holder import ModelHolder
from serving.predlog import PredictionLog
from serving.schemas import CustomerId, FeatureRow, ModelsResponse, ScoreResponse
from serving.scoring import ModelSet, UnknownFeatures, matrix_from_rows, risk_bands, score

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


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), allow_nan=False),
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"error": message, **extra}, status)


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
        settings = service_settings()
        self.settings = settings
        self._feature_names: dict[str, list[str]] = {}
        self.holder = ModelHolder(settings, expected_features=self._expected_features)
        self.holder.start()
        self.predictions = PredictionLog.for_settings(settings)
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

    def _warm_online(self) -> None:
        """Open the online store and read the feature services' layout now, not on a request."""
        try:
            reader = self._online()
            for family in FAMILIES:
                reader.lookup([], self.settings.models.family(family).feature_service)
        except Exception as exc:  # /score answers 503 until the store is there
            log.warning("online feature store not ready at start: %s", exc)

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
        self.predictions.close()

    # --- scoring ---
    @bentoml.api(route="/score", output_spec=ScoreResponse)
    def score(self, customer_ids: list[CustomerId], explain: bool = False) -> Response:
        """Score customers by id with features from the Feast online store (1 to max_ids ids)."""
        models = self.holder.current
        if models is None:
            return _error(503, "no champion models are loaded yet; see GET /models")
        if not customer_ids:
            return _error(
                422, "customer_ids: give at least one customer id", fields=["customer_ids"]
            )
        if len(customer_ids) > self.settings.serving.max_ids:
            return _error(
                413, f"customer_ids: at most {self.settings.serving.max_ids} ids per request"
            )
        try:
            known, matrix, unknown = self._lookup(models, customer_ids)
        except Exception:
            log.exception("online feature lookup failed")
            return _error(503, "the online feature store is unavailable; try again shortly")
        request_id = uuid.uuid4().hex
        errors = [
            {
                "customer_id": cid,
                "code": "UNKNOWN_CUSTOMER",
                "message": f"no features for customer {cid} in the online store",
            }
            for cid in unknown
        ]
        return self._respond(models, request_id, "score", known, matrix, explain, errors)

    @bentoml.api(route="/score_features", output_spec=ScoreResponse)
    async def score_features(self, rows: list[FeatureRow], explain: bool = False) -> Response:
        """Score rows whose features are given inline (names as in the feature services)."""
        models = self.holder.current
        if models is None:
            return _error(503, "no champion models are loaded yet; see GET /models")
        if not rows:
            return _error(422, "rows: give at least one row", fields=["rows"])
        if len(rows) > self.settings.serving.max_ids:
            return _error(413, f"rows: at most {self.settings.serving.max_ids} rows per request")
        try:
            matrix = matrix_from_rows(models, [(r.customer_id, r.features) for r in rows])
        except UnknownFeatures as exc:
            return _error(422, f"rows.features: {exc}", fields=exc.names)
        ids = [r.customer_id for r in rows]
        return self._respond(models, uuid.uuid4().hex, "score_features", ids, matrix, explain, [])

    def _respond(
        self,
        models: ModelSet,
        request_id: str,
        endpoint: str,
        customer_ids: list[str],
        matrix: np.ndarray,
        explain: bool,
        errors: list[dict[str, Any]],
    ) -> Response:
        if customer_ids:
            scored = score(models, customer_ids, matrix, explain=explain, bands=self.bands)
            results = scored.results
            self.predictions.append(request_id, endpoint, scored)
        else:
            results = []
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
    ) -> tuple[list[str], np.ndarray, list[str]]:
        """Online features for the three families, as one union matrix for the known ids."""
        reader = self._online()
        # Services with the same feature list are looked up once (same online values).
        frames: dict[tuple[str, ...], pd.DataFrame] = {}
        unknown: set[str] = set()
        for family in FAMILIES:
            model = models.family(family)
            if model.features not in frames:
                frame, missing = reader.lookup(list(customer_ids), model.feature_service)
                frames[model.features] = frame
                unknown.update(str(c) for c in missing)
        # The reader answers one row per requested id, in request order (duplicates kept).
        keep = np.fromiter(
            (c not in unknown for c in customer_ids), dtype=bool, count=len(customer_ids)
        )
        known = [c for c, k in zip(customer_ids, keep, strict=True) if k]
        matrix = np.full((len(known), len(models.union)), np.nan)
        if known:
            for family in FAMILIES:
                model = models.family(family)
                frame = frames[model.features]
                if len(frame) != len(customer_ids):
                    raise RuntimeError(
                        f"online lookup for {model.feature_service} returned {len(frame)} rows"
                    )
                columns = list(model.features)
                block = frame.to_numpy(dtype=np.float64, na_value=np.nan)
                if list(frame.columns) != columns:
                    block = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
                matrix[:, models.columns[family]] = block[keep]
        return known, matrix, [c for c in customer_ids if c in unknown]

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


# The decorator returns a bentoml Service (typed as the class): add the gate in front.
cast(Any, ScoringService).add_asgi_middleware(Gate, settings_provider=service_settings)
