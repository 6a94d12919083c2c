"""The HTTP contract over real HTTP: fields, scores, explain, auth, limits, bad input."""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from clm.domain import PROPENSITY_PRODUCTS, STAGES
from clm.settings import Settings
from serving.scoring import risk_band, risk_bands
from tests.fixtures.service import OTHER_KEY, RunningService
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


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The one error shape, {"error": {"code", "message", "fields"}}, and nothing of pydantic's."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and error["code"].isupper()
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], list) and all(isinstance(f, str) for f in error["fields"])
    assert "pydantic" not in response.text and "validation error for" not in response.text
    no_traceback(response)
    return error  # type: ignore[no-any-return]


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


def test_results_name_their_snapshot_and_warn_when_inputs_are_missing(
    scoring_service: RunningService,
    trained_settings: Settings,
    known_customers: list[str],
    online_rows: dict[str, dict[str, Any]],
) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(
        trained_settings.feature_dir / "customer_features.parquet", columns=["event_timestamp"]
    )
    latest = pc.max(table["event_timestamp"]).as_py()
    by_id = post(scoring_service, "/score", {"customer_ids": known_customers[:2]}).json()
    for result in by_id["results"]:
        assert result["snapshot"] == latest.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert result["warnings"] == []
    full = inline_row(trained_settings, online_rows, known_customers[0])
    sparse = {"customer_id": "sparse", "features": dict(list(full["features"].items())[:5])}
    empty = {"customer_id": "empty", "features": {}}
    inline = post(scoring_service, "/score_features", {"rows": [full, sparse, empty]}).json()
    results = {r["customer_id"]: r for r in inline["results"]}
    assert results[known_customers[0]]["warnings"] == []
    assert all(r["snapshot"] is None for r in results.values())  # inline rows: no snapshot
    for cid in ("sparse", "empty"):
        (warning,) = results[cid]["warnings"]
        assert warning["code"] == "MOSTLY_MISSING"
    width = len(full["features"])
    assert results["empty"]["warnings"][0]["message"].startswith(f"{width} of {width} features")


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
    assert httpx.get(f"{url}/models", headers=scoring_service.headers()).status_code == 200
    assert httpx.post(f"{url}/admin/reload").status_code == 401
    forbidden = post(scoring_service, "/admin/reload", {})
    assert forbidden.status_code == 403 and error_of(forbidden)["code"] == "FORBIDDEN"
    assert post(scoring_service, "/admin/reload", {}, admin=True).status_code == 200
    # The admin token is not an API key.
    assert (
        httpx.post(f"{url}/score", json=body, headers=scoring_service.headers(True)).status_code
        == 401
    )
    unauthorised = httpx.get(f"{url}/models")
    assert error_of(unauthorised)["code"] == "UNAUTHORIZED"
    assert unauthorised.headers["www-authenticate"] == "Bearer"
    # Probes, metrics and the API page (no customer data) need no key.
    for open_path in ("/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json"):
        assert httpx.get(f"{url}{open_path}").status_code == 200, open_path


def test_models_route(scoring_service: RunningService, local_boosters: dict[str, Any]) -> None:
    response = httpx.get(f"{scoring_service.url}/models", headers=scoring_service.headers())
    models = response.json()["models"]
    assert set(models) == {"churn", "propensity", "stage"}
    for family, status in models.items():
        assert status["registered_name"] == f"clm-{family}"
        assert status["alias"] == "champion"
        assert status["version"] == local_boosters[family]["version"]
        configured = scoring_service.settings.models.family(family).feature_service
        assert status["feature_service"] == configured
        assert status["loaded_at"] and status["last_registry_check"]
        assert status["last_load_error"] is None and status["last_registry_error"] is None
        assert status["served"] is True and status["reason"] is None


def test_limits_and_bad_input(scoring_service: RunningService, known_customers: list[str]) -> None:
    max_ids = scoring_service.settings.serving.max_ids
    too_many = post(
        scoring_service, "/score", {"customer_ids": [f"C{i:07d}" for i in range(max_ids + 1)]}
    )
    assert too_many.status_code == 413
    assert "customer_ids" in too_many.text
    assert error_of(too_many)["code"] == "TOO_MANY_ROWS"
    cap = scoring_service.settings.serving.max_body_bytes
    big = post(scoring_service, "/score", {"customer_ids": ["C" * 60] * (cap // 60)})
    assert big.status_code == 413 and error_of(big)["code"] == "TOO_LARGE"
    chunked = httpx.post(
        f"{scoring_service.url}/score",
        content=iter([b'{"customer_ids": [', b'"C0000001",' * (cap // 11 + 1), b'"x"]}']),
        headers={**scoring_service.headers(), "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413 and error_of(chunked)["code"] == "TOO_LARGE"

    cases: list[tuple[str, Any, list[str]]] = [
        ("/score", {"customer_ids": []}, ["customer_ids"]),
        ("/score", {"customer_ids": "C0000001"}, ["customer_ids"]),
        ("/score", {"customer_ids": [42]}, ["customer_ids"]),
        ("/score", {"customer_ids": ["C0000001"], "explain": "maybe"}, ["explain"]),
        # Strict: no coercion of "yes"/1 to true; unknown fields are named, as in /score_features.
        ("/score", {"customer_ids": ["C0000001"], "explain": "yes"}, ["explain"]),
        ("/score", {"customer_ids": ["C0000001"], "explain": 1}, ["explain"]),
        ("/score", {"customer_ids": ["C0000001"], "explian": True}, ["explian"]),
        ("/score", {"customer_ids": ["C00\u000001"]}, ["customer_ids[0]"]),
        ("/score", {}, ["customer_ids"]),
        ("/score_features", {"rows": [{"customer_id": "a", "features": {}}], "expl": True}, ["expl"]),
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
        error = error_of(response)
        for name in named:
            assert any(name in f for f in error["fields"]), (body, error)
            assert name in error["message"], (body, error)
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
    assert "not valid JSON" in error_of(not_json)["message"]
    wrong_type = httpx.post(
        f"{scoring_service.url}/score",
        content=b"customer_ids=C1",
        headers=scoring_service.headers() | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert wrong_type.status_code == 415
    assert error_of(wrong_type)["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_media_types_are_case_insensitive_and_every_error_is_json(
    scoring_service: RunningService, known_customers: list[str]
) -> None:
    body = json.dumps({"customer_ids": known_customers[:1]})
    for media in ("APPLICATION/JSON", "Application/Json; charset=UTF-8"):
        response = httpx.post(
            f"{scoring_service.url}/score",
            content=body,
            headers={**scoring_service.headers(), "Content-Type": media},
        )
        assert response.status_code == 200, (media, response.text)
    missing = httpx.get(f"{scoring_service.url}/no/such/route", headers=scoring_service.headers())
    assert missing.status_code == 404 and error_of(missing)["code"] == "NOT_FOUND"
    wrong = httpx.delete(f"{scoring_service.url}/score", headers=scoring_service.headers())
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "METHOD_NOT_ALLOWED"


def test_the_documented_maximum_body_is_accepted(
    scoring_service: RunningService,
    trained_settings: Settings,
    known_customers: list[str],
    online_rows: dict[str, dict[str, Any]],
) -> None:
    """1,000 rows of every feature, at full float precision, fit under the body cap."""
    max_rows = scoring_service.settings.serving.max_ids
    template = inline_row(trained_settings, online_rows, known_customers[0])["features"]
    features = {name: -1.2345678901234567e-300 for name in template}
    rows = [{"customer_id": f"C{i:07d}", "features": features} for i in range(max_rows)]
    body = json.dumps({"rows": rows, "explain": False}, indent=1).encode()
    assert len(body) > 2_000_000  # it really is the large case
    response = httpx.post(
        f"{scoring_service.url}/score_features",
        content=body,
        headers={**scoring_service.headers(), "Content-Type": "application/json"},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["results"]) == max_rows


def test_explanations_are_bounded(
    scoring_service: RunningService, known_customers: list[str]
) -> None:
    """Defect 4 (over HTTP): ids with explain are capped; one explanation per key at a time."""
    serving = scoring_service.settings.serving
    ids = [known_customers[i % len(known_customers)] for i in range(serving.max_explain_ids + 1)]
    over = post(scoring_service, "/score", {"customer_ids": ids, "explain": True})
    assert over.status_code == 413, over.text
    error = error_of(over)
    assert (
        error["code"] == "TOO_MANY_TO_EXPLAIN" and str(serving.max_explain_ids) in error["message"]
    )
    assert post(scoring_service, "/score", {"customer_ids": ids}).status_code == 200
    assert (
        post(scoring_service, "/score", {"customer_ids": ids[:-1], "explain": True}).status_code
        == 200
    )

    def explain(_: int) -> httpx.Response:
        return post(scoring_service, "/score", {"customer_ids": ids[:-1], "explain": True})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(explain, range(6)))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 1, statuses
    for busy in (r for r in answers if r.status_code == 429):
        assert error_of(busy)["code"] == "EXPLAIN_BUSY"
        assert int(busy.headers["retry-after"]) >= 1
    # Another key is not held back by the first key's explanations.
    other = httpx.post(
        f"{scoring_service.url}/score",
        json={"customer_ids": ids[:-1], "explain": True},
        headers={"Authorization": f"Bearer {OTHER_KEY}"},
        timeout=60,
    )
    assert other.status_code == 200


def test_a_slow_body_is_cut_off_with_408_and_holds_no_one_up(
    scoring_service: RunningService, known_customers: list[str]
) -> None:
    timeout = scoring_service.settings.serving.body_timeout_seconds
    host, port = scoring_service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout + 20) as slow:
        slow.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {scoring_service.api_key}\r\n".encode()
            + b"Content-Length: 1000\r\n\r\n"
            + b'{"customer_ids": ['
        )
        started = time.monotonic()
        # Meanwhile others are served.
        assert (
            post(scoring_service, "/score", {"customer_ids": known_customers[:1]}).status_code
            == 200
        )
        with contextlib.suppress(OSError):  # the server may close while we trickle
            while time.monotonic() - started < timeout / 2:
                slow.sendall(b" ")
                time.sleep(0.2)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = slow.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "REQUEST_TIMEOUT"
    assert time.monotonic() - started < timeout + 10


def test_bad_requests_log_one_short_escaped_line_each(scoring_service: RunningService) -> None:
    """Defect 9: no tracebacks, no raw client values, no forged lines in the service log."""
    log_path = Path(scoring_service.log_path)
    offset = log_path.stat().st_size
    headers = {**scoring_service.headers(), "Content-Type": "application/json"}
    url = scoring_service.url
    bad = [
        httpx.post(f"{url}/score", json={"customer_ids": ["\u0000value-one", 42]}, headers=headers),
        httpx.post(f"{url}/score", content=b'{"customer_ids": ["value\x00two"]}', headers=headers),
        httpx.post(
            f"{url}/score_features",
            json={"rows": [{"customer_id": "a", "features": {"odd_name\u0000three": 1}}]},
            headers=headers,
        ),
        httpx.get(f"{url}/forged%0a1999-01-01T00:00:00+0000 [INFO] forged", headers=headers),
        httpx.post(
            f"{url}/score", json={"customer_ids": ["C1"], "explain": "yes"}, headers=headers
        ),
    ]
    assert [r.status_code for r in bad] == [422, 422, 422, 404, 422]
    warning = re.compile(r"\[WARNING\].* (422|404) [A-Z_]+ (GET|POST) /")
    deadline = time.monotonic() + 15
    while True:  # the worker writes its log asynchronously
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            new = fh.read()
        lines = new.decode("utf-8", "replace").splitlines()
        warnings = [line for line in lines if warning.search(line)]
        if len(warnings) >= len(bad) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(warnings) == len(bad), "\n".join(lines)
    assert b"\x00" not in new and b"Traceback" not in new and b"pydantic" not in new
    assert b"value-one" not in new and b"value\\x00two" not in new  # no client values ...
    assert "odd_name\\x00three" in "\n".join(warnings)  # ... but a bounded, escaped excerpt
    assert not any(line.startswith("1999-01-01") for line in lines)
    assert "/forged\\x0a1999-01-01" in "\n".join(warnings)
    assert len(new) < 1500 * len(bad)


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
    assert {r["status"] for r in rows} == {"scored"}
    for r in rows:
        assert r["endpoint"] == "score"
        assert (r["version_churn"], r["version_propensity"], r["version_stage"]) == (
            versions["churn"], versions["propensity"], versions["stage"],
        )  # fmt: skip
        assert 0 <= r["churn_probability"] <= 1
        assert any(k.startswith("f_") for k in r)
    # Defect 8: unknown customers are logged too, with their status and no scores.
    mixed = post(scoring_service, "/score", {"customer_ids": [known_customers[0], "C9999990"]})
    mixed_id = mixed.json()["request_id"]
    deadline = time.monotonic() + 10
    logged: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(logged) < 2:
        time.sleep(flush)
        table = read_predictions(scoring_service.settings.predictions_dir)
        logged = [r for r in table.to_pylist() if r["request_id"] == mixed_id]
    assert [(r["customer_id"], r["status"]) for r in logged] == [
        (known_customers[0], "scored"),
        ("C9999990", "unknown_customer"),
    ]
    assert (
        logged[1]["churn_probability"] is None and logged[1]["version_churn"] == versions["churn"]
    )
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
