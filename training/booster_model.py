"""A model directory's boosters, scored from its manifest (see docs/contracts.md, Registry).

Standalone on purpose (imports only numpy, pandas and lightgbm): it is copied into
the propensity model's MLflow directory as the pyfunc `loader_module`, so
`mlflow.pyfunc.load_model` works without this repository and without pickles.
Training uses it too, to score golden rows and champions the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


class BoosterModel:
    """The boosters of one registered version, with named score columns."""

    def __init__(self, manifest: dict[str, Any], boosters: dict[str, Any]) -> None:
        self.manifest = manifest
        self.boosters = boosters
        self.family: str = manifest["family"]
        self.features: list[str] = list(manifest["features"])

    @classmethod
    def load(cls, model_dir: str | Path) -> BoosterModel:
        import lightgbm as lgb

        root = Path(model_dir)
        manifest = json.loads((root / MANIFEST).read_text())
        boosters = {
            key: lgb.Booster(model_file=str(root / relative))
            for key, relative in manifest["boosters"].items()
        }
        return cls(manifest, boosters)

    def score_columns(self) -> list[str]:
        if self.family == "churn":
            return ["churn_probability"]
        if self.family == "propensity":
            return [f"propensity_{p}" for p in self.manifest["products"]]
        return [f"stage_prob_{s}" for s in self.manifest["classes"]]

    def score(self, rows: Any) -> Any:
        """Scores for a DataFrame holding (at least) the manifest's features."""
        import pandas as pd

        missing = [f for f in self.features if f not in rows.columns]
        if missing:
            raise KeyError(f"rows lack feature column(s) {missing}")
        matrix = rows[self.features].to_numpy(dtype=np.float64)
        out = pd.DataFrame(index=rows.index)
        if self.family == "churn":
            out["churn_probability"] = self.boosters["churn"].predict(matrix)
        elif self.family == "propensity":
            for product in self.manifest["products"]:
                out[f"propensity_{product}"] = self.boosters[product].predict(matrix)
        else:
            proba = np.asarray(self.boosters["stage"].predict(matrix)).reshape(len(rows), -1)
            for i, stage in enumerate(self.manifest["classes"]):
                out[f"stage_prob_{stage}"] = proba[:, i]
        return out

    # MLflow pyfunc interface.
    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.score(model_input)


def _load_pyfunc(path: str) -> BoosterModel:
    """MLflow's loader_module entry point: `path` is the model directory."""
    return BoosterModel.load(path)
