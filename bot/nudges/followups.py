"""Spaced follow-ups: rows on the ladder, and the job that DMs the ones that are due."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.nudges.budget import add_working_days, next_working_time
from bot.practice.schedule import Transfer, followup_dates, next_gap, transfer_status
from bot.slack import blocks, ids
from bot.telemetry import bind, scoped
from storage import queries
from storage.models import Call, CallScore, FollowUp, Nudge, OutboxMessage, OutboxStatus, Rep, Signal
from storage.outbox import enqueue

log = logging.getLogger(__name__)


def schedule_followups(session: Session, coach: Coach, *, nudge: Nudge, completed_at: datetime) -> list[datetime]:
    dates = followup_dates(completed_at, coach.config.followups.ladder_days)
    for step, due in enumerate(dates, start=1):
        session.add(FollowUp(nudge_id=nudge.id, rep_id=nudge.rep_id, step=step, due_at=due))
    return dates


LATE = timedelta(days=2)  # a follow-up delivered this long after it was due says so


def live_trend(session: Session, coach: Coach, nudge: Nudge) -> Transfer:
    """The rep's live calls on the nudge's skill since the practice completed, against the calls that triggered it."""
    signal = session.get(Signal, nudge.signal_id) if nudge.signal_id else None
    before = [float(v) for v in (signal.detail.get("values") or signal.detail.get("scores") or [])] if signal else []
    rule = coach.config.rule(nudge.criterion)
    since = nudge.completed_at or nudge.created_at
    if rule is not None and hasattr(rule, "metric"):  # a metric rule: the metric on each call
        calls = session.exec(select(Call).where(Call.rep_id == nudge.rep_id, Call.started_at > since)).all()
        after = [float(c.metrics[rule.metric]) for c in calls if rule.metric in (c.metrics or {})]
        threshold = rule.above if rule.above is not None else rule.below
        margin = abs(threshold) * 0.1 or 1.0  # a tenth of the limit, in the metric's own units
        return transfer_status(before, after, threshold=threshold, margin=margin,
                               higher_is_better=rule.above is None)
    else:
        rows = session.exec(select(CallScore).join(Call, col(Call.id) == col(CallScore.call_pk)).where(
            Call.rep_id == nudge.rep_id, Call.started_at > since, CallScore.criterion == nudge.criterion)).all()
        after = [r.percent for r in rows]
        threshold = rule.threshold if rule is not None else 60.0
    return transfer_status(before, after, threshold=threshold)


def rep_working_start(coach: Coach, rep: Rep) -> datetime:
    """The next moment in the rep's working hours (their Slack time zone when known)."""
    from bot.nudges.approval import rep_zone

    budget = coach.config.budget
    return next_working_time(coach.clock(), timezone=rep_zone(coach, rep), working_days=budget.working_days,
                             hours=budget.working_hours)


def after_followup_drill(session: Session, coach: Coach, *, followup: FollowUp, passed: bool) -> None:
    """Adapt the ladder: a pass stretches the wait for the next follow-up; a miss brings a re-drill within a few
    working days, and the manager hears about it in the approval thread."""
    now = coach.clock()
    config = coach.config.followups
    followup.status = "done"
    session.add(followup)
    nudge = session.get(Nudge, followup.nudge_id)
    previous_gap = max(followup.due_at - (nudge.completed_at or followup.due_at), timedelta(days=1))
    if passed:
        upcoming = session.exec(select(FollowUp).where(FollowUp.nudge_id == nudge.id, FollowUp.status == "scheduled")
                                .order_by(col(FollowUp.due_at))).first()
        if upcoming is not None:
            upcoming.due_at = now + next_gap(previous_gap, passed=True, stretch=config.stretch,
                                             max_gap=timedelta(days=config.max_gap_days), redrill=timedelta(0))
            session.add(upcoming)
        return
    team = coach.config.team(nudge.team_id)
    zone = team.timezone if team else "UTC"
    due = add_working_days(now, config.redrill_working_days, timezone=zone,
                           working_days=coach.config.budget.working_days)
    step = max(session.exec(select(FollowUp.step).where(FollowUp.nudge_id == nudge.id)).all(), default=0) + 1
    session.add(FollowUp(nudge_id=nudge.id, rep_id=nudge.rep_id, step=step, due_at=due))
    rep = session.get(Rep, nudge.rep_id)
    note = (f"<@{rep.slack_user_id}> missed the refresher on "
            f"{coach.config.criterion_label(nudge.criterion).lower()}; a re-drill goes out {due:%a %b %d}.")
    posted = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"nudge:{nudge.id}:approval")).first()
    if posted is not None and posted.status == OutboxStatus.SENT:
        enqueue(session, method="chat.postMessage", channel=posted.channel, anchor=posted, payload={"text": note},
                now=now)
    elif team is not None:
        enqueue(session, method="chat.postMessage", channel=team.approvals_channel, now=now,
                payload={"channel": team.approvals_channel, "text": note})
    queries.audit(session, at=now, actor="rehearse", action="redrill_scheduled", subject=f"nudge:{nudge.id}")


def send_all_due_followups(coach: Coach, *, now: datetime, batch: int = 100) -> int:
    """Dispatch every follow-up due at `now`, `batch` per transaction (so a crash loses at most one batch's work,
    which the next run does again: nothing is marked sent without its DM committed beside it)."""
    total = 0
    while sent := send_due_followups(coach, now=now, limit=batch):
        total += sent
        if sent < batch:
            break
    return total


@scoped  # each follow-up binds its nudge in turn
def send_due_followups(coach: Coach, *, now: datetime, limit: int = 100) -> int:
    """DM a retention drill for each follow-up due at `now`; each row is claimed once.

    `now` may be ahead of the clock (`rehearse jobs run --as-of`); the DM itself goes out at once.
    """
    with coach.db.session() as session:
        due = list(session.exec(
            select(FollowUp)
            .where(FollowUp.status == "scheduled", FollowUp.due_at <= now)
            .order_by(col(FollowUp.due_at)).limit(limit)
            .with_for_update(skip_locked=True)
        ))
        for followup in due:
            bind(nudge_id=followup.nudge_id)
            nudge = session.get(Nudge, followup.nudge_id)
            rep = session.get(Rep, followup.rep_id)
            scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
            if scenario is None:
                followup.status = "cancelled"
                session.add(followup)
                queries.audit(session, at=now, actor="rehearse", action="followup_cancelled",
                              subject=f"followup:{followup.id}", reason=f"scenario {nudge.scenario_id!r} is gone")
                continue
            label = coach.config.criterion_label(nudge.criterion)
            trend = live_trend(session, coach, nudge).describe(label)
            late = f" (due {followup.due_at:%b %d}; sorry it is late)" if now - followup.due_at > LATE else ""
            invite = blocks.practice_invite(
                value=ids.practice_value("followup", followup.id),
                headline=f"Refresher{late}: on {nudge.completed_at:%b %d} you practised {label.lower()}. "
                         f"{trend}. Two quick turns to keep it sharp.",
                scenario_title=scenario.title, goal=scenario.goal, button_text="Start refresher",
            )
            enqueue(session, method="chat.postMessage", channel=rep.dm_target,
                    payload={"channel": rep.dm_target, **invite}, dedupe_key=f"followup:{followup.id}:invite",
                    now=coach.clock(), not_before=rep_working_start(coach, rep))
            followup.status, followup.sent_at = "sent", now
            session.add(followup)
            queries.audit(session, at=now, actor="rehearse", action="followup_sent",
                          subject=f"followup:{followup.id}", step=followup.step)
        return len(due)
