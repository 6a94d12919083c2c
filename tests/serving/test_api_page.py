"""The API page (`/`) and its OpenAPI document (`/docs.json`): open, ours, complete,
and loading nothing from outside this service, checked in headless Chromium.

Chromium is Debian's package (`make browser`, run by `make test`, installs it when
missing and root); without it the browser test skips and says why. Set
CLM_API_PAGE_SCREENSHOT=docs/img/api-page.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.service import RunningService

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing may leave the machine, whatever the page asks for (the net log still
    # records the attempt, which is what the test looks for).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
DOCUMENTED = {"401", "408", "413", "415", "422", "429", "500", "503"}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed (Debian package `chromium`; `make browser` installs it "
            "when run as root)"
        )
    return found


def run_chromium(url: str, work: Path, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    """Load `url` headless; return the rendered DOM (if asked) and the URL requests the
    page made (from Chromium's net log: requests whose top frame is the page's site)."""
    work.mkdir(parents=True, exist_ok=True)
    netlog = work / "netlog.json"
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={work / 'profile'}",
            f"--log-net-log={netlog}",
            "--virtual-time-budget=20000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert netlog.is_file(), result.stderr[-2000:]
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    page_site = f"{urlsplit(url).scheme}://{urlsplit(url).hostname}"
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        # Chromium's own background traffic (updates, sign-in) has another isolation key.
        if params.get("network_isolation_key", "").split(" ")[0] == page_site:
            requests.append(params)
    return result.stdout, requests


def outside(requests: list[dict[str, Any]], origin: str) -> list[str]:
    return sorted({r["url"] for r in requests if not r["url"].startswith(origin + "/")})


def test_the_page_and_its_document_need_no_key_and_are_ours(
    scoring_service: RunningService,
) -> None:
    url = scoring_service.url
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert "<title>clm scoring API</title>" in html
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html), "absolute URL in the page"
    assert "googletagmanager" not in html.lower() and "github" not in html.lower()
    script = httpx.get(f"{url}/docs/page.js").text
    assert "validatorUrl: null" in script and not re.search(r"https?://", script)

    doc = httpx.get(f"{url}/docs.json").json()
    info = doc["info"]
    assert info["title"] == "clm scoring API"
    models = httpx.get(f"{url}/models", headers=scoring_service.headers()).json()["models"]
    for family, status in models.items():
        assert f"{family} v{status['version']}" in info["version"]
    assert info["version"].startswith("0.") or info["version"][0].isdigit()
    assert info["contact"]["name"] and "BentoML" not in json.dumps(doc)
    assert "slack" not in json.dumps(doc).lower() and "twitter" not in json.dumps(doc).lower()
    # A bearer scheme (Swagger UI's Authorize button), applied to all but the open routes.
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    for probe in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert doc["paths"][probe]["get"]["security"] == []
    # Every status the scoring routes really answer, each in the one error shape.
    for path in ("/score", "/score_features"):
        responses = doc["paths"][path]["post"]["responses"]
        assert DOCUMENTED <= set(responses), (path, sorted(responses))
        for status in DOCUMENTED:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "403" in doc["paths"]["/admin/reload"]["post"]["responses"]
    error = doc["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "fields"}
    # Sizes as configured.
    serving = scoring_service.settings.serving
    schemas = doc["components"]["schemas"]
    ids = schemas["ScoreRequest"]["properties"]["customer_ids"]
    rows = schemas["ScoreFeaturesRequest"]["properties"]["rows"]
    assert (ids["minItems"], ids["maxItems"]) == (1, serving.max_ids)
    assert (rows["minItems"], rows["maxItems"]) == (1, serving.max_ids)
    assert schemas["ScoreRequest"]["additionalProperties"] is False
    result = schemas["CustomerResult"]["properties"]
    assert "snapshot" in result and "warnings" in result


def test_the_page_loads_nothing_from_outside_in_a_browser(
    scoring_service: RunningService, tmp_path: Path
) -> None:
    url = scoring_service.url
    dom, requests = run_chromium(f"{url}/", tmp_path / "page", "--dump-dom")
    loaded = {urlsplit(r["url"]).path for r in requests}
    assert {"/", "/docs.json", "/docs/page.js", "/static_content/swagger-ui-bundle.js"} <= loaded
    assert outside(requests, url) == []
    # Rendered: our title and version, the Authorize button of the bearer scheme.
    assert "clm scoring API" in dom and "Authorize" in dom, dom[:2000]
    assert "churn v" in dom and "BentoML" not in dom

    shot = tmp_path / "api-page.png"
    run_chromium(
        f"{url}/#/Scoring/score",
        tmp_path / "shot",
        "--window-size=1280,2600",
        "--hide-scrollbars",
        f"--screenshot={shot}",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    target = os.environ.get("CLM_API_PAGE_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


@pytest.fixture
def bentoml_page(tmp_path: Path) -> Iterator[str]:
    """BentoML's own index page (what `/` served before), on a throwaway local server."""
    import _bentoml_impl.server as bentoml_server

    root = tmp_path / "bentoml"
    root.mkdir()
    shutil.copyfile(
        Path(bentoml_server.__file__).with_name("main-openapi.html"), root / "index.html"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_outside_request_check_catches_bentomls_page(bentoml_page: str, tmp_path: Path) -> None:
    """The check above can fail: BentoML's page asks Google Tag Manager for a script."""
    _, requests = run_chromium(f"{bentoml_page}/", tmp_path / "bentoml-page")
    assert any("googletagmanager.com" in u for u in outside(requests, bentoml_page))
