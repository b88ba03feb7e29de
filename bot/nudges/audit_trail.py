"""The audit log for compliance: every decision, refusal, reminder, expiry and dispute, with who and when."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, or_, select

from storage.models import AuditEntry, Nudge, Rep


def audit_entries(session: Session, *, rep: str | None = None, since: datetime | None = None) -> list[AuditEntry]:
    """Entries oldest first; `rep` (Slack id or email) keeps those by the rep or about their nudges."""
    query = select(AuditEntry).order_by(col(AuditEntry.at), col(AuditEntry.id))
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if rep is not None:
        person = session.exec(select(Rep).where(or_(Rep.slack_user_id == rep, Rep.email == rep.lower()))).first()
        nudges = session.exec(select(Nudge.id).where(Nudge.rep_id == person.id)).all() if person else []
        subjects = [f"nudge:{n}" for n in nudges]
        query = query.where(or_(AuditEntry.actor == rep, col(AuditEntry.subject).in_(subjects)))
    return list(session.exec(query))


def as_csv(entries: Sequence[AuditEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "actor", "action", "subject", "detail"])
    for e in entries:
        writer.writerow([e.at.isoformat(), e.actor, e.action, e.subject, json.dumps(e.detail, sort_keys=True)])
    return out.getvalue()
