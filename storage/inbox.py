"""Slack inbox rows: written when a request is acknowledged, claimed by a worker, deleted once handled.

Sessions here are of `Database.inbox` (on SQLite, a file of its own beside the database).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, or_, tuple_, update
from sqlmodel import Session, col, select

from storage.models import SlackInboxItem


def record(session: Session, requests: Collection[tuple[str, str, dict]], *, now: datetime) -> None:
    """Store (lane, body, headers) for each acknowledged request, in arrival order."""
    session.execute(SlackInboxItem.__table__.insert(), [
        {"lane": lane, "body": body, "headers": headers, "received_at": now, "attempts": 0}
        for lane, body, headers in requests])


def claim(session: Session, *, now: datetime, lease: timedelta, limit: int) -> list[SlackInboxItem]:
    """The oldest row of each lane, unless a worker holds it, oldest first.

    The row being handled stays the oldest of its lane until it is deleted, so a lane's next request waits for it,
    here and on every other replica. A row whose lease lapsed (its worker died) is taken again. On PostgreSQL,
    rows another replica is claiming are skipped; when it commits first, the lease it set excludes them.
    """
    oldest = select(func.min(SlackInboxItem.id)).group_by(col(SlackInboxItem.lane))
    query = (
        select(SlackInboxItem)
        .where(col(SlackInboxItem.id).in_(oldest), _unheld(now))
        .order_by(col(SlackInboxItem.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.exec(query))
    for row in rows:
        row.lease_until = now + lease
        row.attempts += 1
        session.add(row)
    return rows


# A claim is a row's id and its `attempts` after the claim: a worker renews or deletes only a row it still holds,
# not one another worker took again after its lease lapsed (the database was away, the worker stalled).
Claim = tuple[int, int]


def renew(session: Session, claims: Collection[Claim], *, until: datetime) -> set[Claim]:
    """Extend the leases of rows whose work is still running; returns the claims still held (renewed)."""
    held = session.execute(update(SlackInboxItem).where(_held(claims)).values(lease_until=until)
                           .returning(SlackInboxItem.id, SlackInboxItem.attempts)).all()
    return {(row_id, attempts) for row_id, attempts in held}


def handled(session: Session, claims: Collection[Claim]) -> None:
    """Delete the rows handled, unless another worker holds them now (it deletes them when it is done)."""
    session.execute(delete(SlackInboxItem).where(_held(claims)))


def _held(claims: Collection[Claim]):  # noqa: ANN202
    return tuple_(col(SlackInboxItem.id), col(SlackInboxItem.attempts)).in_(sorted(claims))


def depth(session: Session, *, now: datetime) -> tuple[int, datetime | None]:
    """Rows waiting or being handled, and when the oldest that no worker holds arrived (a row whose work runs, a
    model's reply say, is not late)."""
    count, oldest = session.execute(select(func.count(),
                                           func.min(case((_unheld(now), SlackInboxItem.received_at))))).one()
    return count, oldest


def _unheld(now: datetime):  # noqa: ANN202
    """No worker holds the row: never claimed, or its lease lapsed."""
    return or_(col(SlackInboxItem.lease_until).is_(None), col(SlackInboxItem.lease_until) < now)
