"""From a rep's calls to at most one nudge: run the rules, record the signals, pick one focus, respect the budget."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from bot.coach import Coach
from bot.nudges import approval
from bot.nudges.budget import Completed, RepBudget, budget_verdict
from bot.nudges.focus import choose_focus
from bot.nudges.followups import live_trend
from bot.nudges.lifecycle import OPEN
from bot.nudges.signals import CallRecord, Finding, evaluate, team_baseline
from storage import queries
from storage.models import Call, CallScore, Nudge, NudgeState, Rep, Signal

HISTORY_CALLS = 60  # enough for any rule's consecutive calls, even when only some calls are of the right type
UNITS = {"talk_ratio": "ratio", "interactivity": "count", "questions": "count", "next_step": "yesno",
         "longest_monologue_s": "seconds", "longest_customer_story_s": "seconds", "patience_s": "seconds"}


def history(session: Session, *, rep_id: int) -> list[CallRecord]:
    """The rep's latest calls with their scores in percent, as the rules read them."""
    # Columns, not ORM objects: this runs for every ingested call, and building 60 calls' objects was most of it.
    calls = session.exec(select(Call.id, Call.call_id, Call.started_at, Call.metrics, Call.call_type,
                                Call.recording_url, Call.title).where(Call.rep_id == rep_id)
                         .order_by(col(Call.started_at).desc()).limit(HISTORY_CALLS)).all()
    scores: dict[int, dict] = {}
    if calls:
        for call_pk, criterion, score, top, evidence in session.exec(
                select(CallScore.call_pk, CallScore.criterion, CallScore.score, CallScore.max, CallScore.evidence)
                .where(col(CallScore.call_pk).in_([c.id for c in calls]))):
            scores.setdefault(call_pk, {})[criterion] = (100.0 * score / top, tuple(evidence))
    return [CallRecord(call_pk=c.id, call_id=c.call_id, started_at=c.started_at, scores=scores.get(c.id, {}),
                       metrics=c.metrics or {}, call_type=c.call_type, recording_url=c.recording_url, title=c.title)
            for c in reversed(calls)]


def calibrated_thresholds(session: Session, coach: Coach, *, team_id: str, now: datetime) -> dict[str, float]:
    """For criteria set to the team's baseline: that percentile of the team's recent scores (when enough)."""
    out = {}
    for name, rule in coach.config.criteria.items():
        if rule.baseline_percentile is None:
            continue
        rows = session.exec(
            select(CallScore.score, CallScore.max).join(Call, col(Call.id) == col(CallScore.call_pk))
            .join(Rep, col(Rep.id) == col(Call.rep_id))
            .where(Rep.team_id == team_id, CallScore.criterion == name,
                   Call.started_at >= now - timedelta(days=rule.baseline_days))
        ).all()
        if len(rows) >= rule.baseline_min_scores:
            out[name] = team_baseline([100.0 * s / m for s, m in rows], rule.baseline_percentile)
    return out


def _detail(coach: Coach, finding: Finding, calibrated: bool) -> dict:
    rule = coach.config.metric_rules.get(finding.criterion)
    quotes = [{"text": e["quote"], "at_s": e.get("at_s"), "speaker": e.get("speaker"), "call_title": p.title,
               "recording_url": p.recording_url} for p in reversed(finding.points) for e in p.evidence]
    return {"threshold": finding.threshold, "values": [p.value for p in finding.points], "mean": finding.mean,
            "unit": UNITS.get(rule.metric, "count") if rule else "percent", "calibrated": calibrated,
            "call_ids": [p.call_id for p in finding.points], "quotes": quotes}


def _signal(session: Session, coach: Coach, rep: Rep, finding: Finding, calibrated: bool) -> Signal:
    """The finding's signal: recorded once per triggering call, found again on later reviews."""
    existing = session.exec(select(Signal).where(
        Signal.rep_id == rep.id, Signal.criterion == finding.criterion,
        Signal.trigger_call_pk == finding.trigger.call_pk)).first()
    if existing:
        return existing
    signal = Signal(rep_id=rep.id, criterion=finding.criterion, rule=finding.rule,
                    trigger_call_pk=finding.trigger.call_pk, detected_at=coach.clock(),
                    detail=_detail(coach, finding, calibrated))
    try:
        with session.begin_nested():
            session.add(signal)
            session.flush()
    except IntegrityError:  # recorded a moment ago by another request for the same rep
        return session.exec(select(Signal).where(
            Signal.rep_id == rep.id, Signal.criterion == finding.criterion,
            Signal.trigger_call_pk == finding.trigger.call_pk)).one()
    return signal


def _wait(session: Session, signal: Signal, reason: str) -> None:
    signal.status, signal.wait_reason = "waiting", reason
    session.add(signal)


def _slips(session: Session, coach: Coach, rep: Rep, calls: list[CallRecord], *, fired: set[str]) -> list[Finding]:
    """A practised skill that slipped on live calls re-opens a signal (the budget still decides)."""
    latest: dict[str, Nudge] = {}
    for nudge in session.exec(select(Nudge).where(Nudge.rep_id == rep.id, Nudge.state == NudgeState.COMPLETED)
                              .order_by(col(Nudge.completed_at))):
        latest[nudge.criterion] = nudge
    found = []
    for criterion, nudge in latest.items():
        if criterion in fired or criterion not in coach.config.criteria:
            continue
        transfer = live_trend(session, coach, nudge)
        if transfer.status != "slipped":
            continue
        points = [c.point(*c.scores[criterion]) for c in calls
                  if criterion in c.scores and c.started_at > nudge.completed_at]
        found.append(Finding(criterion=criterion, rule="transfer_slipped", threshold=transfer.before,
                             points=tuple(points[-3:])))
    return found


def _lapse_recovered(session: Session, rep: Rep, *, current: set[int]) -> None:
    """Waiting signals whose rule no longer fires (the rep recovered, or a newer call re-signalled) lapse."""
    pending = select(Signal).where(Signal.rep_id == rep.id, col(Signal.status).in_(["waiting", "open"]))
    for signal in session.exec(pending):
        if signal.id not in current:
            signal.status, signal.wait_reason = "lapsed", None
            session.add(signal)


def rep_budget(session: Session, *, rep_id: int, now: datetime) -> RepBudget:
    recent = session.exec(select(func.count()).select_from(Nudge).where(
        Nudge.rep_id == rep_id, Nudge.created_at >= now - timedelta(days=7))).one()
    completed: dict[str, Completed] = {}
    for nudge, signal in session.exec(
        select(Nudge, Signal).join(Signal, col(Signal.id) == col(Nudge.signal_id))
        .where(Nudge.rep_id == rep_id, Nudge.state == NudgeState.COMPLETED).order_by(col(Nudge.completed_at))
    ):
        completed[nudge.criterion] = Completed(at=nudge.completed_at, mean_then=signal.detail.get("mean", 0.0))
    return RepBudget(open_nudge=queries.open_nudge(session, rep_id=rep_id, states=OPEN) is not None,
                     nudges_last_7_days=recent, completed=completed)


def review_rep(session: Session, coach: Coach, rep: Rep) -> Nudge | None:
    """Run every rule on the rep's calls; open at most one nudge (one focus skill), within the budget."""
    now = coach.clock()
    config = coach.config
    thresholds = calibrated_thresholds(session, coach, team_id=rep.team_id, now=now)
    calls = history(session, rep_id=rep.id)
    findings = evaluate(calls, criteria=config.criteria, metric_rules=config.metric_rules, thresholds=thresholds)
    findings += _slips(session, coach, rep, calls, fired={f.criterion for f in findings})
    signals = {f.criterion: _signal(session, coach, rep, f, f.criterion in thresholds) for f in findings}
    _lapse_recovered(session, rep, current={s.id for s in signals.values()})
    candidates = [f for f in findings if signals[f.criterion].status in ("open", "waiting")]
    if not candidates:
        return None
    open_nudge = queries.open_nudge(session, rep_id=rep.id, states=OPEN)
    if open_nudge is not None:
        for finding in candidates:
            signal = signals[finding.criterion]
            if finding.criterion == open_nudge.criterion:  # more evidence for the skill already in focus
                signal.status, signal.nudge_id = "attached", open_nudge.id
                session.add(signal)
                approval.refresh_card(session, coach, nudge=open_nudge)
            else:
                label = config.criterion_label(open_nudge.criterion).lower()
                _wait(session, signal, f"one focus skill at a time: {label} is open")
        return None
    budget = rep_budget(session, rep_id=rep.id, now=now)
    verdicts = {f.criterion: budget_verdict(
        criterion=f.criterion, mean_now=f.mean, worse_is_lower=f.rule != "metric_above", rep=budget,
        weekly_cap=config.budget.weekly_cap, cooldown_days=config.budget.cooldown_days, now=now) for f in candidates}
    allowed = [f for f in candidates if verdicts[f.criterion] is None]  # a skill cooling down does not block others
    focus = choose_focus(allowed, weights={n: r.weight for n, r in {**config.criteria, **config.metric_rules}.items()},
                         boosts={n: p.boost for p in config.priorities for n in p.criteria})
    if focus is None:
        for finding in candidates:
            _wait(session, signals[finding.criterion], verdicts[finding.criterion])
        return None
    rule = config.rule(focus.criterion)
    chosen = signals[focus.criterion]
    nudge = Nudge(rep_id=rep.id, team_id=rep.team_id, signal_id=chosen.id, criterion=focus.criterion,
                  scenario_id=rule.scenario, created_at=now)
    session.add(nudge)
    session.flush()
    chosen.status, chosen.nudge_id, chosen.wait_reason = "nudged", nudge.id, None
    session.add(chosen)
    first = f"one focus skill at a time: {config.criterion_label(focus.criterion).lower()} came first"
    for finding in candidates:
        if finding is not focus:
            _wait(session, signals[finding.criterion], verdicts[finding.criterion] or first)
    approval.request_approval(session, coach, nudge=nudge, rep=rep, signal=chosen)
    return nudge
