"""Bolt listeners, registered in one place; services reach them through the request context.

Over HTTP, events and clicks are stored in the Slack inbox and answered before any listener runs (`inbox.py`);
a retried event is recognised by its `event_id` inside the same transaction as its effect (see
`practice.handle_reply`).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from slack_bolt import App

from bot.coach import Coach
from bot.handlers import approvals, commands, home, practice
from bot.slack.payloads import OddPayload
from bot.telemetry import collecting, noting

log = logging.getLogger(__name__)
_failures: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar("failures", default=None)


@dataclass(frozen=True)
class Listened:
    """The events and clicks the listeners handle that may wait until after Slack's ack (see `handlers.inbox`)."""

    events: frozenset[str]
    actions: frozenset[str]
    # Per event type, for each of its listeners, which events it acts on (None: all of them).
    acts_on: Mapping[str, tuple[Callable[[dict], bool] | None, ...]] = field(default_factory=dict)

    def ignores(self, payload: dict) -> bool:
        """An event every listener of its type would return early on: Slack gets its 200, nothing is stored."""
        event = payload.get("event")
        checks = self.acts_on.get(event.get("type"), ()) if isinstance(event, dict) else ()
        return bool(checks) and all(check is not None and not check(event) for check in checks)


def register(app: App, coach: Coach) -> Listened:
    """Wire every listener, the shared middleware and the one error handler."""

    def provide_coach(context, next) -> None:  # noqa: A002 - Bolt injects `next` by name
        context["coach"] = coach
        next()

    def on_error(error, body) -> None:
        kind = body.get("type") if isinstance(body, dict) else "?"
        if isinstance(error, OddPayload):  # an event no Slack workspace sends: refused, nothing to fix here
            log.warning("refused a %s request: %s", kind, error)
            return
        log.error("listener failed on a %s request: %s", kind, error, exc_info=error)
        note_failure(error)

    app.use(provide_coach)
    app.error(on_error)
    registry = _KeepingTheAck(app)
    for module in (approvals, practice, commands, home):
        module.register(registry)
    # A click that opens a modal must do so within its trigger_id's 3 seconds: it is handled before the ack.
    return Listened(frozenset(registry.events),
                    frozenset(registry.actions - approvals.OPEN_A_MODAL - practice.OPEN_A_MODAL),
                    {kind: tuple(checks) for kind, checks in registry.acts_on.items()})


def failures_noted() -> AbstractContextManager[list[BaseException]]:
    """What listeners raise while one request is handled in this thread (the inbox worker retries on a database
    failure instead of dropping the request)."""
    return collecting(_failures)


def note_failure(error: BaseException) -> None:
    """Record a listener's failure for `failures_noted` (a no-op outside it)."""
    noting(_failures, error)


def keep_the_ack(listener: Callable) -> Callable:
    """Log a failure after the ack here. Bolt's own handling of it (slack_bolt 1.30, ThreadListenerRunner) resets
    the ack it already has, so Slack got a 404 or a 500 three seconds later instead of the answer given."""

    @functools.wraps(listener)  # Bolt injects arguments by the wrapped function's names
    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return listener(*args, **kwargs)
        except OddPayload as odd:  # a click no message of Rehearse's has: refused, nothing to fix here
            log.warning("%s refused a request: %s", listener.__name__, odd)
            return None
        except Exception as error:
            ack = kwargs.get("ack")
            if ack is None or ack.response is None:
                raise  # not answered yet: Bolt answers 500 and `on_error` logs it
            body = kwargs.get("body")
            kind = body.get("type") if isinstance(body, dict) else "?"
            log.error("%s failed after the ack on a %s request: %s", listener.__name__, kind, error, exc_info=error)
            note_failure(error)
            return None

    return run


class _KeepingTheAck:
    """Bolt's app, registering every action, view and command listener through `keep_the_ack`, and noting the
    events and action ids listened to. An event listener may say which events it acts on (`acts_on=`): it must
    still take them all, as Bolt answers an event no listener takes with a 404 and Slack retries it."""

    def __init__(self, app: App):
        self._app = app
        self.events: set[str] = set()
        self.actions: set[str] = set()
        self.acts_on: dict[str, list[Callable[[dict], bool] | None]] = {}

    def __getattr__(self, name: str):  # noqa: ANN204
        register = getattr(self._app, name)
        if name not in ("action", "view", "command", "shortcut", "options", "event"):
            return register

        def registering(*matchers, **options):  # noqa: ANN002, ANN003, ANN202
            noted = {"event": self.events, "action": self.actions}.get(name)
            if noted is not None:
                noted.update(m for m in matchers if isinstance(m, str))
            if name == "event":
                acts_on = options.pop("acts_on", None)
                for kind in (m for m in matchers if isinstance(m, str)):
                    self.acts_on.setdefault(kind, []).append(acts_on)
                return register(*matchers, **options)
            return lambda listener: register(*matchers, **options)(keep_the_ack(listener))

        return registering
