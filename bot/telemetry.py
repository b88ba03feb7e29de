"""Observability: one JSON log line per event with request and nudge ids, secrets and transcripts kept out of the
logs, and the Prometheus metrics behind `GET /metrics`.

Context (request_id, Slack ids, nudge_id) lives in a context variable: the web middleware binds the request id,
a Bolt middleware the Slack ids, the services the nudge they work on; pools copy it into the work they run.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import func, or_
from sqlmodel import col, select

from storage import inbox
from storage.models import Nudge, NudgeState, OutboxMessage, OutboxStatus

# ---------------------------------------------------------------------------------------------------------------
# Context carried by every log line

_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("rehearse_log_fields", default={})  # noqa: B039
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def context() -> dict[str, Any]:
    """The fields every log line written now carries."""
    return dict(_fields.get())


def bind(**fields: Any) -> contextvars.Token:
    """Add fields (None removes one) to the current context; `_fields.reset(token)` undoes it."""
    merged = {**_fields.get(), **fields}
    return _fields.set({k: v for k, v in merged.items() if v is not None})


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        _fields.reset(token)


@contextmanager
def collecting(var: contextvars.ContextVar[list | None]) -> Iterator[list]:
    """Gather in a fresh list what the code run inside adds to `var` with `noting`: what handling one Slack request
    left behind (its listeners' failures, the work it started)."""
    gathered: list = []
    token = var.set(gathered)
    try:
        yield gathered
    finally:
        var.reset(token)


def noting(var: contextvars.ContextVar[list | None], item: object) -> None:
    """Add `item` to what `collecting(var)` gathers (nothing outside it)."""
    if (gathered := var.get()) is not None:
        gathered.append(item)


def scoped(work: Callable[..., Any]) -> Callable[..., Any]:
    """Run `work` in a copy of the context, so what it binds (a nudge it finds) ends with it."""

    @functools.wraps(work)
    def run(*args: Any, **kwargs: Any) -> Any:
        return contextvars.copy_context().run(work, *args, **kwargs)

    return run


def about_nudge(work: Callable[..., Any]) -> Callable[..., Any]:
    """Bind the `nudge_id` keyword argument of a service for the log lines it writes."""

    @functools.wraps(work)
    def run(*args: Any, **kwargs: Any) -> Any:
        with bound(nudge_id=kwargs.get("nudge_id")):
            return work(*args, **kwargs)

    return run


def nudge_of_outbox_row(dedupe_key: str | None) -> int | None:
    """The nudge an outbox row belongs to, when its dedupe key says so (`nudge:12:invite`)."""
    parts = (dedupe_key or "").split(":")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "nudge" and parts[1].isdigit() else None


def about_outbox_row(deliver: Callable[..., Any]) -> Callable[..., Any]:
    """Bind the outbox row's id (and its nudge's, when known) while the sender delivers it."""

    @functools.wraps(deliver)
    def run(self: Any, row: Any, *args: Any, **kwargs: Any) -> Any:
        with bound(outbox_id=row.id, nudge_id=nudge_of_outbox_row(row.dedupe_key)):
            return deliver(self, row, *args, **kwargs)

    return run


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitter's context (request and nudge ids follow them)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


class RequestIds:
    """ASGI middleware: every request gets a request id (the caller's `X-Request-Id` when it is a sane one),
    bound for the log lines written while handling it and returned in the response's `X-Request-Id`."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        token = _fields.set({"request_id": request_id, "path": scope.get("path")})
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _fields.reset(token)


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


def _slack_ids(body: dict) -> dict[str, Any]:
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    actions = body.get("actions") if isinstance(body.get("actions"), list) else []
    view = body.get("view") if isinstance(body.get("view"), dict) else {}
    return {
        "slack_event_id": body.get("event_id"),
        "slack_event": event.get("type"),
        "slack_interaction": body.get("type") if body.get("type") != "event_callback" else None,
        "slack_action": actions[0].get("action_id") if actions and isinstance(actions[0], dict) else None,
        "slack_callback_id": view.get("callback_id"),
        "slack_command": body.get("command"),
        "slack_team": body.get("team_id") or _id_of(body.get("team")),
        "slack_user": body.get("user_id") or _id_of(body.get("user")) or _id_of(event.get("user")),
    }


def slack_request_ids(body: dict, next_: Callable[[], None]) -> None:
    """Bolt global middleware: Slack's ids on every log line about this request.

    Bolt runs its middleware one after the other, then the listeners (on the listener pool, which copies this
    context), so the ids are set here, not scoped. Over HTTP the request's own context is a copy that ends with the
    request; in Socket Mode there is no HTTP request, so each Slack message gets a fresh request id and nothing of
    the previous message's fields survives."""
    current = _fields.get()
    base = {k: current[k] for k in ("request_id", "path") if k in current} if "path" in current else \
        {"request_id": uuid.uuid4().hex}
    ids = _slack_ids(body if isinstance(body, dict) else {})
    _fields.set({**base, **{k: v for k, v in ids.items() if v is not None}})
    next_()


# ---------------------------------------------------------------------------------------------------------------
# Keeping secrets and transcripts out of the logs

_PATTERNS = [
    (re.compile(r"\b(xox[abposer]|xapp|xoxe(?:\.xox[bp])?)-[A-Za-z0-9-]+"), r"\1-[redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-[redacted]"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic)\s+)?[^\s'\",}]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(x-(?:slack|rehearse)-signature['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1[redacted]"),
]
_secrets: set[str] = set()
# Libraries that write request and response bodies or SQL parameters (message text, roleplay turns, transcripts)
# below WARNING.
PAYLOAD_LOGGERS = ("slack_sdk", "slack_bolt", "openai", "httpx", "httpcore", "urllib3", "websocket", "sqlalchemy")
_PAYLOAD_START = re.compile(r"""[{\[('"]""")


def keep_secret(*values: str | None) -> None:
    """Never let these exact values (the configured tokens and secrets) reach a log line."""
    _secrets.update(v for v in values if v and len(v) >= 6)


# What a terminal acts on instead of showing: control characters (ESC starts colour, title and clear-screen
# sequences; C1's CSI does the same alone; a line break starts a line that looks like another record) and the marks
# that reorder text right to left.
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def showable(text: str, *, lines: bool = False) -> str:
    """`text` with what a terminal would act on written as escapes (`\\x1b`); line breaks kept when `lines`."""
    if lines:
        return "\n".join(_UNSHOWABLE.sub(_escaped, line) for line in text.split("\n"))
    return _UNSHOWABLE.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    return ascii(match.group())[1:-1]


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redaction(logging.Filter):
    """On the handlers: tokens, keys, signatures and Authorization headers are masked in every line and
    traceback, and the DEBUG and INFO lines of the HTTP, Slack, OpenAI and SQL libraries lose everything from the
    first bracket or quote on, which is where they print bodies and parameters (message text, roleplay turns,
    transcripts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno < logging.WARNING and record.name.startswith(PAYLOAD_LOGGERS):
            cut = _PAYLOAD_START.search(message)
            if cut:
                message = message[:cut.start()].rstrip() + " [body omitted]"
        record.msg, record.args = showable(redact(message)), None  # a rep's name can hold escapes: shown, not run
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = showable(redact(record.exc_text), lines=True)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextFields(logging.Filter):
    """Copies the current context (request_id, nudge_id, Slack ids) onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.rehearse_context = _fields.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "rehearse_context", {}),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextLines(logging.Formatter):
    """The human format, with the context fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "rehearse_context", {})
        if not fields:
            return text
        head, newline, rest = text.partition("\n")
        return head + " " + " ".join(f"{k}={v}" for k, v in fields.items()) + newline + rest


LOG_FORMATS = {"json": JsonLines, "text": TextLines}


def log_format(default: str) -> str:
    """REHEARSE_LOG_FORMAT (json or text), else `default`; a wrong value raises ValueError naming the variable."""
    chosen = os.environ.get("REHEARSE_LOG_FORMAT", "").strip().lower() or default
    if chosen not in LOG_FORMATS:
        raise ValueError(f"REHEARSE_LOG_FORMAT: {chosen!r} is not one of json, text")
    return chosen


def configure_logging(level: int, *, default_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record at `level` and above to one handler (stderr by default) with the context fields and
    the redaction filter; replaces the handler an earlier call installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("rehearse")
    handler.setFormatter(LOG_FORMATS[log_format(default_format)]())
    handler.addFilter(ContextFields())
    handler.addFilter(Redaction())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "rehearse"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # APScheduler logs every run of every job at INFO (the outbox sweep: every 2 seconds); its warnings remain.
    logging.getLogger("apscheduler.executors.default").setLevel(max(level, logging.WARNING))
    return handler


# ---------------------------------------------------------------------------------------------------------------
# Metrics

REGISTRY = CollectorRegistry(auto_describe=True)
CALLS_INGESTED = Counter("rehearse_calls_ingested", "Scored calls received, by source and result "
                         "(accepted, duplicate)", ["source", "result"], registry=REGISTRY)
MODEL_LATENCY = Histogram("rehearse_model_latency_seconds", "Time a model call took, by role (buyer, grader) and "
                          "outcome (ok, or fallback when the scripted buyer or rule-based grader answered)",
                          ["role", "outcome"], registry=REGISTRY,
                          buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60))
SLACK_ERRORS = Counter("rehearse_slack_api_errors", "Slack Web API calls that failed, by method and error "
                       "(after the client's own retries)", ["method", "error"], registry=REGISTRY)


def count_ingested(tally: Iterable[tuple[tuple[str, str], int]]) -> None:
    """Add ((source, result), count) pairs to the calls-ingested counter."""
    for (source, result), count in tally:
        CALLS_INGESTED.labels(source, result).inc(count)


def observe_model(role: str, outcome: str, started: float) -> None:
    """Record a model call that began at `started` (time.perf_counter())."""
    MODEL_LATENCY.labels(role, outcome).observe(time.perf_counter() - started)


def model_failure(exc: BaseException) -> str:
    """How a model call failed, without the text of the model's answer (a validation error would quote it)."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"{type(exc).__name__}: HTTP {status}"
    if type(exc).__name__ == "ValidationError":
        return f"{type(exc).__name__}: the answer did not match the schema"
    return f"{type(exc).__name__}: {exc}"


class MeteredWebClient(WebClient):
    """slack_sdk's WebClient, counting the calls that fail (after its retry handlers) by method and error."""

    def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().api_call(api_method, *args, **kwargs)
        except SlackApiError as exc:
            SLACK_ERRORS.labels(api_method, str(exc.response.get("error") or "unknown_error")).inc()
            raise
        except (SlackClientError, OSError):
            SLACK_ERRORS.labels(api_method, "connection_error").inc()
            raise


def database_families(db: Any, now: datetime | None = None) -> list[GaugeMetricFamily]:
    """Gauges read from the database at scrape time, so every replica reports the same truth."""
    now = now or datetime.now(UTC)
    up = GaugeMetricFamily("rehearse_database_up", "1 when the database answered this scrape")
    states = GaugeMetricFamily("rehearse_nudges", "Nudges by state", labels=["state"])
    depth = GaugeMetricFamily("rehearse_outbox_pending", "Slack writes committed and not yet sent")
    age = GaugeMetricFamily("rehearse_outbox_oldest_pending_age_seconds",
                            "Age of the oldest unsent Slack write not held for the recipient's working hours")
    inbox_depth = GaugeMetricFamily("rehearse_slack_inbox_pending",
                                    "Slack events and clicks answered and not yet handled, or whose work still runs")
    inbox_age = GaugeMetricFamily("rehearse_slack_inbox_oldest_age_seconds",
                                  "Age of the oldest Slack request no worker holds (grows while no worker runs)")
    try:
        with db.reading() as session:  # takes no turn from the writers
            counts = dict(session.exec(select(Nudge.state, func.count()).group_by(Nudge.state)).all())
            pending = session.exec(select(func.count()).select_from(OutboxMessage)
                                   .where(OutboxMessage.status == OutboxStatus.PENDING)).one()
            oldest = session.exec(select(func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status == OutboxStatus.PENDING,
                or_(col(OutboxMessage.held_until).is_(None), col(OutboxMessage.held_until) <= now))).one()
        with db.inbox.reading() as session:
            waiting, first_received = inbox.depth(session, now=now)
    except Exception:  # noqa: BLE001 - a scrape during an outage reports the outage, not a 500
        logging.getLogger(__name__).warning("metrics: the database did not answer")
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    for state in NudgeState:
        states.add_metric([str(state)], counts.get(state, counts.get(str(state), 0)))
    depth.add_metric([], pending)
    age.add_metric([], _age(oldest, now))
    inbox_depth.add_metric([], waiting)
    inbox_age.add_metric([], _age(first_received, now))
    return [up, states, depth, age, inbox_depth, inbox_age]


def _age(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    return max(0.0, (now - (since if since.tzinfo else since.replace(tzinfo=UTC))).total_seconds())


class _Families:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


def metrics_text(db: Any) -> bytes:
    """The whole exposition: the counters and histograms (of every process of `rehearse serve`), then the database
    gauges."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Families(database_families(db)))
    return generate_latest(_process_registry()) + generate_latest(scrape)


def _process_registry() -> CollectorRegistry:
    """This process's metrics; with PROMETHEUS_MULTIPROC_DIR (set by `serve` for itself and its worker), the sums
    over every process that wrote there, the worker's sender and model calls included."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged


def metrics_endpoint(db: Any, token: str | None = None) -> Callable:
    """The `GET /metrics` route handler (Prometheus text format); with `token` (REHEARSE_METRICS_TOKEN) only for a
    scraper that sends `Authorization: Bearer <token>`."""
    import hmac

    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response

    async def metrics(request: Any) -> Any:
        if token and not hmac.compare_digest(request.headers.get("authorization", "").encode(),
                                             f"Bearer {token}".encode()):
            return JSONResponse({"error": "send Authorization: Bearer <REHEARSE_METRICS_TOKEN> to read /metrics"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(await run_in_threadpool(metrics_text, db), media_type=CONTENT_TYPE_LATEST)

    return metrics
