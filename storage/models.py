"""The tables. Every pending thing (nudges, follow-ups, the outbox) lives here, so a restart resumes.

All datetimes are timezone-aware UTC (SQLModel's UTCDateTime).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel


class NudgeState(StrEnum):
    """Stored as its value in a plain string column, so adding a state needs no type migration."""

    PROPOSED = "proposed"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    DELIVERED = "delivered"
    DISPUTED = "disputed"
    PRACTISING = "practising"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def _json(**kw: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False), **kw)


class Team(SQLModel, table=True):
    __tablename__ = "teams"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    approvals_channel: str
    digest_channel: str | None = None
    timezone: str = "UTC"


class Rep(SQLModel, table=True):
    """A Slack user who is scored on calls; known by Slack ID, email or both."""

    __tablename__ = "reps"
    id: int | None = Field(default=None, primary_key=True)
    slack_user_id: str | None = Field(default=None, unique=True, max_length=32)
    email: str | None = Field(default=None, unique=True, max_length=254)
    team_id: str | None = Field(default=None, foreign_key="teams.id", index=True)
    dm_channel: str | None = Field(default=None, max_length=32, description="the bot's DM with the rep, once seen")
    created_at: datetime

    @property
    def dm_target(self) -> str | None:
        """Where to DM the rep: the D channel once known (one pacing queue per DM), else the user id."""
        return self.dm_channel or self.slack_user_id


class Call(SQLModel, table=True):
    __tablename__ = "calls"
    __table_args__ = (UniqueConstraint("source", "call_id"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    call_id: str = Field(max_length=128)
    rep_ref: str = Field(max_length=254, description="the rep as the source named them")
    rep_id: int | None = Field(default=None, foreign_key="reps.id", index=True)
    started_at: datetime
    duration_s: int | None = None
    title: str | None = None
    call_type: str | None = None
    recording_url: str | None = None
    metrics: dict = _json()
    received_at: datetime


class CallScore(SQLModel, table=True):
    __tablename__ = "call_scores"
    __table_args__ = (Index("ix_call_scores_criterion_call", "criterion", "call_pk"),)
    id: int | None = Field(default=None, primary_key=True)
    call_pk: int = Field(foreign_key="calls.id", index=True)
    criterion: str = Field(max_length=64)
    score: float
    max: float
    evidence: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max


class Signal(SQLModel, table=True):
    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("rep_id", "criterion", "trigger_call_pk"),)
    id: int | None = Field(default=None, primary_key=True)
    rep_id: int = Field(foreign_key="reps.id", index=True)
    criterion: str = Field(max_length=64)
    rule: str = Field(max_length=32)
    trigger_call_pk: int = Field(foreign_key="calls.id")
    detail: dict = _json()
    detected_at: datetime
    status: str = Field(default="open", max_length=16, description="open, nudged, attached or waiting")
    nudge_id: int | None = Field(default=None, foreign_key="nudges.id", index=True)
    wait_reason: str | None = None


class Nudge(SQLModel, table=True):
    __tablename__ = "nudges"
    id: int | None = Field(default=None, primary_key=True)
    rep_id: int = Field(foreign_key="reps.id", index=True)
    team_id: str = Field(foreign_key="teams.id", index=True)
    signal_id: int | None = Field(default=None, foreign_key="signals.id")
    criterion: str = Field(max_length=64)
    scenario_id: str = Field(max_length=64)
    state: NudgeState = Field(default=NudgeState.PROPOSED, sa_type=String(24), index=True)
    approval_channel: str | None = None
    approval_ts: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    skip_reason: str | None = None
    policy: str = Field(default="manual", max_length=16)
    ask_manager_at: datetime | None = Field(default=None, description="rep-first: when the manager is asked")
    reminded_at: datetime | None = None
    created_at: datetime
    completed_at: datetime | None = None


class Dispute(SQLModel, table=True):
    """A rep saying a nudge does not look right; the manager keeps or withdraws it."""

    __tablename__ = "disputes"
    id: int | None = Field(default=None, primary_key=True)
    nudge_id: int = Field(foreign_key="nudges.id", index=True)
    rep_id: int = Field(foreign_key="reps.id")
    criterion: str = Field(max_length=64, index=True)
    comment: str
    opened_at: datetime
    outcome: str | None = Field(default=None, max_length=16, description="kept or withdrawn")
    decided_by: str | None = None
    decided_at: datetime | None = None


class PracticeSession(SQLModel, table=True):
    __tablename__ = "practice_sessions"
    __table_args__ = (UniqueConstraint("channel", "thread_ts"),)
    id: int | None = Field(default=None, primary_key=True)
    rep_id: int = Field(foreign_key="reps.id", index=True)
    nudge_id: int | None = Field(default=None, foreign_key="nudges.id")
    followup_id: int | None = Field(default=None, foreign_key="followups.id")
    scenario_id: str = Field(max_length=64)
    kind: str = Field(max_length=16, description="nudge, followup or on_demand")
    channel: str = Field(max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    active: bool = True
    attempt: int = Field(default=1, description="1 for the first try at this drill, 2 for the first retake, ...")
    started_at: datetime
    ended_at: datetime | None = None


class PracticeTurn(SQLModel, table=True):
    __tablename__ = "practice_turns"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="practice_sessions.id", index=True)
    seq: int
    role: str = Field(max_length=8)
    text: str
    ends: bool = False  # a buyer turn with which the buyer ended the call
    created_at: datetime


class Grade(SQLModel, table=True):
    __tablename__ = "grades"
    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="practice_sessions.id", unique=True)
    score: int
    passed: bool
    criteria: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    graded_at: datetime


class WinningLine(SQLModel, table=True):
    """Something a rep said in practice that the grader put at level 4: their own best wording."""

    __tablename__ = "winning_lines"
    id: int | None = Field(default=None, primary_key=True)
    rep_id: int = Field(foreign_key="reps.id", index=True)
    session_id: int = Field(foreign_key="practice_sessions.id")
    scenario_id: str = Field(max_length=64)
    criterion: str = Field(max_length=64)
    text: str
    saved_at: datetime


class FollowUp(SQLModel, table=True):
    __tablename__ = "followups"
    __table_args__ = (UniqueConstraint("nudge_id", "step"),)
    id: int | None = Field(default=None, primary_key=True)
    nudge_id: int = Field(foreign_key="nudges.id", index=True)
    rep_id: int = Field(foreign_key="reps.id", index=True)
    step: int
    due_at: datetime = Field(index=True)
    status: str = Field(default="scheduled", max_length=16, description="scheduled, sent or cancelled")
    sent_at: datetime | None = None


class OutboxMessage(SQLModel, table=True):
    """One Slack Web API write, committed with the state change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_channel_queue", "channel", "status", "id"),  # a channel's unsent rows, for ordering
    )
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str | None = Field(default=None, unique=True, max_length=128)
    method: str = Field(max_length=48)
    channel: str | None = Field(default=None, max_length=32)
    payload: dict = _json()
    anchor_id: int | None = Field(
        default=None, foreign_key="outbox.id", description="a message whose ts this one needs"
    )
    status: OutboxStatus = Field(default=OutboxStatus.PENDING, sa_type=String(16))
    attempts: int = 0
    next_attempt_at: datetime
    held_until: datetime | None = Field(default=None, description="held for the recipient's working hours")
    lease_until: datetime | None = None
    claim_token: str | None = Field(default=None, max_length=32, description="which sender holds the lease")
    ts: str | None = Field(default=None, max_length=32)
    sent_channel: str | None = Field(default=None, max_length=32)
    error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class SlackEvent(SQLModel, table=True):
    """Slack event ids already handled, so a retried delivery has one effect."""

    __tablename__ = "slack_events"
    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = Field(index=True)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=128)
    detail: dict = _json()


class SlackInstallation(SQLModel, table=True):
    """The app's standing in a Slack workspace: removed after `app_uninstalled` or the bot's `tokens_revoked`,
    active again once Slack answers (auth.test at start, or a new request from Slack). While any workspace is
    removed the outbox sender calls nothing: rows stay pending and go out after the reinstall."""

    __tablename__ = "slack_installations"
    team_id: str = Field(primary_key=True, max_length=32)
    removed: bool = False
    reason: str | None = Field(default=None, max_length=32, description="app_uninstalled or tokens_revoked")
    changed_at: datetime


class SlackInboxItem(SQLModel, table=True):
    """A Slack event or click acknowledged but not yet handled: the receiver writes it before Slack gets its 200,
    the worker hands it to Bolt and deletes it once the listener has run. Rows of one lane (a conversation) are
    handled one at a time, oldest first; a row whose worker died is taken again when its lease lapses."""

    __tablename__ = "slack_inbox"
    __table_args__ = (Index("ix_slack_inbox_lane", "lane", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    lane: str = Field(max_length=64, description="the conversation (or person) whose requests keep their order")
    body: str = Field(description="the request body as Slack signed it")
    headers: dict = _json(description="content-type, Slack's retry headers and the receiver's request id")
    received_at: datetime
    attempts: int = 0
    lease_until: datetime | None = Field(default=None, description="set while a worker handles the row")
