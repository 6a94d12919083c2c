"""A registered version's model directory: read it, and load its boosters safely.

The one home for reading a model folder (serving, batch scoring and monitoring
all use it). A directory holds `manifest.json` (family, feature service, feature
list, booster files, golden rows), LightGBM boosters in their native text format
and `golden.parquet` (docs/contracts.md, "Registry"). Every path the manifest
names must lie inside the directory.

LightGBM aborts the whole process (SIGABRT, "terminate called without an active
exception") on a truncated model file or on `nan` leaf values, so a Python
`try` cannot catch it. `open_model_dir` therefore first loads every booster and
scores the golden rows in a child process (`python -m clm.model_dir DIR`); only
a directory that survived that is loaded in this process.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm.errors import ClmError
from clm.families import FamilyError, spec

if TYPE_CHECKING:
    import lightgbm

__all__ = [
    "GOLDEN",
    "MANIFEST",
    "ModelDir",
    "ModelDirError",
    "find_manifest",
    "load_boosters",
    "open_model_dir",
    "probe_in_child",
    "read_model_dir",
]

MANIFEST = "manifest.json"
GOLDEN = "golden.parquet"
# A child that loads a few boosters and scores ~20 rows takes ~3 s (importing
# LightGBM); minutes only on a machine far busier than its cores.
PROBE_TIMEOUT_SECONDS = 300.0
# The child's exit code for a check that failed in Python (its reason is on stdout).
_REFUSED = 3


class ModelDirError(ClmError):
    """A model directory cannot be used (its message names what is wrong)."""


@dataclass(frozen=True)
class ModelDir:
    """A model directory whose manifest was read and checked (nothing loaded yet)."""

    root: Path
    manifest: dict[str, Any]
    family: str
    feature_service: str
    features: tuple[str, ...]
    # Booster key (the family, or a product) -> its file, inside `root`.
    booster_files: dict[str, Path]
    golden: Path


def find_manifest(directory: Path) -> Path:
    """`manifest.json` at the model directory's root or one level below."""
    for candidate in (directory / MANIFEST, *sorted(directory.glob(f"*/{MANIFEST}"))):
        if candidate.is_file():
            return candidate
    raise ModelDirError(f"no {MANIFEST} in the model directory ({directory.name})")


def _inside(root: Path, relative: object, what: str) -> Path:
    """`root / relative`, refused unless it is a file inside `root` (no `..`, no absolute
    path, no symlink out)."""
    if not isinstance(relative, str) or not relative:
        raise ModelDirError(f"manifest {what} must be a path inside the model directory")
    resolved_root = root.resolve()
    path = (root / relative).resolve()
    if resolved_root not in path.parents:
        raise ModelDirError(f"manifest {what} {relative!r} points outside the model directory")
    if not path.is_file():
        raise ModelDirError(f"manifest {what} {relative!r} is missing")
    return path


def read_model_dir(directory: Path, *, family: str | None = None) -> ModelDir:
    """Read and check a directory's manifest; `family`: the family it must be."""
    manifest_path = find_manifest(Path(directory))
    root = manifest_path.parent
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{MANIFEST} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ModelDirError(f"{MANIFEST} must hold a JSON object")
    name = manifest.get("family")
    if family is not None and name != family:
        raise ModelDirError(f"manifest family is {name!r}, expected {family!r}")
    try:
        family_spec = spec(str(name))
    except FamilyError as exc:
        raise ModelDirError(f"manifest: {exc}") from None
    service = manifest.get("feature_service")
    features = manifest.get("features")
    if (
        not isinstance(service, str)
        or not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) for f in features)
    ):
        raise ModelDirError(
            "manifest needs 'feature_service' (str) and a non-empty 'features' list of names"
        )
    paths = manifest.get("boosters")
    if not isinstance(paths, dict) or not paths:
        raise ModelDirError("manifest needs a non-empty 'boosters' mapping")
    keys = family_spec.booster_keys(manifest)
    if not keys or sorted(keys) != sorted(paths):
        raise ModelDirError(f"booster keys {sorted(paths)} differ from the expected {sorted(keys)}")
    files = {key: _inside(root, paths[key], f"booster {key!r}") for key in keys}
    golden = _inside(root, manifest.get("golden_rows") or GOLDEN, "golden_rows")
    return ModelDir(
        root=root,
        manifest=manifest,
        family=family_spec.name,
        feature_service=service,
        features=tuple(features),
        booster_files=files,
        golden=golden,
    )


def probe_in_child(model_dir: ModelDir, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Load the boosters and score the golden rows in a child process; `ModelDirError`
    with the reason when the child fails or crashes (this process is unharmed)."""
    from clm.process import describe_exit, run_child

    code, output = run_child(
        [sys.executable, "-m", "clm.model_dir", str(model_dir.root)], timeout=timeout
    )
    if code == 0:
        return
    if code == _REFUSED:
        raise ModelDirError(output.strip().splitlines()[-1] if output.strip() else "refused")
    detail = " ".join(
        line.strip()
        for line in output.splitlines()
        if "Fatal" in line or "terminate called" in line or "killed after" in line
    )
    raise ModelDirError(
        f"LightGBM crashed loading or scoring the boosters ({describe_exit(code)})"
        + (f": {detail[:300]}" if detail else "")
    )


def load_boosters(model_dir: ModelDir) -> dict[str, lightgbm.Booster]:
    """The boosters, parsed from text by LightGBM in this process (probe first!)."""
    import lightgbm

    boosters = {}
    for key, path in model_dir.booster_files.items():
        try:
            boosters[key] = lightgbm.Booster(model_file=str(path))
        except Exception as exc:  # LightGBM raises its own error on some corrupt models
            raise ModelDirError(
                f"booster {key!r} is not a valid LightGBM text model: {exc}"
            ) from None
    return boosters


def open_model_dir(
    directory: Path, *, family: str | None = None, probe: bool = True
) -> tuple[ModelDir, dict[str, lightgbm.Booster]]:
    """Read, probe in a child process, then load: the safe way to use a model directory
    from a process that must survive a corrupt one (raises `ModelDirError`)."""
    model_dir = read_model_dir(directory, family=family)
    if probe:
        probe_in_child(model_dir)
    return model_dir, load_boosters(model_dir)


def _probe(directory: str) -> str | None:
    """The child's work: None when every booster loads and scores the golden rows with
    finite values; otherwise the reason (a LightGBM abort never returns at all)."""
    import numpy as np
    import pandas as pd

    try:
        model_dir = read_model_dir(Path(directory))
        golden = pd.read_parquet(model_dir.golden)
    except ModelDirError as exc:
        return str(exc)
    except Exception as exc:
        return f"golden rows are not readable parquet: {exc}"
    missing = [f for f in model_dir.features if f not in golden.columns]
    if missing:
        return f"golden rows lack features {missing[:5]}"
    if len(golden) == 0:
        return "golden rows are empty"
    matrix = golden[list(model_dir.features)].to_numpy(dtype=np.float64)
    try:
        boosters = load_boosters(model_dir)
    except ModelDirError as exc:
        return str(exc)
    for key, booster in boosters.items():
        if booster.num_feature() != len(model_dir.features):
            return (
                f"booster {key!r} expects {booster.num_feature()} features, "
                f"manifest lists {len(model_dir.features)}"
            )
        scores = np.asarray(booster.predict(matrix))
        if not np.all(np.isfinite(scores)):
            return f"booster {key!r} scores non-finite values on the golden rows"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m clm.model_dir MODEL_DIR", file=sys.stderr)
        return 2
    reason = _probe(argv[0])
    if reason is None:
        return 0
    print(reason.replace("\n", " "))
    return _REFUSED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
