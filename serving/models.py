"""Load one registered model version and prove it is fit to serve.

A version is a model directory holding `manifest.json`, LightGBM boosters in
their native text format and `golden.parquet` (docs/contracts.md, "Registry").
Nothing is ever unpickled: boosters are parsed by LightGBM from text. A version
that fails any check raises `ModelRefused` and is never served.
"""

from __future__ import annotations

import ctypes
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.errors import ClmError
from clm.families import spec

if TYPE_CHECKING:
    import lightgbm

    from clm.settings import Settings

# From this many rows a prediction uses all cores (LightGBM's default).
MANY_ROWS = 2000
# Golden rows must reproduce the registered scores to this absolute tolerance.
GOLDEN_TOLERANCE = 1e-6


class ModelRefused(ClmError):
    """A registered version cannot be served (load failed or a check failed)."""


class RegistryUnavailable(ClmError):
    """The MLflow registry could not be asked which version is champion."""


class FastPredict:
    """`Booster.predict` for float64 numpy rows, minus its per-call set-up.

    LightGBM's Python `predict` builds a predictor object and deep-copies its
    parameters on every call (~40 us); with ten boosters per request that is most
    of the scoring time for one customer. This calls the same C function
    (`LGBM_BoosterPredictForMat`) with the same arguments directly. Checked at
    load time against `Booster.predict` on the golden rows (must be identical).
    """

    def __init__(self, booster: lightgbm.Booster) -> None:
        from lightgbm.basic import _LIB

        self._booster = booster  # keeps the handle alive
        self._lib = _LIB
        self._iteration = ctypes.c_int(booster.best_iteration)
        self._outputs = booster.num_model_per_iteration()
        self._features = booster.num_feature()
        self._one_thread = ctypes.c_char_p(b"num_threads=1")
        self._all_threads = ctypes.c_char_p(b"")

    def __call__(self, matrix: np.ndarray, *, contrib: bool = False) -> np.ndarray:
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        rows = data.shape[0]
        if data.shape[1] != self._features:
            raise ValueError(f"expected {self._features} features, got {data.shape[1]}")
        width = self._outputs * (self._features + 1) if contrib else self._outputs
        out = np.empty(rows * width)
        written = ctypes.c_int64(0)
        status = self._lib.LGBM_BoosterPredictForMat(
            self._booster._handle,
            data.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
            ctypes.c_int32(rows),
            ctypes.c_int32(self._features),
            ctypes.c_int(1),  # row major
            ctypes.c_int(3 if contrib else 0),  # C_API_PREDICT_CONTRIB / NORMAL
            ctypes.c_int(0),  # start iteration
            self._iteration,
            self._one_thread if rows < MANY_ROWS else self._all_threads,
            ctypes.byref(written),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        )
        if status != 0 or written.value != out.size:
            message = self._lib.LGBM_GetLastError()
            raise RuntimeError(f"LightGBM prediction failed: {ctypes.c_char_p(message).value!r}")
        return out if width == 1 else out.reshape(rows, width)


@dataclass(frozen=True)
class LoadedModel:
    """One family's served version: boosters in memory plus what they need."""

    family: str
    registered_name: str
    version: str
    feature_service: str
    features: tuple[str, ...]
    # Booster key -> booster. churn: {"churn"}, stage: {"stage"}, propensity: one per product.
    boosters: dict[str, lightgbm.Booster]
    classes: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    fast: dict[str, FastPredict] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fast", {k: FastPredict(b) for k, b in self.boosters.items()})

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Scores for a (rows, features) float64 matrix.

        churn -> (rows,); propensity -> (rows, products); stage -> (rows, classes).
        One thread below MANY_ROWS rows: thread start-up costs more than it saves.
        """
        if self.family == "propensity":
            out = np.empty((matrix.shape[0], len(self.products)))
            for j, product in enumerate(self.products):
                out[:, j] = self.fast[product](matrix)
            return out
        scores = self.fast["churn" if self.family == "churn" else "stage"](matrix)
        if self.family == "stage":
            return scores.reshape(matrix.shape[0], len(self.classes))
        return scores.reshape(matrix.shape[0])

    def contributions(
        self, key: str, matrix: np.ndarray, class_index: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-feature contributions (rows, features) from LightGBM's own pred_contrib.

        For the multiclass stage model, the contributions to `class_index[row]`.
        """
        raw = self.fast[key](matrix, contrib=True).reshape(matrix.shape[0], -1)
        width = len(self.features) + 1  # + the bias column
        if class_index is None:
            return raw[:, : width - 1]
        per_class = raw.reshape(matrix.shape[0], -1, width)
        return per_class[np.arange(matrix.shape[0]), class_index, : width - 1]


def load_model_dir(
    directory: Path,
    *,
    family: str,
    registered_name: str,
    version: str,
    expected_features: Callable[[str], Sequence[str]],
    probe: bool = True,
) -> LoadedModel:
    """Read and check a model directory; raise `ModelRefused` naming what is wrong.

    The boosters are first loaded and scored in a child process (`clm.model_dir`):
    LightGBM aborts the process on a truncated file or `nan` leaves, and this
    process serves. `probe=False` only for directories this process wrote itself.
    """
    import pandas as pd

    from clm.model_dir import ModelDirError, load_boosters, probe_in_child, read_model_dir

    try:
        model_dir = read_model_dir(directory, family=family)
    except ModelDirError as exc:
        raise ModelRefused(str(exc)) from None
    service, features, manifest = model_dir.feature_service, model_dir.features, model_dir.manifest
    try:
        served = list(expected_features(service))
    except Exception as exc:  # the feature store is another component: report, don't crash
        raise ModelRefused(f"cannot read feature service {service!r}: {exc}") from None
    if list(features) != served:
        missing = [f for f in served if f not in features]
        extra = [f for f in features if f not in served]
        raise ModelRefused(
            f"feature list does not match feature service {service!r} "
            f"(missing {missing[:5]}, unexpected {extra[:5]}, or a different order)"
        )
    family_spec = spec(family)
    classes = family_spec.classes(manifest)
    products = family_spec.products(manifest)
    if family_spec.task == "multiclass" and list(classes) != list(STAGES):
        raise ModelRefused(
            f"stage classes {list(classes)} differ from the vocabulary {list(STAGES)}"
        )
    unknown = [p for p in products if p not in PROPENSITY_PRODUCTS]
    if family_spec.task == "per_product" and (not products or unknown):
        raise ModelRefused(f"propensity products missing or unknown: {unknown or products}")
    try:
        if probe:
            probe_in_child(model_dir)
        boosters = load_boosters(model_dir)
    except ModelDirError as exc:
        raise ModelRefused(str(exc)) from None
    want_outputs = family_spec.outputs_per_booster(manifest)
    for key, booster in boosters.items():
        if booster.num_feature() != len(features):
            raise ModelRefused(
                f"booster {key!r} expects {booster.num_feature()} features, "
                f"manifest lists {len(features)}"
            )
        names = booster.feature_name()
        if not names[0].startswith("Column_") and names != list(features):
            raise ModelRefused(f"booster {key!r} feature names differ from the manifest's list")
        if booster.num_model_per_iteration() != want_outputs:
            raise ModelRefused(
                f"booster {key!r} has {booster.num_model_per_iteration()} outputs, "
                f"expected {want_outputs}"
            )

    model = LoadedModel(
        family=family,
        registered_name=registered_name,
        version=version,
        feature_service=service,
        features=tuple(features),
        boosters=boosters,
        classes=classes,
        products=products,
    )
    try:
        golden = pd.read_parquet(model_dir.golden)
    except Exception as exc:
        raise ModelRefused(f"golden rows are not readable parquet: {exc}") from None
    check_fast_path(model, golden)
    check_golden(model, golden)
    return model


def output_columns(model: LoadedModel, scores: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs under their score column names (as in golden.parquet)."""
    columns = spec(model.family).score_columns(
        {"classes": model.classes, "products": model.products}
    )
    block = scores.reshape(len(scores), -1)
    return {name: block[:, j] for j, name in enumerate(columns)}


def check_fast_path(model: LoadedModel, golden: Any) -> None:
    """The direct C call must give exactly what `Booster.predict` gives."""
    if any(f not in golden.columns for f in model.features):
        return  # check_golden reports the missing features
    matrix = golden[list(model.features)].to_numpy(dtype=np.float64)
    for key, booster in model.boosters.items():
        expected = np.asarray(booster.predict(matrix)).reshape(len(matrix), -1)
        got = model.fast[key](matrix).reshape(len(matrix), -1)
        contrib = np.asarray(booster.predict(matrix, pred_contrib=True)).reshape(len(matrix), -1)
        if not (
            np.array_equal(expected, got, equal_nan=True)
            and np.array_equal(
                contrib,
                model.fast[key](matrix, contrib=True).reshape(len(matrix), -1),
                equal_nan=True,
            )
        ):
            raise ModelRefused(f"booster {key!r}: direct prediction differs from Booster.predict")


def check_golden(model: LoadedModel, golden: Any) -> None:
    """Score the golden rows: finite, in [0, 1], stage rows sum to 1, equal to the registered scores."""
    missing = [f for f in model.features if f not in golden.columns]
    if missing:
        raise ModelRefused(f"golden rows lack features {missing[:5]}")
    if len(golden) == 0:
        raise ModelRefused("golden rows are empty")
    matrix = golden[list(model.features)].to_numpy(dtype=np.float64)
    scores = model.predict(matrix)
    if not np.all(np.isfinite(scores)):
        raise ModelRefused("golden rows score non-finite values")
    if np.any(scores < 0) or np.any(scores > 1):
        raise ModelRefused("golden rows score probabilities outside [0, 1]")
    if model.family == "stage" and not np.allclose(scores.sum(axis=1), 1.0, atol=1e-6):
        raise ModelRefused("stage probabilities of the golden rows do not sum to 1")
    outputs = output_columns(model, scores)
    compared = 0
    for column in golden.columns:
        if column in model.features or column not in outputs:
            continue
        expected = golden[column].to_numpy(dtype=np.float64)
        got = outputs[column]
        bad = np.flatnonzero(~np.isclose(got, expected, rtol=0, atol=GOLDEN_TOLERANCE))
        if bad.size:
            i = int(bad[0])
            raise ModelRefused(
                f"golden row {i}: {column} expected {expected[i]:.6g}, scored {got[i]:.6g}"
            )
        compared += 1
    if compared == 0:
        raise ModelRefused(
            "golden rows carry no expected scores this service recognises "
            f"(columns: {[c for c in golden.columns if c not in model.features][:8]})"
        )


def champion_version(settings: Settings, family: str) -> str | None:
    """The version the champion alias points at now (None when there is no champion)."""
    from mlflow.exceptions import MlflowException

    from clm import mlflow_access

    name = settings.models.family(family).registered_name
    client = mlflow_access.client(settings)
    try:
        version = client.get_model_version_by_alias(name, settings.aliases.champion)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise RegistryUnavailable(f"registry error for {name}: {_one_line(exc)}") from None
    except Exception as exc:
        raise RegistryUnavailable(f"registry error for {name}: {_one_line(exc)}") from None
    return str(version.version)


def load_version(
    settings: Settings,
    family: str,
    version: str,
    *,
    expected_features: Callable[[str], Sequence[str]],
) -> LoadedModel:
    """Download a registered version's model directory and load it (raises `ModelRefused`)."""
    from clm import mlflow_access

    name = settings.models.family(family).registered_name
    with tempfile.TemporaryDirectory(prefix=f"clm-{family}-{version}-") as tmp:
        try:
            local = mlflow_access.download_version(settings, name, version, tmp)
        except Exception as exc:
            raise ModelRefused(
                f"cannot download {name} version {version}: {_one_line(exc)}"
            ) from None
        return load_model_dir(
            Path(local),
            family=family,
            registered_name=name,
            version=version,
            expected_features=expected_features,
        )


def warm_up(model: LoadedModel) -> None:
    """Score a few rows once so the first real request pays no lazy set-up."""
    matrix = np.zeros((4, len(model.features)))
    for _ in range(3):
        model.predict(matrix[:1])
        model.predict(matrix)
    key = next(iter(model.boosters))
    model.contributions(
        key, matrix[:1], np.zeros(1, dtype=int) if model.family == "stage" else None
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    return message[:300]
