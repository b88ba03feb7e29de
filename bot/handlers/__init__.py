"""Bolt listeners, registered in one place; services reach them through the request context."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from slack_bolt import App, BoltResponse
from sqlalchemy.exc import IntegrityError

from bot.coach import Coach
from bot.handlers import approvals, commands, home, practice
from storage.models import SlackEvent

log = logging.getLogger(__name__)


def register(app: App, coach: Coach) -> None:
    """Wire every listener, the shared middleware and the one error handler."""

    def provide_coach(context, next) -> None:  # noqa: A002 - Bolt injects `next` by name
        context["coach"] = coach
        next()

    def skip_repeated_events(body, next) -> BoltResponse | None:  # noqa: A002
        """Slack retries an event it thinks failed; the event_id makes the second delivery a no-op."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            try:
                with coach.db.session() as session:
                    session.add(SlackEvent(event_id=event_id, received_at=datetime.now(UTC)))
            except IntegrityError:
                log.info("event %s already handled; ignoring the retry", event_id)
                return BoltResponse(status=200, body="")
        return next()

    def on_error(error, body) -> None:
        kind = body.get("type") if isinstance(body, dict) else "?"
        log.error("listener failed on a %s request: %s", kind, error, exc_info=error)

    app.use(provide_coach)
    app.use(skip_repeated_events)
    app.error(on_error)
    for module in (approvals, practice, commands, home):
        module.register(app)
