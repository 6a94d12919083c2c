"""One way to do each thing: the shared core (`clm/`) is the only home of what every
package needs, so a second copy cannot creep back in unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("clm", "features", "training", "serving", "monitoring", "campaigns")

# pattern -> (the one module allowed to use it, why)
HOMES = {
    r"mlflow\.set_(tracking|registry)_uri\(": (
        "clm/mlflow_access.py",
        "process-wide MLflow URIs leak between workspaces: use clm.mlflow_access",
    ),
    r"MlflowClient\(": ("clm/mlflow_access.py", "get a client from clm.mlflow_access.client"),
    r"rich\.progress": ("clm/progress.py", "show progress with clm.progress.step_progress"),
    r"\bos\.(replace|rename)\(": (
        "clm/atomic.py",
        "replace files and tables with clm.atomic (atomic_path, staged_dir, ...)",
    ),
    r"^def (auc|ks|log_loss|brier|pr_auc|calibration\w*|\w*lift\w*)\(": (
        "clm/metrics.py",
        "compute model metrics with clm.metrics",
    ),
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("pattern", sorted(HOMES))
def test_each_shared_concern_has_one_home(pattern: str) -> None:
    home, why = HOMES[pattern]
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in _sources()
        if path.relative_to(REPO).as_posix() != home
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not found, f"{why}; found at {', '.join(found)}"
