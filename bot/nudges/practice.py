"""The practice thread: Start practice opens the roleplay in the DM thread; replies get the buyer, the end a grade."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.followups import schedule_followups
from bot.practice.roleplay import Turn, roleplay_over
from bot.practice.scenarios import Scenario
from bot.slack import blocks, ids
from storage import queries
from storage.models import FollowUp, Grade, Nudge, NudgeState, PracticeSession, PracticeTurn, Rep, Signal
from storage.outbox import enqueue, enqueue_ephemeral

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # what happened, for logs and tests
    message: str = ""


def _buyer_name(scenario: Scenario) -> str:
    return scenario.persona.name


def _buyer_intro(scenario: Scenario) -> str:
    p = scenario.persona
    return f"{p.name}, {p.role} at {p.company}"


def _post(session: Session, coach: Coach, *, channel: str, thread_ts: str, message: dict) -> None:
    enqueue(session, method="chat.postMessage", channel=channel,
            payload={"channel": channel, "thread_ts": thread_ts, **message}, now=coach.clock())


def _moment(session: Session, nudge: Nudge | None) -> blocks.Quote | None:
    signal = session.get(Signal, nudge.signal_id) if nudge and nudge.signal_id else None
    quotes = signal.detail.get("quotes", []) if signal else []
    if not quotes:
        return None
    q = quotes[0]
    return blocks.Quote(q["text"], q.get("at_s"), q.get("call_title"), q.get("recording_url"))


def start_practice(coach: Coach, *, user_id: str, value: str, channel: str, message_ts: str) -> Outcome:
    """Open the roleplay in the thread of the DM whose Start practice button was clicked."""
    kind, ref = ids.parse_practice_value(value)
    now = coach.clock()
    with coach.db.session() as session:
        if queries.practice_session_at(session, channel=channel, thread_ts=message_ts):
            return Outcome("already_started")
        rep = queries.find_rep(session, slack_user_id=user_id)
        nudge = followup = None
        if kind == "nudge":
            nudge = session.get(Nudge, int(ref))
        elif kind == "followup":
            followup = session.get(FollowUp, int(ref))
            nudge = session.get(Nudge, followup.nudge_id) if followup else None
        scenario = coach.scenario(nudge.scenario_id, nudge.criterion) if nudge else coach.scenarios.get(ref)
        refusal = None
        if kind != "scenario" and (nudge is None or rep is None or nudge.rep_id != rep.id):
            refusal = Outcome("not_yours", "This practice belongs to someone else.")
        elif scenario is None:
            refusal = Outcome("unknown_scenario", "That drill is no longer in the library; try `/drill`.")
        if refusal:
            enqueue_ephemeral(session, channel=channel, user=user_id, text=refusal.message, now=now)
            return refusal
        if rep is None:
            rep = Rep(slack_user_id=user_id, created_at=now)
        if channel.startswith("D"):
            rep.dm_channel = channel
        session.add(rep)
        session.flush()
        if kind == "nudge":
            lifecycle.advance(session, nudge_id=nudge.id, expected=NudgeState.DELIVERED,
                               target=NudgeState.PRACTISING)
        practice = PracticeSession(
            rep_id=rep.id, nudge_id=nudge.id if nudge else None, followup_id=followup.id if followup else None,
            scenario_id=scenario.id, kind="on_demand" if kind == "scenario" else kind, channel=channel,
            thread_ts=message_ts, started_at=now,
        )
        session.add(practice)
        session.flush()
        session.add(PracticeTurn(session_id=practice.id, seq=0, role="buyer", text=scenario.opening_line,
                                 created_at=now))
        enqueue(session, method="chat.update", channel=channel, payload={
            "channel": channel, "ts": message_ts,
            **blocks.practice_started(headline="Practice", scenario_title=scenario.title, goal=scenario.goal),
        }, now=now)
        _post(session, coach, channel=channel, thread_ts=message_ts, message=blocks.brief(
            goal=scenario.goal, context_text=scenario.context, buyer=_buyer_intro(scenario),
            moment=_moment(session, nudge)))
        _post(session, coach, channel=channel, thread_ts=message_ts,
              message=blocks.buyer_line(_buyer_name(scenario), scenario.opening_line))
        queries.audit(session, at=now, actor=user_id, action="practice_started",
                      subject=f"session:{practice.id}", scenario=scenario.id, kind=practice.kind)
        return Outcome("started")


def handle_reply(coach: Coach, *, user_id: str, channel: str, thread_ts: str | None, text: str) -> Outcome:
    """A rep's message in the DM: a roleplay turn when it is in an active practice thread."""
    now = coach.clock()
    with coach.db.session() as session:
        practice = (queries.practice_session_at(session, channel=channel, thread_ts=thread_ts, lock=True)
                    if thread_ts else None)
        if practice is None or not practice.active:
            pointer = ("That thread has no practice running. Click *Start practice* on a drill, or type "
                       "`/drill` to start one.")
            enqueue(session, method="chat.postMessage", channel=channel, now=now,
                    payload={"channel": channel, "text": pointer,
                             **({"thread_ts": thread_ts} if thread_ts else {})})
            return Outcome("no_practice")
        rep = session.get(Rep, practice.rep_id)
        if rep.slack_user_id != user_id:
            return Outcome("not_yours")
        history = queries.turns_of(session, session_id=practice.id)
        session.add(PracticeTurn(session_id=practice.id, seq=history[-1].seq + 1, role="rep", text=text,
                                 created_at=now))
        turns = [Turn(t.role, t.text) for t in history] + [Turn("rep", text)]
        scenario = coach.scenario(practice.scenario_id)
        if scenario is None:
            practice.active = False
            session.add(practice)
            _post(session, coach, channel=channel, thread_ts=thread_ts, message={
                "text": "This drill was retired from the library while you practised. Start a new one with `/drill`."})
            return Outcome("scenario_retired")
        if roleplay_over(scenario, turns):
            return _finish(session, coach, practice, scenario, turns)
        reply = coach.buyer.reply(scenario, turns)
        session.add(PracticeTurn(session_id=practice.id, seq=history[-1].seq + 2, role="buyer", text=reply,
                                 created_at=now))
        _post(session, coach, channel=channel, thread_ts=thread_ts,
              message=blocks.buyer_line(_buyer_name(scenario), reply))
        turns.append(Turn("buyer", reply))
        if roleplay_over(scenario, turns):  # the buyer said yes, walked away, or the turns ran out
            return _finish(session, coach, practice, scenario, turns)
        return Outcome("buyer_replied", reply)


def _finish(session: Session, coach: Coach, practice: PracticeSession, scenario: Scenario,
            turns: list[Turn]) -> Outcome:
    now = coach.clock()
    grade = coach.grader.grade(scenario, turns)
    practice.active, practice.ended_at = False, now
    session.add(practice)
    session.add(Grade(session_id=practice.id, score=grade.score, passed=grade.passed, graded_at=now, criteria=[
        {"criterion": c.criterion, "label": c.label, "level": c.level, "evidence": list(c.evidence),
         "feedback": c.feedback} for c in grade.criteria]))
    due: list = []
    if practice.nudge_id and practice.kind == "nudge":
        moved = lifecycle.advance(session, nudge_id=practice.nudge_id, expected=NudgeState.PRACTISING,
                                   target=NudgeState.COMPLETED, completed_at=now)
        if moved:
            due = schedule_followups(session, coach, nudge=session.get(Nudge, practice.nudge_id),
                                     completed_at=now)
    lines = [blocks.GradeLine(c.label, c.level, c.evidence, c.feedback) for c in grade.criteria]
    _post(session, coach, channel=practice.channel, thread_ts=practice.thread_ts, message=blocks.feedback(
        score=grade.score, passed=grade.passed, lines=lines, summary=grade.summary, next_followups=due))
    queries.audit(session, at=now, actor="rehearse", action="practice_graded",
                  subject=f"session:{practice.id}", score=grade.score, passed=grade.passed)
    return Outcome("graded", f"{grade.score}")
