"""Manager approval: the Approve / Skip message, who may decide, and exactly one decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.budget import next_working_time
from bot.nudges.evidence_sides import BUYER_SIDE
from bot.slack import blocks, ids
from bot.telemetry import about_nudge
from storage import queries
from storage.models import Nudge, NudgeState, OutboxMessage, OutboxStatus, Rep, Signal
from storage.outbox import enqueue, enqueue_ephemeral


def _limit(detail: dict, rule: str) -> str:
    threshold = blocks.format_value(detail.get("threshold", 0), detail.get("unit", "percent"))
    if rule == "metric_above":
        return f"limit: above {threshold}"
    if rule == "metric_below":
        return f"limit: below {threshold}"
    if rule == "transfer_slipped":
        return f"slipped since practice, from {threshold} before it"
    return f"threshold {threshold}" + (", the team's baseline" if detail.get("calibrated") else "")


def approval_card(session: Session, coach: Coach, *, nudge: Nudge) -> blocks.ApprovalCard:
    """Everything the approval message shows, from the nudge, its signal and the evidence attached since."""
    rep = session.get(Rep, nudge.rep_id)
    signal = session.get(Signal, nudge.signal_id) if nudge.signal_id else None
    attached = list(session.exec(select(Signal).where(Signal.nudge_id == nudge.id, Signal.status == "attached")
                                 .order_by(col(Signal.id).desc())))
    latest = attached[0] if attached else signal
    detail = latest.detail if latest else {}
    quotes = [q for s in [*attached, signal] if s for q in s.detail.get("quotes", ())
              if (q.get("speaker") or "rep").lower() not in BUYER_SIDE]
    seen: set[str] = set()
    unique = [q for q in quotes if not (q["text"] in seen or seen.add(q["text"]))]
    waiting = session.exec(select(Signal.criterion).where(Signal.rep_id == nudge.rep_id, Signal.status == "waiting")
                           .distinct()).all() if nudge.state == NudgeState.PENDING_APPROVAL else []
    scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
    priority = coach.config.priority_for(nudge.criterion)
    return blocks.ApprovalCard(
        nudge_id=nudge.id,
        rep_user=rep.slack_user_id or rep.email or "unknown",
        criterion_label=coach.config.criterion_label(nudge.criterion),
        values=tuple(blocks.format_value(v, detail.get("unit", "percent"))
                     for v in detail.get("values", detail.get("scores", ()))),
        limit=_limit(detail, latest.rule if latest else "below_threshold"),
        quotes=tuple(blocks.Quote(q["text"], q.get("at_s"), q.get("call_title"), q.get("recording_url"))
                     for q in unique),
        scenario_title=scenario.title if scenario else f"{nudge.scenario_id} (no longer in the library)",
        scenario_summary=scenario.goal if scenario else "Fix the scenario in coach.yaml, then approve.",
        priority=priority.name if priority else None,
        waiting=tuple(coach.config.criterion_label(c) for c in waiting if c != nudge.criterion),
    )


def _working_start(coach: Coach, timezone: str | None, now: datetime) -> datetime:
    budget = coach.config.budget
    return next_working_time(now, timezone=timezone or "UTC", working_days=budget.working_days,
                             hours=budget.working_hours)


def rep_zone(coach: Coach, rep: Rep) -> str:
    """The rep's Slack time zone when already known (never asks Slack here), else the team's."""
    team = coach.config.team(rep.team_id) if rep.team_id else None
    known = coach.directory.timezone_for(rep.slack_user_id, cached_only=True) if rep.slack_user_id else None
    return known or (team.timezone if team else "UTC")


def scenario_choices(coach: Coach, nudge: Nudge) -> list[tuple[str, str, bool]]:
    """(scenario id, title, trains this skill) for the picker: this skill's drills first."""
    skill = coach.config.rule(nudge.criterion)
    routed = skill.scenario if skill else None
    routed_skill = coach.scenarios[routed].skill if routed in coach.scenarios else None
    ranked = sorted(coach.scenarios.values(), key=lambda s: (s.skill != routed_skill, s.title))
    return [(s.id, s.title, s.skill == routed_skill) for s in ranked]


def _approval_payload(session: Session, coach: Coach, nudge: Nudge) -> dict:
    return blocks.approval_message(approval_card(session, coach, nudge=nudge),
                                   choices=scenario_choices(coach, nudge), current=nudge.scenario_id)


def invite_rep(session: Session, coach: Coach, *, nudge: Nudge, rep: Rep, headline: str, now: datetime,
               zone: str | None = None) -> None:
    """DM the rep their drill, with Start practice and "This doesn't look right", in their working hours."""
    scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
    invite = blocks.practice_invite(value=ids.practice_value("nudge", nudge.id), headline=headline,
                                    scenario_title=scenario.title, goal=scenario.goal,
                                    dispute_value=str(nudge.id))
    enqueue(session, method="chat.postMessage", channel=rep.dm_target, payload={"channel": rep.dm_target, **invite},
            dedupe_key=f"nudge:{nudge.id}:invite", now=now,
            not_before=_working_start(coach, zone or rep_zone(coach, rep), now))


def _ask_manager(session: Session, coach: Coach, nudge: Nudge) -> None:
    now = coach.clock()  # jobs may run as of a later time; the message itself goes out now
    team = coach.config.team(nudge.team_id)
    nudge.approval_channel = team.approvals_channel
    session.add(nudge)
    session.flush()
    enqueue(session, method="chat.postMessage", channel=team.approvals_channel,
            payload={"channel": team.approvals_channel, **_approval_payload(session, coach, nudge)},
            dedupe_key=f"nudge:{nudge.id}:approval", now=now, not_before=_working_start(coach, team.timezone, now))


def request_approval(session: Session, coach: Coach, *, nudge: Nudge, rep: Rep, signal: Signal) -> None:
    """Start a new nudge on its team's approval policy: ask the manager, approve at once, or go rep-first."""
    now = coach.clock()
    policy = coach.config.approval_for(nudge.team_id)
    label = coach.config.criterion_label(nudge.criterion).lower()
    nudge.policy = policy.policy
    if policy.policy == "manual":
        lifecycle.check_transition(nudge.state, NudgeState.PENDING_APPROVAL)
        nudge.state = NudgeState.PENDING_APPROVAL
        _ask_manager(session, coach, nudge)
    elif policy.policy == "auto":
        lifecycle.check_transition(nudge.state, NudgeState.APPROVED)
        nudge.state, nudge.decided_by, nudge.decided_at = NudgeState.DELIVERED, "auto", now
        team = coach.config.team(nudge.team_id)
        session.add(nudge)
        session.flush()
        invite_rep(session, coach, nudge=nudge, rep=rep, now=now,
                   headline=f"A 5-minute drill on {label}, picked from your recent calls.")
        enqueue(session, method="chat.postMessage", channel=team.approvals_channel,
                payload={"channel": team.approvals_channel,
                         **blocks.approval_fyi(approval_card(session, coach, nudge=nudge))},
                dedupe_key=f"nudge:{nudge.id}:approval", now=now,
                not_before=_working_start(coach, team.timezone, now))
    else:  # rep_first
        lifecycle.check_transition(nudge.state, NudgeState.DELIVERED)
        nudge.state = NudgeState.DELIVERED
        nudge.ask_manager_at = now + timedelta(hours=policy.rep_first_hours)
        session.add(nudge)
        session.flush()
        invite_rep(session, coach, nudge=nudge, rep=rep, now=now,
                   headline=f"Your recent calls point at {label}. Practise it on your own first: your manager "
                            f"hears about it only if it is not started within {policy.rep_first_hours} hours.")
    queries.audit(session, at=now, actor="rehearse", action=f"nudge_{policy.policy}", subject=f"nudge:{nudge.id}",
                  rep=rep.slack_user_id, criterion=nudge.criterion)


def ask_managers_after_rep_first(coach: Coach, *, now: datetime) -> int:
    """Rep-first nudges the rep has not started in time: now the manager is asked."""
    with coach.db.session() as session:
        due = list(session.exec(
            select(Nudge).where(Nudge.state == NudgeState.DELIVERED, Nudge.policy == "rep_first",
                                col(Nudge.ask_manager_at) <= now).limit(100).with_for_update(skip_locked=True)))
        for nudge in due:
            if lifecycle.advance(session, nudge_id=nudge.id, expected=NudgeState.DELIVERED,
                                 target=NudgeState.PENDING_APPROVAL, ask_manager_at=None):
                _ask_manager(session, coach, session.get(Nudge, nudge.id))
                queries.audit(session, at=now, actor="rehearse", action="manager_asked", subject=f"nudge:{nudge.id}")
        return len(due)


def refresh_card(session: Session, coach: Coach, *, nudge: Nudge) -> None:
    """Show new evidence on a pending approval message (edits the posted message once it is sent)."""
    posted = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"nudge:{nudge.id}:approval")).first()
    if nudge.state != NudgeState.PENDING_APPROVAL or posted is None or posted.status == OutboxStatus.FAILED:
        return
    message = _approval_payload(session, coach, nudge)
    if posted.status != OutboxStatus.SENT:  # not out yet: send the fuller message instead
        posted.payload = {"channel": posted.channel, **message}
        session.add(posted)
        return
    enqueue(session, method="chat.update", channel=posted.channel, anchor=posted, payload=message, now=coach.clock())


@dataclass(frozen=True)
class Decision:
    outcome: str  # approved, skipped, refused, already_decided, unknown_nudge, no_scenario, may_decide, changed
    message: str


def mention(coach: Coach, person: str) -> str:
    """`<@U…>` for a Slack id, or for an email Slack has already resolved; else the email itself."""
    if "@" not in person:
        return f"<@{person}>"
    user = coach.directory.user_id_for_email(person, cached_only=True)
    return f"<@{user}>" if user else person


def _who_may(coach: Coach, deciders: list[str]) -> str:
    return ", ".join(mention(coach, p) for p in deciders) or "the team's manager"


def _authorise(coach: Coach, nudge_id: int, user_id: str) -> tuple[Nudge | None, bool, list[str]]:
    """The nudge, whether the user may decide for its team, and who may. Asks Slack outside any transaction."""
    with coach.db.reading() as session:
        nudge = session.get(Nudge, nudge_id)
    team = coach.config.team(nudge.team_id) if nudge else None
    deciders = team.deciders() if team else []
    return nudge, nudge is not None and coach.directory.is_one_of(user_id, deciders), deciders


def _blocked(session: Session, coach: Coach, nudge: Nudge | None, allowed: bool, deciders: list[str], *,
             user_id: str, channel: str, now: datetime) -> Decision | None:
    """Why this click changes nothing (told to the clicker alone), or None when it may go ahead."""
    if nudge is None:
        decision = Decision("unknown_nudge", "That practice suggestion no longer exists.")
    elif not allowed:
        decision = Decision("refused", f"Only {_who_may(coach, deciders)} can approve or skip practice for this team.")
        queries.audit(session, at=now, actor=user_id, action="approval_refused", subject=f"nudge:{nudge.id}")
    elif nudge.state != NudgeState.PENDING_APPROVAL:
        verb = str(nudge.state).replace("_", " ")
        by = f" by <@{nudge.decided_by}>" if nudge.decided_by and nudge.decided_by != "auto" else ""
        decision = Decision("already_decided", f"This suggestion was already {verb}{by}.")
    else:
        return None
    enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
    return decision


@about_nudge
def may_decide(coach: Coach, *, nudge_id: int, user_id: str, channel: str) -> Decision:
    """Before opening the Skip modal: refuse (with an ephemeral why) anyone who may not decide now."""
    nudge, allowed, deciders = _authorise(coach, nudge_id, user_id)
    with coach.db.session() as session:
        fresh = session.get(Nudge, nudge_id) if nudge else None
        blocked = _blocked(session, coach, fresh, allowed, deciders, user_id=user_id, channel=channel,
                           now=coach.clock())
    return blocked or Decision("may_decide", "")


@about_nudge
def change_scenario(coach: Coach, *, nudge_id: int, user_id: str, scenario_id: str, channel: str,
                    message_ts: str) -> Decision:
    """The manager picks another drill before approving; the message shows it at once."""
    now = coach.clock()
    nudge, allowed, deciders = _authorise(coach, nudge_id, user_id)
    with coach.db.session() as session:
        nudge = session.get(Nudge, nudge_id, with_for_update=True) if nudge else None
        blocked = _blocked(session, coach, nudge, allowed, deciders, user_id=user_id, channel=channel, now=now)
        if blocked:
            return blocked
        if scenario_id not in coach.scenarios:
            decision = Decision("no_scenario", f"There is no drill {scenario_id!r} any more; pick another.")
            enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
            return decision
        nudge.scenario_id = scenario_id
        session.add(nudge)
        session.flush()
        enqueue(session, method="chat.update", channel=channel, now=now,
                payload={"channel": channel, "ts": message_ts, **_approval_payload(session, coach, nudge)})
        queries.audit(session, at=now, actor=user_id, action="scenario_changed", subject=f"nudge:{nudge_id}",
                      scenario=scenario_id)
        return Decision("changed", scenario_id)


@about_nudge
def decide(coach: Coach, *, nudge_id: int, user_id: str, approve: bool, channel: str, message_ts: str,
           reason: str | None = None) -> Decision:
    """Apply a manager's Approve or Skip. Anyone else is refused; of two clicks, the second is told who won."""
    now = coach.clock()
    nudge, allowed, deciders = _authorise(coach, nudge_id, user_id)
    if nudge is not None and approve:
        with coach.db.reading() as session:
            rep = session.get(Rep, nudge.rep_id)
        if rep.slack_user_id:
            coach.directory.timezone_for(rep.slack_user_id)  # learn the rep's zone before the transaction
    with coach.db.session() as session:
        fresh = session.get(Nudge, nudge_id) if nudge else None
        blocked = _blocked(session, coach, fresh, allowed, deciders, user_id=user_id, channel=channel, now=now)
        if blocked:
            return blocked
        if approve and coach.scenario(fresh.scenario_id, fresh.criterion) is None:
            decision = Decision("no_scenario", f"The drill {fresh.scenario_id!r} is no longer in the scenario "
                                f"library; pick another drill (or fix `criteria.{fresh.criterion}.scenario`).")
            enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
            return decision
        target = NudgeState.APPROVED if approve else NudgeState.SKIPPED
        reason = (reason or "").strip()[:500] or None
        if not lifecycle.advance(session, nudge_id=nudge_id, expected=NudgeState.PENDING_APPROVAL, target=target,
                                 decided_by=user_id, decided_at=now, approval_ts=message_ts, skip_reason=reason):
            return _blocked(session, coach, session.get(Nudge, nudge_id), True, deciders, user_id=user_id,
                            channel=channel, now=now)
        nudge = session.get(Nudge, nudge_id)
        card = approval_card(session, coach, nudge=nudge)
        enqueue(session, method="chat.update", channel=channel,
                payload={"channel": channel, "ts": message_ts,
                         **blocks.decided_message(card, approved=approve, decider=user_id, when=now, reason=reason)},
                dedupe_key=f"nudge:{nudge_id}:decided", now=now)
        if approve:
            if nudge.policy != "rep_first":  # a rep-first rep already has the drill in their DM
                invite_rep(session, coach, nudge=nudge, rep=session.get(Rep, nudge.rep_id), now=now,
                           headline=f"Your manager picked a 5-minute drill on {card.criterion_label.lower()}.")
            lifecycle.advance(session, nudge_id=nudge_id, expected=NudgeState.APPROVED, target=NudgeState.DELIVERED)
        queries.audit(session, at=now, actor=user_id, action=str(target), subject=f"nudge:{nudge_id}",
                      **({"reason": reason} if reason else {}))
        from bot.nudges.home import enqueue_home  # the rep's and the manager's Home tabs change

        for person in {user_id, session.get(Rep, nudge.rep_id).slack_user_id} - {None}:
            enqueue_home(session, coach, user_id=person)
        return Decision(str(target), f"{str(target).capitalize()}.")


def where_posted(coach: Coach, *, nudge_id: int) -> dict:
    """The channel and ts of the nudge's approval message (for clicks on the App Home tab)."""
    with coach.db.reading() as session:
        key = f"nudge:{nudge_id}:approval"
        posted = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).first()
    if posted is None:
        return {"channel": "", "message_ts": ""}
    return {"channel": posted.sent_channel or posted.channel, "message_ts": posted.ts or ""}
