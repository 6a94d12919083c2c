"""The gate in front of every route: bearer keys, the body cap and timeout, JSON
only, and one error shape for every answer that is not a success.

An ASGI middleware so it runs before BentoML parses anything: a request that is
unauthorised (401/403), too large (413), too slow to send its body (408) or not
JSON (415) is answered without reading more of it. Every 4xx/5xx that leaves
the service goes out in the shape of `schemas.ErrorResponse` (BentoML's request
validation answer, 400, becomes the 422 the HTTP contract names; Starlette's
plain-text 404/405 become JSON) and is logged as one WARNING line with control
characters escaped and the client's text bounded. Keys are compared in constant
time and never logged; the caller is known downstream only as `key<N>`.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.schemas import error_body, validation_problems

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("serving.http")

# BentoML's probes and metrics stay open (load balancers and Prometheus have no keys),
# and so does the API page: it holds no customer data and a browser cannot send a key.
OPEN_PATHS = frozenset(
    {"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json", "/docs/page.js"}
)
OPEN_PREFIXES = ("/static_content/",)  # Swagger UI's files, shipped inside bentoml
ADMIN_PREFIX = "/admin/"
# Our API routes: here a 400 from BentoML means "the body did not validate".
API_PATHS = frozenset({"/score", "/score_features", "/admin/reload"})

# Who is calling, for per-key limits downstream: "key<N>" (N = position in
# CLM_API_KEYS) or "admin"; never the key itself.
_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("clm_caller", default=None)


def current_caller() -> str | None:
    """The caller of the request being handled (set by the gate)."""
    return _caller.get()


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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        answer = _Answer(send, method, path, rewrite_400=path in API_PATHS)
        if path in OPEN_PATHS or (path.startswith(OPEN_PREFIXES) and method in ("GET", "HEAD")):
            await self.app(scope, receive, answer.send)
            return
        settings = self._config()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = _bearer(headers.get("authorization", ""))
        admin = settings.admin_token
        is_admin = bool(admin) and token is not None and _same(token, admin)
        key = _key_index(token, settings.api_keys) if token is not None else None
        if key is None and not is_admin:
            await answer.error(401, "missing or invalid bearer key", authenticate=True)
            return
        if path.startswith(ADMIN_PREFIX) and not is_admin:
            await answer.error(403, "this route needs the admin token (CLM_ADMIN_TOKEN)")
            return
        if not path.startswith(ADMIN_PREFIX) and key is None:
            await answer.error(401, "missing or invalid bearer key", authenticate=True)
            return

        if method == "POST":
            serving = settings.serving
            limit: int = serving.max_body_bytes
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await answer.error(413, f"request body larger than {limit} bytes", close=True)
                return
            media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if media != "application/json":
                await answer.error(415, "send the body as application/json")
                return
            # Read the whole (capped) body here: chunked uploads have no Content-Length,
            # and a client that trickles its body must not hold a connection for ever.
            body, problem = await _read_body(receive, limit, serving.body_timeout_seconds)
            if problem == "timeout":
                await answer.error(
                    408,
                    f"the request body did not arrive within {serving.body_timeout_seconds:g} s",
                    close=True,
                )
                return
            if problem == "too_large":
                await answer.error(413, f"request body larger than {limit} bytes", close=True)
                return
            receive = _replay(body, receive)
            # Media types are case-insensitive: hand BentoML the canonical spelling.
            scope = dict(scope)
            scope["headers"] = [
                (k, b"application/json") if k.lower() == b"content-type" else (k, v)
                for k, v in scope["headers"]
            ]

        reset = _caller.set("admin" if key is None else f"key{key}")
        try:
            await self.app(scope, receive, answer.send)
        finally:
            _caller.reset(reset)


class _Answer:
    """Sends the app's response, rewriting any error into the one shape (and logging it)."""

    def __init__(self, send: Send, method: str, path: str, *, rewrite_400: bool) -> None:
        self._send = send
        self._method = method
        self._path = path
        self._rewrite_400 = rewrite_400
        self._held: Message | None = None
        self._chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self._held = message
            return
        if self._held is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        start, self._held = self._held, None
        status, body = self._reshape(start["status"], b"".join(self._chunks))
        headers = [
            (k, v)
            for k, v in start.get("headers", [])
            if k.lower() not in (b"content-length", b"content-type")
        ]
        await self._emit(status, body, headers)

    async def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        authenticate: bool = False,
        close: bool = False,
    ) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if authenticate:
            headers.append((b"www-authenticate", b"Bearer"))
        if close:  # the rest of the body is not read: the connection cannot be reused
            headers.append((b"connection", b"close"))
        body = json.dumps(error_body(status, message, code=code)).encode()
        await self._emit(status, body, headers)

    async def _emit(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            error = json.loads(body)["error"]
            level = logging.ERROR if status >= 500 else logging.WARNING
            log.log(
                level,
                "%s %s %s %s: %s",
                status,
                error["code"],
                self._method,
                printable(self._path, 120),
                printable(error["message"], 300),
            )
        except (ValueError, KeyError, TypeError):  # pragma: no cover - _reshape made the body
            log.warning("%s %s %s", status, self._method, printable(self._path, 120))
        headers = [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    def _reshape(self, status: int, raw: bytes) -> tuple[int, bytes]:
        """Any error body the app produced -> (status, our shape)."""
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            if {"code", "message", "fields"} <= set(error):
                return status, raw  # already ours
        detail = data.get("detail") if isinstance(data, dict) else None
        if (
            status in (400, 422)
            and isinstance(detail, list)
            and (self._rewrite_400 or status == 422)
        ):
            # Request validation (BentoML answers 400; FastAPI 422): name the fields,
            # never echo the values.
            message, fields = validation_problems(d for d in detail if isinstance(d, dict))
            return 422, json.dumps(error_body(422, message, fields=fields)).encode()
        if status == 503 and self._path == "/readyz":
            message = "not ready: no family has a servable champion model; see GET /models"
            return status, json.dumps(error_body(503, message, code="NO_MODELS")).encode()
        if status == 404:
            message = f"no route {self._path}; the API page is at /"
        elif status == 405:
            message = f"{self._method} is not allowed on {self._path}"
        elif isinstance(data, dict) and isinstance(data.get("error"), str):
            message = data["error"]
        elif isinstance(detail, str):
            message = detail
        else:
            message = raw.decode("utf-8", "replace").strip() or "error"
        return status, json.dumps(error_body(status, printable(message, 500))).encode()


async def _read_body(receive: Receive, limit: int, timeout: float) -> tuple[bytes, str | None]:
    """The whole body, or ("", "too_large") past `limit` bytes, or ("", "timeout")."""
    import anyio

    chunks: list[bytes] = []
    seen = 0
    with anyio.move_on_after(timeout) as scope:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"", None  # client went away; the app will see an empty body
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                return b"", "too_large"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None
    assert scope.cancelled_caught
    return b"", "timeout"


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


def _key_index(token: str, keys: tuple[str, ...]) -> int | None:
    # Check every key (no early exit) so timing does not reveal which one is close.
    found: int | None = None
    for i, key in enumerate(keys):
        if _same(token, key) and found is None:
            found = i
    return found


# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: anything
# that could end a log line or drive a terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object, limit: int = 300) -> str:
    """`text` safe for a one-line log: control characters as \\xNN escapes, at most
    `limit` characters (then an ellipsis)."""
    value = str(text)
    clipped = value[:limit]
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", clipped)
    return escaped + ("..." if len(value) > limit else "")


class EscapeControlCharacters(logging.Filter):
    """A handler filter: every record's message becomes one line (control characters
    escaped, see `printable`). Client text reaches log lines through request paths
    (BentoML's access log) and error messages; none of it may forge a line."""

    def __init__(self, limit: int = 2000) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: log what we have
            message = str(record.msg)
        record.msg = printable(message, self.limit)
        record.args = None
        return True


class DropClientErrorTracebacks(logging.Filter):
    """BentoML logs a full ERROR traceback for every request that fails validation;
    the gate already logs one WARNING line for it, so those records are dropped.
    Real server errors (anything else) keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        exc = record.exc_info[1]
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        status = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(status, int) and 400 <= status < 500)
