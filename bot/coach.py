"""The coaching services' collaborators, wired once in `bot/app.py` and handed to every service."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.config import CoachConfig
from bot.practice.grader import Grader
from bot.practice.roleplay import Buyer
from bot.practice.scenarios import Scenario
from bot.slack.directory import SlackDirectory
from bot.telemetry import collecting, noting
from storage.db import Database

log = logging.getLogger(__name__)
_started: contextvars.ContextVar[list[Future] | None] = contextvars.ContextVar("started", default=None)


def utcnow() -> datetime:
    return datetime.now(UTC)


def work_started() -> AbstractContextManager[list[Future]]:
    """The futures of the `Coach.run_later` calls made inside: the Slack inbox keeps a request (and its
    conversation's place in line) until the work it started is done, so a worker that dies mid-reply leaves the
    request to be handled again."""
    return collecting(_started)


class KeyedLocks:
    """One lock per key (a practice thread), created on demand and dropped when nobody holds it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


@dataclass(frozen=True)
class Coach:
    db: Database
    config: CoachConfig
    scenarios: dict[str, Scenario]
    buyer: Buyer
    grader: Grader
    directory: SlackDirectory
    clock: Callable[[], datetime] = utcnow
    # Slow work (a model-backed buyer or grader) runs here, never on Bolt's listener threads.
    workers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="practice"))
    thread_locks: KeyedLocks = field(default_factory=KeyedLocks)

    def run_later(self, work: Callable[..., object], /, *args: object, **kwargs: object) -> Future:
        """Run slow work on the practice pool, in a copy of the caller's context (its request and nudge ids stay
        on the log lines); a failure is logged. Inside `work_started`, the future is noted there too."""

        def report(done) -> None:  # noqa: ANN001
            if done.exception() is not None:
                log.error("%s failed", getattr(work, "__name__", work), exc_info=done.exception())

        future = self.workers.submit(contextvars.copy_context().run, work, *args, **kwargs)
        future.add_done_callback(report)
        noting(_started, future)
        return future

    def scenario(self, scenario_id: str, criterion: str | None = None) -> Scenario | None:
        """The scenario, or (renamed or removed since) the one coach.yaml now routes the criterion to."""
        if scenario_id in self.scenarios:
            return self.scenarios[scenario_id]
        routed = self.config.criteria.get(criterion) if criterion else None
        return self.scenarios.get(routed.scenario) if routed else None
