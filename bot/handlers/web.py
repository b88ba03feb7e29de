"""The HTTP routes: Slack's endpoint, the scored-call webhook and the health check."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.coach import Coach
from bot.handlers.inbox import UNREADABLE, SlackReceiver
from bot.nudges.adapters import PayloadError, parse_body, unstorable_text
from bot.nudges.intake import ingest_calls

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # 1 MiB
MAX_SKEW_S = 300
RETRY_AFTER_S = 30  # what a caller is told to wait while the database is unreachable


def signature_problem(secret: str, timestamp: str | None, signature: str | None, body: bytes,
                      now: float) -> str | None:
    """Why `X-Rehearse-Signature` does not prove the body came from the secret's holder, or None."""
    if not timestamp or not signature:
        return "missing X-Rehearse-Timestamp or X-Rehearse-Signature header"
    try:
        sent = int(timestamp)
    except ValueError:
        return "X-Rehearse-Timestamp must be unix seconds"
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


async def _read_limited(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def routes(*, bolt: App, coach: Coach, webhook_secret: str | None, receiver: SlackReceiver | None = None,
           metrics_token: str | None = None) -> list[Route]:
    """The server's routes; `/slack/events` only with a receiver (HTTP mode: Socket Mode needs no public endpoint).
    """
    async def slack_events(request: Request) -> Response:
        body = await _read_limited(request)  # Slack's payloads are a few KB: a bigger body never reaches Bolt
        if body is None:
            return _error(413, f"body is over {MAX_BODY} bytes; Slack never sends that much")
        try:
            # Events and clicks are answered once stored (the Slack inbox); what needs Bolt's answer waits for it.
            answered = await receiver.take(body, request.headers)
            if answered is not None:
                return answered
            bolt_request = to_bolt_request(request, body)
        except UNREADABLE:
            # Bolt reads the payload (before checking its signature) assuming Slack's shapes: odd ones are refused
            log.warning("refused a request to /slack/events: its payload is not shaped as Slack's are")
            return _error(400, "not a Slack payload: Bolt cannot read it")
        return to_starlette_response(await run_in_threadpool(bolt.dispatch, bolt_request))

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
            if b"\\u" in body and (unstorable := unstorable_text(data)):
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
