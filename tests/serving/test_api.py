"""The HTTP contract over real HTTP: fields, scores, explain, auth, limits, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.settings import Settings
from serving.scoring import risk_band, risk_bands
from tests.fixtures.service import RunningService
from tests.serving.conftest import inline_row
from tests.serving.registry_tools import champion, download_version


def post(
    service: RunningService, path: str, body: Any, *, admin: bool = False, **kw: Any
) -> httpx.Response:
    return httpx.post(
        f"{service.url}{path}", json=body, headers=service.headers(admin), timeout=30, **kw
    )


def no_traceback(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.fixture(scope="module")
def local_boosters(
    scoring_service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The champions' boosters and manifests, loaded here to check the service's numbers."""
    import lightgbm as lgb

    settings = scoring_service.settings
    out: dict[str, Any] = {}
    work = tmp_path_factory.mktemp("champions")
    for family in ("churn", "propensity", "stage"):
        version = champion(settings, family)
        root = download_version(settings, family, version, work / family)
        manifest = json.loads((root / "manifest.json").read_text())
        boosters = {
            k: lgb.Booster(model_file=str(root / p)) for k, p in manifest["boosters"].items()
        }
        out[family] = {"version": version, "manifest": manifest, "boosters": boosters}
    return out


def test_score_contract_and_numbers(
    scoring_service: RunningService,
    known_customers: list[str],
    online_rows: dict[str, dict[str, Any]],
    local_boosters: dict[str, Any],
) -> None:
    response = post(scoring_service, "/score", {"customer_ids": known_customers})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "model_versions", "results", "errors"}
    assert body["errors"] == []
    assert body["model_versions"] == {f: local_boosters[f]["version"] for f in local_boosters}
    assert [r["customer_id"] for r in body["results"]] == known_customers
    for result in body["results"]:
        cid = result["customer_id"]
        assert "reasons" not in result
        # churn: the champion booster on the online features, and its band
        churn = local_boosters["churn"]
        row = online_rows[churn["manifest"]["feature_service"]][cid]
        x = np.array(
            [[np.nan if row[f] is None else row[f] for f in churn["manifest"]["features"]]]
        )
        assert result["churn"]["probability"] == pytest.approx(
            churn["boosters"]["churn"].predict(x)[0], abs=1e-9
        )
        # the band follows the service's configured cut-offs (not the defaults, see the fixture)
        assert result["churn"]["risk_band"] == risk_band(
            result["churn"]["probability"], risk_bands(scoring_service.settings.serving)
        )
        # propensity: probabilities; the next best product is the most likely one not held
        props = result["propensity"]
        assert set(props) <= set(PROPENSITY_PRODUCTS) and props
        assert all(0.0 <= p <= 1.0 for p in props.values())
        prow = online_rows[local_boosters["propensity"]["manifest"]["feature_service"]][cid]
        not_held = {p: v for p, v in props.items() if not (prow.get(f"holds_{p}") or 0) >= 0.5}
        if not_held:
            assert result["next_best_product"] == max(not_held, key=not_held.__getitem__)
        else:
            assert result["next_best_product"] is None
        # stage: a distribution over the stages; next is its mode
        stage = result["stage"]
        probs = stage["next_probabilities"]
        assert list(probs) == list(STAGES)
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-6)
        assert stage["next"] == max(probs, key=probs.__getitem__)
        # current: the stage rules' code among the online features (None when missing)
        codes = [
            rows[cid]["stage_code"] for rows in online_rows.values() if "stage_code" in rows[cid]
        ]
        assert codes, "no served feature service holds stage_code"
        expected_current = None if codes[0] is None else STAGES[int(codes[0])]
        assert stage["current"] == expected_current


def test_score_features_matches_score(
    scoring_service: RunningService,
    trained_settings: Settings,
    known_customers: list[str],
    online_rows: dict[str, dict[str, Any]],
) -> None:
    rows = [inline_row(trained_settings, online_rows, cid) for cid in known_customers[:3]]
    inline = post(scoring_service, "/score_features", {"rows": rows})
    by_id = post(scoring_service, "/score", {"customer_ids": known_customers[:3]})
    assert inline.status_code == 200 and by_id.status_code == 200
    a, b = inline.json(), by_id.json()
    assert a["model_versions"] == b["model_versions"]
    for x, y in zip(a["results"], b["results"], strict=True):
        assert x["churn"]["probability"] == pytest.approx(y["churn"]["probability"], abs=1e-12)
        assert x["propensity"] == pytest.approx(y["propensity"], abs=1e-12)
        assert x["stage"] == y["stage"]


def test_explain_gives_lightgbm_contributions(
    scoring_service: RunningService,
    known_customers: list[str],
    online_rows: dict[str, dict[str, Any]],
    local_boosters: dict[str, Any],
) -> None:
    cid = known_customers[0]
    response = post(scoring_service, "/score", {"customer_ids": [cid], "explain": True})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    reasons = result["reasons"]
    assert set(reasons) == {"churn", "propensity", "stage"}
    churn = local_boosters["churn"]
    features = churn["manifest"]["features"]
    row = online_rows[churn["manifest"]["feature_service"]][cid]
    x = np.array([[np.nan if row[f] is None else row[f] for f in features]])
    contrib = churn["boosters"]["churn"].predict(x, pred_contrib=True)[0]
    top = reasons["churn"]
    assert 1 <= len(top) <= 5
    magnitudes = [abs(r["contribution"]) for r in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == pytest.approx(np.max(np.abs(contrib[:-1])), abs=1e-9)
    for reason in top:
        j = features.index(reason["feature"])
        assert reason["contribution"] == pytest.approx(contrib[j], abs=1e-9)
        assert reason["value"] == row[reason["feature"]]
    assert all(
        r["feature"] in local_boosters["stage"]["manifest"]["features"] for r in reasons["stage"]
    )
    if result["next_best_product"] is not None:
        assert reasons["propensity"]


def test_unknown_customers_are_errors_not_scores(
    scoring_service: RunningService, known_customers: list[str]
) -> None:
    response = post(
        scoring_service, "/score", {"customer_ids": ["C9999999", known_customers[0], "nobody"]}
    )
    assert response.status_code == 200
    body = response.json()
    assert [r["customer_id"] for r in body["results"]] == [known_customers[0]]
    assert [(e["customer_id"], e["code"]) for e in body["errors"]] == [
        ("C9999999", "UNKNOWN_CUSTOMER"),
        ("nobody", "UNKNOWN_CUSTOMER"),
    ]
    twice = post(
        scoring_service,
        "/score",
        {"customer_ids": [known_customers[1], "C9999997", known_customers[1]]},
    )
    results = twice.json()["results"]
    assert [r["customer_id"] for r in results] == [known_customers[1]] * 2
    assert results[0] == results[1]
    only_unknown = post(scoring_service, "/score", {"customer_ids": ["C9999998"]}).json()
    assert only_unknown["results"] == [] and len(only_unknown["errors"]) == 1


def test_auth(scoring_service: RunningService) -> None:
    url = scoring_service.url
    body = {"customer_ids": ["C0000001"]}
    assert httpx.post(f"{url}/score", json=body).status_code == 401
    assert (
        httpx.post(f"{url}/score", json=body, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert (
        httpx.post(f"{url}/score", json=body, headers={"Authorization": "Basic abc"}).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{url}/score", json=body, headers={"Authorization": "Bearer test-key-second"}
        ).status_code
        == 200
    )
    assert httpx.get(f"{url}/models").status_code == 401
    assert httpx.get(f"{url}/docs.json").status_code == 401
    assert httpx.get(f"{url}/models", headers=scoring_service.headers()).status_code == 200
    assert httpx.post(f"{url}/admin/reload").status_code == 401
    assert post(scoring_service, "/admin/reload", {}).status_code == 403
    assert post(scoring_service, "/admin/reload", {}, admin=True).status_code == 200
    for open_path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{open_path}").status_code == 200, open_path


def test_models_route(scoring_service: RunningService, local_boosters: dict[str, Any]) -> None:
    response = httpx.get(f"{scoring_service.url}/models", headers=scoring_service.headers())
    models = response.json()["models"]
    assert set(models) == {"churn", "propensity", "stage"}
    for family, status in models.items():
        assert status["registered_name"] == f"clm-{family}"
        assert status["alias"] == "champion"
        assert status["version"] == local_boosters[family]["version"]
        assert status["feature_service"] == f"{family}_v1"
        assert status["loaded_at"] and status["last_registry_check"]
        assert status["last_load_error"] is None and status["last_registry_error"] is None


def test_limits_and_bad_input(scoring_service: RunningService, known_customers: list[str]) -> None:
    max_ids = scoring_service.settings.serving.max_ids
    too_many = post(
        scoring_service, "/score", {"customer_ids": [f"C{i:07d}" for i in range(max_ids + 1)]}
    )
    assert too_many.status_code == 413
    assert "customer_ids" in too_many.text
    big = post(scoring_service, "/score", {"customer_ids": ["C" * 60] * 20_000})
    assert big.status_code == 413
    chunked = httpx.post(
        f"{scoring_service.url}/score",
        content=iter([b'{"customer_ids": [', b'"C0000001",' * 200_000, b'"x"]}']),
        headers={**scoring_service.headers(), "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413

    cases: list[tuple[str, Any, list[str]]] = [
        ("/score", {"customer_ids": []}, ["customer_ids"]),
        ("/score", {"customer_ids": "C0000001"}, ["customer_ids"]),
        ("/score", {"customer_ids": [42]}, ["customer_ids"]),
        ("/score", {"customer_ids": ["C0000001"], "explain": "maybe"}, ["explain"]),
        ("/score", {}, ["customer_ids"]),
        ("/score_features", {"rows": [{"customer_id": "a", "features": {"age": "old"}}]}, ["age"]),
        ("/score_features", {"rows": [{"customer_id": "a", "features": {"age": True}}]}, ["age"]),
        ("/score_features", {"rows": [{"features": {"age": 40}}]}, ["customer_id"]),
        ("/score_features", {"rows": [{"customer_id": "a", "features": {"no_such_feature": 1, "zz": 2}}]},
         ["no_such_feature", "zz"]),
        ("/score_features", {"rows": []}, ["rows"]),
    ]  # fmt: skip
    for path, body, named in cases:
        response = post(scoring_service, path, body)
        assert response.status_code == 422, (path, body, response.status_code, response.text)
        for name in named:
            assert name in response.text, (body, response.text)
        no_traceback(response)
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = '{"rows": [{"customer_id": "a", "features": {"age": LITERAL}}]}'.replace(
            "LITERAL", literal
        )
        response = httpx.post(
            f"{scoring_service.url}/score_features",
            content=raw,
            headers={**scoring_service.headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 422, (literal, response.text)
        assert "age" in response.text
    not_json = httpx.post(
        f"{scoring_service.url}/score",
        content=b"{not json",
        headers={**scoring_service.headers(), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422
    no_traceback(not_json)
    wrong_type = httpx.post(
        f"{scoring_service.url}/score",
        content=b"customer_ids=C1",
        headers=scoring_service.headers() | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert wrong_type.status_code == 415


def test_prediction_log_and_no_secrets(
    scoring_service: RunningService, known_customers: list[str]
) -> None:
    from serving.predlog import read_predictions

    response = post(scoring_service, "/score", {"customer_ids": known_customers[:2]})
    request_id = response.json()["request_id"]
    versions = response.json()["model_versions"]
    flush = scoring_service.settings.serving.prediction_log_flush_seconds
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        time.sleep(flush)
        table = read_predictions(scoring_service.settings.predictions_dir)
        rows = [r for r in table.to_pylist() if r["request_id"] == request_id]
    assert [r["customer_id"] for r in rows] == known_customers[:2]
    for r in rows:
        assert r["endpoint"] == "score"
        assert (r["version_churn"], r["version_propensity"], r["version_stage"]) == (
            versions["churn"], versions["propensity"], versions["stage"],
        )  # fmt: skip
        assert 0 <= r["churn_probability"] <= 1
        assert any(k.startswith("f_") for k in r)
    secrets = (scoring_service.api_key, scoring_service.admin_token)
    for path in [scoring_service.log_path, *scoring_service.settings.predictions_dir.rglob("*")]:
        if Path(path).is_file():
            data = Path(path).read_bytes()
            assert not any(s.encode() in data for s in secrets), path


@pytest.mark.slow
def test_fuzz_openapi_no_server_errors(scoring_service: RunningService, tmp_path: Path) -> None:
    """Schemathesis over the served OpenAPI: whatever it sends, never a 5xx."""
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{scoring_service.url}/docs.json",
            "-H",
            f"Authorization: Bearer {scoring_service.api_key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--max-time",
            "40",
            "--workers",
            "2",
            "--seed",
            "7",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]
