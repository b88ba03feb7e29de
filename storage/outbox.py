"""Outbox rows: enqueue inside a unit of work, claim for sending, record the outcome."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from storage.models import OutboxMessage, OutboxStatus

UNSENT = (OutboxStatus.PENDING, OutboxStatus.SENDING)
POST = "chat.postMessage"
UPDATE = "chat.update"
DELETE = "chat.delete"
# A chat.update payload key: the thread in which the sender may post the new text as a reply instead of editing,
# when Slack's limit on edits would hold the edit up (see `answer_below`). Keys starting with "_" never reach Slack.
ANSWER_BELOW = "_answer_below_in_thread"


def answer_below(payload: dict[str, Any], thread_ts: str) -> dict[str, Any]:
    """An edit of a placeholder that may become a reply in `thread_ts` if it cannot go out within seconds.

    `chat.update` is a Tier 3 method (50 a minute per workspace): with many roleplays at once, editing every
    "typing…" placeholder would make a buyer's answer wait a minute; posting it below does not.
    """
    return {**payload, ANSWER_BELOW: thread_ts}


def enqueue(
    session: Session,
    *,
    method: str,
    channel: str | None,
    payload: dict[str, Any],
    now: datetime,
    dedupe_key: str | None = None,
    anchor: OutboxMessage | None = None,
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Add one Slack write to the session's transaction; the sender delivers it after commit.

    `anchor` is an earlier outbox message whose ts this one needs (thread replies, chat.update).
    """
    if anchor is not None and anchor.id is None:
        session.flush()
    held = not_before if not_before is not None and not_before > now else None
    row = OutboxMessage(
        held_until=held,
        dedupe_key=dedupe_key,
        method=method,
        channel=channel,
        payload=payload,
        anchor_id=anchor.id if anchor is not None else None,
        next_attempt_at=not_before or now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    session.info["outbox_added"] = True
    return row


def claim_due(session: Session, *, now: datetime, lease: timedelta, limit: int = 20,
              paced: Collection[str] = ()) -> list[OutboxMessage]:
    """Claim due rows, oldest first; a channel's posts wait behind its earlier unsent posts.

    A row is due when pending and its time has come, or when the sender that claimed it let its lease
    lapse (it died mid-send). Only `chat.postMessage` rows queue per channel, so a manager's button
    feedback (`chat.update`, ephemeral answers) never waits behind a backlog of posts. On PostgreSQL,
    rows another replica holds are skipped. Each claimed row gets a fresh `claim_token`. Posts to the `paced`
    channels (no token left this second) stay unclaimed, so their queues cost nothing until they may post.
    """
    earlier = aliased(OutboxMessage)
    blocked = exists().where(
        and_(
            # posts queue behind posts, edits behind edits, in the same channel...
            or_(and_(OutboxMessage.method == POST, earlier.method == POST),
                and_(OutboxMessage.method == UPDATE, earlier.method == UPDATE)),
            earlier.channel == OutboxMessage.channel,
            earlier.id < OutboxMessage.id,
            col(earlier.status).in_(UNSENT),
            # ...but a message held for the recipient's working hours holds up nothing
            or_(col(earlier.held_until).is_(None), col(earlier.held_until) <= now),
        )
    )
    due = or_(
        and_(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == OutboxStatus.SENDING, col(OutboxMessage.lease_until) < now),
    )
    if paced:
        due = and_(due, or_(OutboxMessage.method != POST, col(OutboxMessage.channel).not_in(sorted(paced))))
    query = (
        select(OutboxMessage)
        .where(due, ~blocked)
        .order_by(col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.exec(query))
    for row in rows:
        row.status = OutboxStatus.SENDING
        row.lease_until = now + lease
        row.claim_token = secrets.token_hex(8)
        row.attempts += 1
        session.add(row)
    return rows


def still_mine(session: Session, row: OutboxMessage, *, now: datetime, lease: timedelta) -> bool:
    """Renew the lease on a claimed row just before sending; False if another sender has taken it over."""
    result = session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == row.id, col(OutboxMessage.claim_token) == row.claim_token,
               col(OutboxMessage.status) == OutboxStatus.SENDING)
        .values(lease_until=now + lease)
    )
    return result.rowcount == 1


def settle(session: Session, row: OutboxMessage, **values: Any) -> bool:
    """Record the outcome of a send, only if this sender still holds the claim."""
    result = session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == row.id, col(OutboxMessage.claim_token) == row.claim_token)
        .values(lease_until=None, claim_token=None, **values)
    )
    return result.rowcount == 1


def pending_count(session: Session, *, due_by: datetime | None = None) -> int:
    """Unsent rows; with `due_by`, only those due by then (not those held for working hours)."""
    query = select(OutboxMessage.id).where(col(OutboxMessage.status).in_(UNSENT))
    if due_by is not None:
        query = query.where(OutboxMessage.next_attempt_at <= due_by)
    return len(session.exec(query).all())


def enqueue_ephemeral(session: Session, *, channel: str, user: str, text: str, now: datetime) -> OutboxMessage:
    """A message only `user` sees, e.g. why a click changed nothing."""
    return enqueue(session, method="chat.postEphemeral", channel=channel,
                   payload={"channel": channel, "user": user, "text": text}, now=now)
