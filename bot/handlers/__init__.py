"""Bolt listeners, registered in one place; services reach them through the request context.

Nothing here writes to the database before Slack gets its answer: a retried event is recognised by its
`event_id` inside the same transaction as its effect (see `practice.handle_reply`).
"""

from __future__ import annotations

import logging

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
        module.register(app)
