"""`create_app`: the one place that builds the engine, Slack clients, Bolt app, web server and jobs."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio.to_thread
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from starlette.applications import Starlette

from bot import handlers
from bot.coach import Coach, utcnow
from bot.config import CoachConfig, ConfigError, load_config, unknown_scenarios
from bot.handlers import Listened
from bot.handlers.inbox import InboxDispatcher, InboxWriter, SlackReceiver, SocketModeInbox
from bot.handlers.web import (
    BodyTooSlow,
    body_too_slow,
    database_unavailable,
    routes,
    server_config,
    server_failed,
)
from bot.nudges.approval import ask_managers_after_rep_first
from bot.nudges.digest import post_digest
from bot.nudges.expiry import expire_after_failed_delivery, expire_stale_nudges
from bot.nudges.followups import send_all_due_followups
from bot.nudges.reminders import remind_managers
from bot.nudges.retention import purge_old_text
from bot.nudges.unmatched import rematch
from bot.practice.grader import Grader, HeuristicGrader
from bot.practice.roleplay import Buyer, ScriptedBuyer
from bot.practice.scenarios import load_scenarios
from bot.settings import Settings
from bot.slack.directory import SlackDirectory
from bot.slack.installation import InstalledApp, resume_if_slack_answers
from bot.slack.sender import DATABASE_DOWN, OutboxSender
from bot.telemetry import ContextThreadPool, MeteredWebClient, RequestIds, keep_secret, slack_request_ids
from bot.worker import INBOX, OUTBOX, WorkerProcess, listen
from storage import queries
from storage.db import Database

log = logging.getLogger(__name__)


class _TokenNotice(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN is unused because it gets our client (which carries that token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.App").addFilter(_TokenNotice())
REPO_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def scenarios_dir(custom: str | None, config_path: str | Path) -> Path:
    """`scenarios_dir` from coach.yaml (relative to that file), else the scenarios shipped with Rehearse."""
    if custom:
        return (Path(config_path).parent / custom).resolve()
    return REPO_SCENARIOS


def slack_client(settings: Settings, *, wait_on_rate_limit: bool = True) -> WebClient:
    """A WebClient at SLACK_API_URL that retries connection errors and 5xx, and (by default) one 429.

    The outbox sender's client does not wait on a 429: it reschedules the row after Retry-After instead,
    so one rate-limited channel never holds up the others.
    """
    handlers = [ConnectionErrorRetryHandler(max_retry_count=2), ServerErrorRetryHandler(max_retry_count=2)]
    if wait_on_rate_limit:
        handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    return MeteredWebClient(token=settings.slack_bot_token, base_url=settings.api_base_url, timeout=15,
                     retry_handlers=handlers)


def practice_partners(settings: Settings, config: CoachConfig) -> tuple[Buyer, Grader]:
    """The buyer and the grader: a model when OPENAI_API_KEY or OPENAI_BASE_URL is set, else scripted and rule-based
    (which also stand in, turn by turn, whenever the model fails or is slow)."""
    scripted, rules = ScriptedBuyer(), HeuristicGrader()
    if not (settings.openai_api_key or settings.openai_base_url):
        return scripted, rules
    import openai

    from bot.practice.llm_buyer import LLMBuyer
    from bot.practice.llm_grader import LLMGrader

    client = openai.OpenAI(api_key=settings.openai_api_key or "not-needed", base_url=settings.openai_base_url)
    return (LLMBuyer(client, settings.llm_model, fallback=scripted, priorities=[p.name for p in config.priorities]),
            LLMGrader(client, settings.llm_model, fallback=rules))


def sync_teams(coach: Coach) -> None:
    """coach.yaml is the source of truth for teams; mirror it into the database."""
    with coach.db.session() as session:
        for team in coach.config.teams:
            queries.upsert_team(session, team_id=team.id, name=team.title, approvals_channel=team.approvals_channel,
                                digest_channel=team.digest_channel, timezone=team.timezone)


@dataclass
class Rehearse:
    """Everything one `rehearse serve` process runs."""

    settings: Settings
    coach: Coach
    client: WebClient
    bolt: App
    web: Starlette
    sender: OutboxSender
    scheduler: BackgroundScheduler
    inbox: InboxWriter
    dispatcher: InboxDispatcher
    listened: Listened  # what the inbox takes, over HTTP and Socket Mode alike
    worker: WorkerProcess | None = None  # `serve` over HTTP: the process doing the work behind Slack's answers
    _socket_mode: object | None = field(default=None, repr=False)

    def wake_sender(self) -> None:
        if self.worker is not None:
            self.worker.ring(OUTBOX)
            return
        self.sender.request_drain()
        if self.scheduler.running and not self.sender.busy:
            self.scheduler.modify_job("outbox", next_run_time=datetime.now(UTC))

    def wake_inbox(self) -> None:
        if self.worker is not None:
            self.worker.ring(INBOX)
        else:
            self.dispatcher.wake()

    def run_due_jobs(self, now: datetime | None = None) -> int:
        """Run every periodic job as of `now`, then drain the outbox; returns follow-ups sent."""
        now = now or self.coach.clock()
        rematch(self.coach)
        chase_approvals(self.coach, now=now)
        purge_old_text(self.coach, now=now)  # coach.yaml `retention`
        count = send_all_due_followups(self.coach, now=now)
        self.sender.drain()
        return count

    def start(self) -> None:
        """Start the work behind the answers: the Slack inbox's listeners, the jobs and the sender (and Socket Mode
        when SLACK_APP_TOKEN is set); handles and sends what a crash left behind."""
        resume_if_slack_answers(self.coach.db, self.client, now=self.coach.clock())  # after a reinstall
        self.dispatcher.start()
        self.scheduler.start()
        self.wake_sender()
        self.wake_inbox()
        if self.settings.socket_mode:
            self._socket_mode = SocketModeInbox(self.bolt, self.settings.slack_app_token, writer=self.inbox,
                                                listened=self.listened)
            self._socket_mode.connect()
            log.info("Slack traffic over Socket Mode")

    def stop(self) -> None:
        if self._socket_mode is not None:
            self._socket_mode.close()
        if self.worker is not None:
            self.worker.stop()
        self.inbox.close()
        self.sender.stop()  # a drain pacing hundreds of rows would hold the shutdown below for minutes
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        # The practice pool finishes the replies the inbox's requests started before those requests are deleted.
        self.dispatcher.stop(then=lambda: self.coach.workers.shutdown(wait=True))
        self.coach.db.dispose()

    def serve(self, host: str = "0.0.0.0", *, worker_process: bool = False) -> None:
        """The web server; the work behind it in this process, or (`worker_process`) in a `rehearse worker` it
        starts and watches."""
        if worker_process:
            self.worker = WorkerProcess()
            self.worker.start()
        else:
            self.start()
        _freeze_what_was_built()
        # uvicorn, shut down by SIGTERM, raises SIGTERM again for the handler it found: Python's default would end
        # the process there, before `stop` below stops the worker, the sender and the jobs. This one lets it finish.
        signal.signal(signal.SIGTERM, lambda *_: None)
        try:
            # uvicorn's lines go through our handler (JSON, redacted) too, at our level: at INFO (`--verbose`, the
            # default) a line for each request
            level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
            uvicorn.Server(server_config(self.web, host=host, port=self.settings.port, log_level=level,
                                         log_config=None)).run()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while stopping ends the process
            self.stop()

    def work(self) -> None:
        """The life of `rehearse worker`: start the work behind the answers, take rings from the web process until it
        goes (or SIGTERM), then stop."""
        self.start()
        _freeze_what_was_built()
        try:
            listen(on_inbox=self.dispatcher.wake, on_outbox=self.wake_sender)
        finally:
            self.stop()


def _freeze_what_was_built() -> None:
    """What was built so far lives as long as the process: keep the garbage collector from walking it again and again
    while requests come in (in one burst, half the web process's time was a full collection over it)."""
    gc.freeze()


def chase_approvals(coach: Coach, *, now: datetime) -> None:
    """Ask managers about rep-first nudges not started in time, remind, then expire what nobody decided."""
    ask_managers_after_rep_first(coach, now=now)
    remind_managers(coach, now=now)
    expire_stale_nudges(coach, now=now)


@asynccontextmanager
async def _http_threads(count: int, _app: Starlette) -> AsyncIterator[None]:
    """Requests run Bolt's dispatch on worker threads; a burst of Slack traffic should not queue for them."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = count
    yield


def create_app(
    settings: Settings,
    *,
    config: CoachConfig | None = None,
    buyer: Buyer | None = None,
    grader: Grader | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Rehearse:
    config = config or load_config(settings.config_path)
    scenarios = load_scenarios(scenarios_dir(config.scenarios_dir, settings.config_path))
    if problems := unknown_scenarios(config.model_dump(), set(scenarios)):
        raise ConfigError(problems)
    keep_secret(settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
                settings.webhook_secret, settings.openai_api_key, settings.metrics_token)  # never in a log line
    db = Database(settings.database_url)
    db.migrate()
    client = slack_client(settings)
    default_buyer, default_grader = practice_partners(settings, config)
    coach = Coach(
        db=db, config=config, scenarios=scenarios,
        buyer=buyer or default_buyer, grader=grader or default_grader,
        directory=SlackDirectory(client), clock=clock,
        workers=ThreadPoolExecutor(settings.practice_workers, thread_name_prefix="practice"),
    )
    sync_teams(coach)
    bolt = App(
        client=client,
        signing_secret=settings.slack_signing_secret,
        request_verification_enabled=not settings.socket_mode,
        token_verification_enabled=False,
        listener_executor=ContextThreadPool(settings.slack_workers, thread_name_prefix="slack-listener"),
    )
    listened = handlers.register(bolt, coach)
    bolt.use(slack_request_ids)  # Slack's ids (event, action, command) on the request's log lines
    # The Slack inbox's Bolt: the receiver checked the signature; listeners run to the end before `dispatch` returns.
    stored = App(client=client, request_verification_enabled=False, token_verification_enabled=False,
                 process_before_response=True)
    handlers.register(stored, coach)
    stored.use(slack_request_ids)
    inbox = InboxWriter(db.inbox, clock=clock)
    over_http = settings.slack_signing_secret and not settings.socket_mode  # `serve` checks HTTP mode has a secret
    receiver = None
    if over_http:
        installed = InstalledApp(client)
        installed.get()  # asks Slack now, in the background: the first requests find the answer
        receiver = SlackReceiver(inbox, listened, settings.slack_signing_secret, installed=installed)
    web = Starlette(routes=routes(bolt=bolt, coach=coach, webhook_secret=settings.webhook_secret,
                                  receiver=receiver, metrics_token=settings.metrics_token),
                    lifespan=partial(_http_threads, settings.http_threads),
                    exception_handlers={**dict.fromkeys(DATABASE_DOWN, database_unavailable),
                                        BodyTooSlow: body_too_slow, Exception: server_failed})
    web.add_middleware(RequestIds)  # X-Request-Id in, out, and on every log line of the request
    sender = OutboxSender(db, slack_client(settings, wait_on_rate_limit=False),
                          lease=timedelta(seconds=settings.outbox_lease_seconds),
                          on_failed=partial(expire_after_failed_delivery, coach),
                          linger=timedelta(seconds=settings.outbox_sweep_seconds))  # paced rows: no sweep wait
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(sender.drain, "interval", seconds=settings.outbox_sweep_seconds, id="outbox",
                      max_instances=1, coalesce=True)
    scheduler.add_job(lambda: send_all_due_followups(coach, now=coach.clock()), "interval",
                      seconds=settings.followup_sweep_seconds, id="followups", max_instances=1, coalesce=True)
    scheduler.add_job(lambda: chase_approvals(coach, now=coach.clock()), "interval", minutes=5, id="approvals",
                      max_instances=1, coalesce=True)
    for team in config.teams:  # Monday 9:00 in each team's own time zone; one digest a week even with replicas
        scheduler.add_job(post_digest, "cron", day_of_week="mon", hour=9, timezone=team.timezone,
                          kwargs={"coach": coach, "team_id": team.id, "now": None}, id=f"digest:{team.id}",
                          max_instances=1, coalesce=True, misfire_grace_time=6 * 3600)
    scheduler.add_job(rematch, "interval", args=[coach], hours=1, id="rematch", max_instances=1, coalesce=True,
                      next_run_time=datetime.now(UTC))  # at start: calls waiting for reps configured since
    scheduler.add_job(lambda: purge_old_text(coach, now=coach.clock()), "interval", hours=6, id="retention",
                      max_instances=1, coalesce=True)  # call and practice text past coach.yaml's `retention`
    dispatcher = InboxDispatcher(db.inbox, stored, threads=settings.slack_workers, clock=clock,
                                 sweep_s=settings.outbox_sweep_seconds)
    app = Rehearse(settings=settings, coach=coach, client=client, bolt=bolt, web=web, sender=sender,
                   scheduler=scheduler, inbox=inbox, dispatcher=dispatcher, listened=listened)
    inbox.on_commit(app.wake_inbox)
    db.on_outbox_commit(app.wake_sender)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """Runs the app's web server on loopback in a thread (the demo and the tests)."""

    def __init__(self, app: Rehearse, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(server_config(app.web, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="web")

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"web server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
