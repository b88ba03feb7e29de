"""Bolt listeners, registered in one place; services reach them through the request context.

Nothing here writes to the database before Slack gets its answer: a retried event is recognised by its
`event_id` inside the same transaction as its effect (see `practice.handle_reply`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from slack_bolt import App

from bot.coach import Coach
from bot.handlers import approvals, commands, home, practice

log = logging.getLogger(__name__)


def register(app: App, coach: Coach) -> None:
    """Wire every listener, the shared middleware and the one error handler."""

    def provide_coach(context, next) -> None:  # noqa: A002 - Bolt injects `next` by name
        context["coach"] = coach
        next()

    def on_error(error, body) -> None:
        kind = body.get("type") if isinstance(body, dict) else "?"
        log.error("listener failed on a %s request: %s", kind, error, exc_info=error)

    app.use(provide_coach)
    app.error(on_error)
    for module in (approvals, practice, commands, home):
        module.register(_KeepingTheAck(app))


def keep_the_ack(listener: Callable) -> Callable:
    """Log a failure after the ack here. Bolt's own handling of it (slack_bolt 1.30, ThreadListenerRunner) resets
    the ack it already has, so Slack got a 404 or a 500 three seconds later instead of the answer given."""

    @functools.wraps(listener)  # Bolt injects arguments by the wrapped function's names
    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return listener(*args, **kwargs)
        except Exception as error:
            ack = kwargs.get("ack")
            if ack is None or ack.response is None:
                raise  # not answered yet: Bolt answers 500 and `on_error` logs it
            body = kwargs.get("body")
            kind = body.get("type") if isinstance(body, dict) else "?"
            log.error("%s failed after the ack on a %s request: %s", listener.__name__, kind, error, exc_info=error)
            return None

    return run


class _KeepingTheAck:
    """Bolt's app, registering every action, view and command listener through `keep_the_ack`."""

    def __init__(self, app: App):
        self._app = app

    def __getattr__(self, name: str):  # noqa: ANN204
        register = getattr(self._app, name)
        if name not in ("action", "view", "command", "shortcut", "options"):
            return register
        return lambda *matchers, **options: lambda listener: register(*matchers, **options)(keep_the_ack(listener))
