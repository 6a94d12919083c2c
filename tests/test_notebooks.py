"""The notebooks are documentation that runs: each executes top to bottom in CI (nbconvert's
executor), in a workspace it creates itself, without warnings, with its plots; the copies
checked in carry their outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# Plots each notebook must draw (image/png outputs).
MIN_PLOTS = {"01_walkthrough.ipynb": 3, "02_risk_team.ipynb": 1}


def _outputs(notebook: dict) -> list[dict]:
    return [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def _check(path: Path, notebook: dict) -> None:
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.get("output_type") == "error"], path.name
    plots = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(plots) >= MIN_PLOTS.get(path.name, 1), f"{path.name}: {len(plots)} plots"
    # No pages of library warnings between the results.
    noise = [
        o["text"]
        for o in outputs
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
        if re.search(r"Warning|deprecat", o["text"], re.IGNORECASE)
    ]
    assert not noise, f"{path.name} printed warnings: {noise[:2]}"


def test_notebooks_are_checked_in_with_their_outputs() -> None:
    import nbformat

    assert {p.name for p in NOTEBOOKS} >= set(MIN_PLOTS)
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), f"{path.name}: run it before committing"
        _check(path, notebook)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    # A user's workspace and MLflow server in the environment: the notebook must leave both
    # alone and work in a workspace of its own.
    users = tmp_path / "users-workspace"
    users.mkdir()
    monkeypatch.setenv("CLM_HOME", str(users))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{users}/mlflow.db")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    # A per-cell limit: a cell that hangs fails the test instead of the whole CI run.
    ExecutePreprocessor(timeout=300, kernel_name="python3").preprocess(
        notebook, {"metadata": {"path": str(tmp_path)}}
    )
    _check(path, notebook)
    assert not any(users.iterdir()), f"{path.name} wrote into {users}"
