"""The gate in front of every route: bearer keys, the body size cap, JSON only.

An ASGI middleware so it runs before BentoML parses anything: a request that is
unauthorised (401/403), too large (413) or not JSON (415) is answered without
reading more of it. It also turns BentoML's request-validation answer (400) into
422, the status the HTTP contract names for a body that does not validate.
Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# BentoML's own probes and metrics stay open (load balancers and Prometheus have no keys).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
ADMIN_PREFIX = "/admin/"
# Our API routes: here a 400 from BentoML means "the body did not validate".
API_PATHS = frozenset({"/score", "/score_features", "/admin/reload"})


class Gate:
    """Settings are read through `settings_provider` (the service's, loaded once)."""

    def __init__(self, app: ASGIApp, settings_provider: Callable[[], Any]) -> None:
        self.app = app
        self._provider = settings_provider
        self._settings: Any = None

    def _config(self) -> Any:
        if self._settings is None:
            self._settings = self._provider()
        return self._settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        settings = self._config()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = _bearer(headers.get("authorization", ""))
        path: str = scope["path"]
        if path.startswith(ADMIN_PREFIX):
            admin = settings.admin_token
            if token is None or not (
                _is_key(token, settings.api_keys) or (admin and _same(token, admin))
            ):
                await _answer(send, 401, "missing or invalid bearer key", authenticate=True)
                return
            if not admin or not _same(token, admin):
                await _answer(send, 403, "this route needs the admin token (CLM_ADMIN_TOKEN)")
                return
        elif token is None or not _is_key(token, settings.api_keys):
            await _answer(send, 401, "missing or invalid bearer key", authenticate=True)
            return

        if scope["method"] == "POST":
            limit: int = settings.serving.max_body_bytes
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _answer(send, 413, f"request body larger than {limit} bytes")
                return
            content_type = headers.get("content-type", "application/json").split(";")[0].strip()
            if content_type != "application/json":
                await _answer(send, 415, "send the body as application/json")
                return
            # Read the whole (capped) body here: chunked uploads have no Content-Length.
            body, complete = await _read_body(receive, limit)
            if not complete:
                await _answer(send, 413, f"request body larger than {limit} bytes")
                return
            receive = _replay(body, receive)

        rewrite = path in API_PATHS

        async def guarded_send(message: Message) -> None:
            if rewrite and message["type"] == "http.response.start" and message["status"] == 400:
                message = dict(message)
                message["status"] = 422
            await send(message)

        await self.app(scope, receive, guarded_send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", True  # client went away; the app will see an empty body
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def inner() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later: disconnect notifications

    return inner


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _is_key(token: str, keys: tuple[str, ...]) -> bool:
    # Check every key (no early exit) so timing does not reveal which one is close.
    found = False
    for key in keys:
        found |= _same(token, key)
    return found


async def _answer(send: Send, status: int, message: str, *, authenticate: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if authenticate:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
