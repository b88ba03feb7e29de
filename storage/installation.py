"""Whether Slack still has the app: recorded on `app_uninstalled` / the bot's `tokens_revoked`, cleared when Slack
answers again. The outbox sender asks `app_removed` before each pass and sends nothing while it is true."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.models import SlackInstallation


def app_removed(session: Session) -> bool:
    """True while a workspace has uninstalled the app or revoked its bot token (and Slack has not answered since)."""
    return session.exec(select(SlackInstallation.team_id).where(col(SlackInstallation.removed)).limit(1)).first() \
        is not None


def record_removed(session: Session, *, team_id: str, reason: str, now: datetime) -> None:
    row = session.get(SlackInstallation, team_id, with_for_update=True) or SlackInstallation(team_id=team_id,
                                                                                             changed_at=now)
    row.removed, row.reason, row.changed_at = True, reason, now
    session.add(row)
    session.flush()


def record_back(session: Session, *, now: datetime) -> bool:
    """Every workspace active again; True when one had been removed (the outbox has rows to send again)."""
    result = session.execute(update(SlackInstallation).where(col(SlackInstallation.removed))
                             .values(removed=False, changed_at=now))
    if result.rowcount:
        session.info["outbox_added"] = True  # wakes the sender once this commits (see Database.on_outbox_commit)
    return bool(result.rowcount)
