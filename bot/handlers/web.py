"""The HTTP routes: Slack's endpoint, the scored-call webhook and the health check."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_starlette_response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.coach import Coach
from bot.handlers.inbox import UNREADABLE, SlackReceiver, checked_request
from bot.nudges.adapters import PayloadError, parse_body, unstorable_text
from bot.nudges.intake import ingest_calls

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # 1 MiB
MAX_SKEW_S = 300
RETRY_AFTER_S = 30  # what a caller is told to wait while the database is unreachable
# Connections (docs/security.md): a request's headers must arrive within HEADERS_S of its first byte (or of the
# connection opening), its body within BODY_S; an idle keep-alive connection is closed after KEEP_ALIVE_S; past
# MAX_CONNECTIONS open at once, uvicorn answers 503. Slack and scorers send a request in one go, well inside these.
HEADERS_S, BODY_S, KEEP_ALIVE_S, MAX_CONNECTIONS = 10, 30, 5, 1000


class TimedHttp(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers take longer than HEADERS_S (uvicorn
    itself times only the wait between requests, so a client that never finishes its headers held a connection
    for good)."""

    _headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._time_headers()

    def on_message_begin(self) -> None:  # the next request on a kept-alive connection
        super().on_message_begin()
        self._time_headers()

    def on_headers_complete(self) -> None:
        self._stop_timing()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timing()
        super().connection_lost(exc)

    def _time_headers(self) -> None:
        self._stop_timing()
        self._headers_due = self.loop.call_later(HEADERS_S, self._too_slow)

    def _stop_timing(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


SERVER_FAILED = "the server failed; nothing was changed by this request"


async def server_failed(request: Request, exc: Exception) -> Response:
    """Starlette's answer to a bug (it then raises it on, for `KeepTheConnection` to log)."""
    return JSONResponse({"error": SERVER_FAILED}, status_code=500)


class KeepTheConnection:
    """The web app, never letting an exception reach uvicorn: uvicorn closes the connection of a request whose app
    raised, and with it the next request the client had sent on that keep-alive connection. A bug still answers its
    own request 500 (Starlette's error middleware), and is logged here once."""

    def __init__(self, app: Starlette):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # noqa: BLE001 - the one place a request's unexpected failure is logged
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await JSONResponse({"error": SERVER_FAILED}, status_code=500)(scope, receive, send)


def server_config(web: Starlette, *, host: str, port: int, log_level: str, **options: object) -> uvicorn.Config:
    """The web server's settings, the same for `rehearse serve`, the demo and the tests."""
    return uvicorn.Config(KeepTheConnection(web), host=host, port=port, log_level=log_level, http=TimedHttp,
                          timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONNECTIONS, **options)


def signature_problem(secret: str, timestamp: str | None, signature: str | None, body: bytes,
                      now: float) -> str | None:
    """Why `X-Rehearse-Signature` does not prove the body came from the secret's holder, or None."""
    if not timestamp or not signature:
        return "missing X-Rehearse-Timestamp or X-Rehearse-Signature header"
    if not (len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit()):
        return "X-Rehearse-Timestamp must be unix seconds"
    sent = int(timestamp)
    if abs(now - sent) > MAX_SKEW_S:
        return "X-Rehearse-Timestamp is more than 5 minutes off; sign with the current time"
    expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    # Bytes: compare_digest refuses str with non-ASCII characters (a 500), and compares bytes in constant time.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
        return "X-Rehearse-Signature does not match: v1=<hex HMAC-SHA256 of '{timestamp}.{raw body}'>"
    return None


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The database is unreachable (or locked past its wait): tell the caller to come back, nothing was stored."""
    log.error("%s %s: database unavailable: %s", request.method, request.url.path,
              type(getattr(exc, "orig", None) or exc).__name__)
    return JSONResponse({"error": f"the database is unavailable; nothing was stored, retry in {RETRY_AFTER_S} s"},
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _error(status: int, message: str, problems: list[dict] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"problems": problems} if problems else {})}, status_code=status)


class BodyTooSlow(Exception):
    """A request's body took longer than BODY_S to arrive (answered 408 by `body_too_slow`)."""


async def _read_limited(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY; raises BodyTooSlow when it takes longer than BODY_S to arrive."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow from None
    return b"".join(chunks)


async def body_too_slow(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: the body took over %d s to arrive; closed", request.method, request.url.path, BODY_S)
    return JSONResponse({"error": f"the body took over {BODY_S} s to arrive; send it in one go"}, status_code=408,
                        headers={"Connection": "close"})


def routes(*, bolt: App, coach: Coach, webhook_secret: str | None, receiver: SlackReceiver | None = None,
           metrics_token: str | None = None) -> list[Route]:
    """The server's routes; `/slack/events` only with a receiver (HTTP mode: Socket Mode needs no public endpoint).
    """
    async def slack_events(request: Request) -> Response:
        body = await _read_limited(request)  # Slack's payloads are a few KB: a bigger body never reaches Bolt
        if body is None:
            return _error(413, f"body is over {MAX_BODY} bytes; Slack never sends that much")
        # Checked (signature, shape, workspace) and, for events and clicks, stored and answered by the Slack inbox.
        answered = await receiver.take(body, request.headers)
        if answered is not None:
            return answered
        try:
            response = await run_in_threadpool(bolt.dispatch, checked_request(body.decode(), dict(request.headers)))
        except UNREADABLE as exc:  # Bolt reads more of a payload than the receiver does, assuming Slack's shapes
            log.warning("refused a request to /slack/events: Bolt cannot read its payload (%s)", type(exc).__name__)
            return _error(400, "not a Slack payload: Bolt cannot read it")
        return to_starlette_response(response)

    async def scored_calls(request: Request) -> Response:
        if not webhook_secret:
            return _error(503, "the webhook is off: set REHEARSE_WEBHOOK_SECRET on the server")
        body = await _read_limited(request)
        if body is None:
            return _error(413, f"body is over {MAX_BODY} bytes; send the calls in smaller batches")
        problem = signature_problem(webhook_secret, request.headers.get("x-rehearse-timestamp"),
                                    request.headers.get("x-rehearse-signature"), body, time.time())
        if problem:
            return _error(401, problem)
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        except RecursionError:
            return _error(400, "body is nested too deeply to be a scored call")
        except ValueError:  # Python reads no integer of more than 4,300 digits
            return _error(400, "body is not valid JSON: a number has too many digits")
        try:
            # Only a `\u` escape or raw bytes that Python reads with surrogatepass (0xED: a surrogate's first byte)
            # make text no database stores.
            if (b"\\u" in body or b"\xed" in body) and (unstorable := unstorable_text(data)):
                raise PayloadError(unstorable)
            calls = parse_body(data, gong=coach.config.gong)
        except PayloadError as exc:
            problems = [{"field": field, "message": message} for field, message in exc.problems]
            return _error(422, f"{exc.problems[0][0]}: {exc.problems[0][1]}", problems)
        result = await run_in_threadpool(ingest_calls, coach, calls)
        return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates}, status_code=202)

    async def healthz(request: Request) -> Response:
        healthy = await run_in_threadpool(coach.db.healthy)
        return JSONResponse({"ok": healthy, "database": "up" if healthy else "down"},
                            status_code=200 if healthy else 503)

    from bot.telemetry import metrics_endpoint

    served = [
        Route("/metrics", metrics_endpoint(coach.db, metrics_token), methods=["GET"]),
        Route("/webhooks/calls", scored_calls, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return [Route("/slack/events", slack_events, methods=["POST"]), *served] if receiver else served
