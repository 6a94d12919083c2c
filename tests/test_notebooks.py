"""The notebooks are documentation that runs: each executes top to bottom in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI to this process's environment,
    # so an earlier test's registry would leak into the kernel: the notebook uses its own.
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "CLM_CONFIG", "CLM_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    # A per-cell limit: a cell that hangs fails the test instead of the whole CI run.
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook produced no output"
