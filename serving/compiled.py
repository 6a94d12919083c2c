"""Compiled trees for batch scoring: each booster of a version compiled once, cached, checked.

LightGBM's `predict` walks every tree node by node through generic arrays;
lleaves (LLVM) turns each tree into straight-line machine code instead, which
scores the same rows several times faster (bench/results-serving.md). A
booster is compiled once per registered version and cached under
`$CLM_HOME/compiled/<registered name>/<version>/`, keyed by the SHA-256 of the
booster's model text, so a re-registered version or a changed booster never
picks up a stale binary:

    <key>-<sha16>.txt    the model text that was compiled (lleaves reads its header)
    <key>-<sha16>.o      the machine code
    <key>-<sha16>.json   the object's SHA-256, the compile time, the check's worst difference

Compilation runs in a child process (`python -m serving.compiled`): lleaves
parses the model text itself and LLVM generates code from it, so a hostile or
corrupt booster file can at worst crash or hang that child, which also runs the
new code once. The parent then compares the compiled scores with LightGBM's on
check rows (real rows, the same rows with values knocked out to NaN, all-NaN
and all-zero rows) and records the object only if every score is within
`TOLERANCE`; it loads a cached object only when the object's SHA-256 matches
that record, and checks it on the same rows again before use.
A booster that fails any step keeps LightGBM's own prediction (the reason is
reported); contributions (the reasons of a score) always come from LightGBM.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clm import atomic
from serving.models import MANY_ROWS, FastPredict, LoadedModel

if TYPE_CHECKING:
    from clm.settings import Settings
    from serving.scoring import ModelSet

__all__ = [
    "TOLERANCE",
    "CompiledPredict",
    "CompileOutcome",
    "cache_dir",
    "check_rows",
    "compile_models",
    "compiled_model",
]

# Compiled scores must equal Booster.predict's to this absolute tolerance.
TOLERANCE = 1e-9
# A compile that takes longer than this is abandoned (the booster keeps LightGBM).
COMPILE_TIMEOUT_S = 1800
# Forests with more trees are compiled without inlining (see `_load`).
INLINE_MAX_TREES = 2000
CHECK_ROWS = 512


@dataclass(frozen=True)
class CompileOutcome:
    """What happened to one booster: `compiled` (fresh), `cached`, or `lightgbm` (+ reason)."""

    family: str
    key: str
    status: str
    seconds: float = 0.0
    max_difference: float | None = None
    reason: str = ""


class CompiledPredict:
    """Drop-in for `FastPredict`: compiled scores; contributions from LightGBM."""

    def __init__(self, model: Any, fallback: FastPredict) -> None:
        self._model = model  # lleaves.Model, compiled
        self._fallback = fallback
        self._threads = os.cpu_count() or 1

    def __call__(self, matrix: np.ndarray, *, contrib: bool = False) -> np.ndarray:
        if contrib:
            return self._fallback(matrix, contrib=True)
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        jobs = 1 if data.shape[0] < MANY_ROWS else self._threads
        return np.asarray(self._model.predict(data, n_jobs=jobs)).reshape(-1)


def cache_dir(settings: Settings, registered_name: str, version: str) -> Path:
    return settings.home / "compiled" / registered_name / str(version)


def check_rows(sample: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows that exercise every branch kind: real rows, the same with ~30% NaN, all NaN, zeros."""
    rng = np.random.default_rng(seed)
    real = np.asarray(sample, dtype=np.float64)
    if len(real) > CHECK_ROWS:
        real = real[np.sort(rng.choice(len(real), CHECK_ROWS, replace=False))]
    holes = real.copy()
    holes[rng.random(holes.shape) < 0.3] = np.nan
    width = real.shape[1]
    edge = np.vstack([np.full((1, width), np.nan), np.zeros((1, width))])
    return np.ascontiguousarray(np.vstack([real, holes, edge]))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compile_in_child(text_path: Path, object_path: Path, rows_path: Path) -> dict[str, Any]:
    """Run the compile + check in a child process; returns its record or raises RuntimeError."""
    command = [sys.executable, "-m", "serving.compiled", str(text_path), str(object_path)]
    try:
        done = subprocess.run(
            [*command, str(rows_path)],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"compilation took over {COMPILE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        how = (
            f"killed by signal {-done.returncode}"
            if done.returncode < 0
            else f"exit {done.returncode}"
        )
        raise RuntimeError(f"compiler child failed ({how}): {lines[-1] if lines else ''}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _load(text_path: Path, object_path: Path) -> Any:
    """The lleaves model: compiled into `object_path`, or loaded from it when it exists."""
    import lleaves

    model = lleaves.Model(model_file=str(text_path))
    # Inlining each tree into the scoring loop made a 350-tree booster score 11x LightGBM's
    # speed instead of 7x, but compiled 2.3x slower (30 s vs 13 s on the busy box): big
    # forests skip it so that a first batch does not wait a quarter of an hour.
    model.compile(cache=str(object_path), finline=model.num_trees() <= INLINE_MAX_TREES)
    return model


def _one_booster(
    family: str,
    key: str,
    fast: FastPredict,
    text: str,
    folder: Path,
    rows: np.ndarray,
    compile_missing: bool = True,
) -> tuple[CompileOutcome, CompiledPredict | None]:
    started = time.perf_counter()
    stem = f"{key}-{_digest(text.encode())[:16]}"
    text_path, object_path = folder / f"{stem}.txt", folder / f"{stem}.o"
    record_path = folder / f"{stem}.json"
    status = "cached"
    try:
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
        if (
            record is None
            or not object_path.is_file()
            or not text_path.is_file()
            or _digest(object_path.read_bytes()) != record.get("object_sha256")
        ):
            if not compile_missing:
                return CompileOutcome(family, key, "lightgbm", 0.0, None, "not compiled yet"), None
            status = "compiled"
            record_path.unlink(missing_ok=True)
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder, prefix=".compile-") as tmp_name:
                tmp = Path(tmp_name)
                (tmp / "model.txt").write_text(text)
                np.save(tmp / "rows.npy", rows)
                record = _compile_in_child(tmp / "model.txt", tmp / "model.o", tmp / "rows.npy")
                record["object_sha256"] = _digest((tmp / "model.o").read_bytes())
                atomic.move_into_place(tmp / "model.txt", text_path)
                atomic.move_into_place(tmp / "model.o", object_path)
        model = _load(text_path, object_path)
        compiled = CompiledPredict(model, fast)
        expected = fast(rows).reshape(-1)
        got = compiled(rows)
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
        if not worst <= TOLERANCE:
            raise RuntimeError(f"compiled scores differ from LightGBM's by {worst:.3g}")
        if status == "compiled":
            # Written last: a record names an object that compiled and passed the check.
            record_path.write_text(json.dumps({**record, "max_difference": worst}))
        outcome = CompileOutcome(family, key, status, time.perf_counter() - started, worst)
        return outcome, compiled
    except Exception as exc:  # any failure: this booster keeps LightGBM, the batch goes on
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return CompileOutcome(
            family, key, "lightgbm", time.perf_counter() - started, None, reason
        ), None


def compiled_model(
    settings: Settings, model: LoadedModel, sample: np.ndarray, *, compile_missing: bool = True
) -> tuple[LoadedModel, list[CompileOutcome]]:
    """`model` with compiled predictors where compilation and the check succeed.

    `sample`: real feature rows of this model (rows, len(model.features)) for the check.
    `compile_missing=False`: use only boosters already in the cache, compile nothing.
    """
    compiled, outcomes = _compile_all(
        settings, [model], {model.family: sample}, None, compile_missing
    )
    return compiled[0], outcomes


def compile_models(
    settings: Settings,
    models: ModelSet,
    sample: np.ndarray,
    *,
    progress: Callable[[CompileOutcome], None] | None = None,
    compile_missing: bool = True,
) -> tuple[ModelSet, list[CompileOutcome]]:
    """The champions with compiled predictors (compiled once per version, then cached).

    `sample`: real rows of the union feature matrix (`models.union` order) for the checks.
    `compile_missing=False`: use only boosters already in the cache, compile nothing.
    """
    from serving.scoring import ModelSet

    families = models.models()
    samples = {m.family: sample[:, models.columns[m.family]] for m in families}
    compiled, outcomes = _compile_all(settings, list(families), samples, progress, compile_missing)
    return ModelSet.of(compiled), outcomes


def _compile_all(
    settings: Settings,
    models: list[LoadedModel],
    samples: dict[str, np.ndarray],
    progress: Callable[[CompileOutcome], None] | None,
    compile_missing: bool = True,
) -> tuple[list[LoadedModel], list[CompileOutcome]]:
    jobs = []
    for model in models:
        folder = cache_dir(settings, model.registered_name, model.version)
        rows = check_rows(samples[model.family])
        for key, booster in model.boosters.items():
            jobs.append((model, key, booster.model_to_string(), folder, rows))
    results: dict[tuple[str, str], tuple[CompileOutcome, CompiledPredict | None]] = {}

    def work(job: tuple[LoadedModel, str, str, Path, np.ndarray]) -> None:
        model, key, text, folder, rows = job
        result = _one_booster(
            model.family, key, model.fast[key], text, folder, rows, compile_missing
        )
        results[(model.family, key)] = result
        if progress is not None:
            progress(result[0])

    # One compiler child per core: LLVM is single-threaded.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        list(pool.map(work, jobs))
    out = []
    for model in models:
        fast = {key: results[(model.family, key)][1] or model.fast[key] for key in model.boosters}
        copy = replace(model)
        object.__setattr__(copy, "fast", fast)  # as LoadedModel.__post_init__ sets it
        out.append(copy)
    return out, [results[(m.family, k)][0] for m in models for k in m.boosters]


def _child_main(text_path: str, object_path: str, rows_path: str) -> int:
    """Compile `text_path` to `object_path` and run it once on the rows; print a record.

    Only lleaves and LLVM run here (no LightGBM): the parent compares the scores with
    LightGBM's before it uses or caches the object.
    """
    started = time.perf_counter()
    rows = np.load(rows_path)
    model = _load(Path(text_path), Path(object_path))
    compile_s = time.perf_counter() - started
    scores = np.asarray(model.predict(rows, n_jobs=1))
    if not np.all(np.isfinite(scores)):
        print("compiled model scores non-finite values on the check rows")
        return 3
    record = {
        "compile_s": round(compile_s, 3),
        "check_rows": int(rows.shape[0]),
        "trees": int(model.num_trees()),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:4]))
