"""The weekly team digest: figures from the database, a chart, and one post per team and week.

The digest reports on the last complete week (Monday 00:00 to Monday 00:00 in the team's time zone) before `now`,
so the Monday 9:00 run and any rerun that week report the same, finished week and share one dedupe key.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.config import SLACK_USER, TeamConfig
from bot.nudges.followups import live_trend
from bot.slack.digest_blocks import digest_message, manager_note
from storage.models import (
    AuditEntry,
    Call,
    CallScore,
    Grade,
    Nudge,
    NudgeState,
    OutboxMessage,
    PracticeSession,
    Rep,
    Signal,
)
from storage.outbox import POST, enqueue

CHART_METHOD = "files_upload_v2"  # not a Web API method: the sender calls WebClient.files_upload_v2 for it
OPEN_SIGNALS = ("open", "waiting")


@dataclass(frozen=True)
class DigestFigures:
    """One team's week in numbers; every share is 0..1 and every duration in hours."""

    team_id: str
    team_name: str
    week_start: date  # Monday of the reported week, in the team's time zone
    reps: int
    reps_practised: int  # distinct reps with a practice session started in the week
    coverage: float
    sessions_completed: int  # practice sessions graded in the week
    median_hours_signal_to_practice: float | None
    score_gain_by_skill: dict[str, float]  # criterion -> mean over reps of best − first drill score (points)
    transfer_rate: float | None  # improved or held, among completed nudges with enough live calls since
    transfer_counted: int  # how many nudges the transfer rate is over
    top_gaps: tuple[tuple[str, int], ...]  # (criterion, open or waiting signals), most first, at most 3
    pending_approvals: int
    expired_approvals: int
    nudges_made: int
    strategy: dict[str, int]  # priority name -> nudges made in the week on its criteria
    improvers: tuple[tuple[str, float], ...]  # (rep Slack id, best − first drill score), at most 3


@dataclass(frozen=True)
class ManagerFigures:
    """A manager's own coaching coverage for the week."""

    manager: str  # Slack user id
    team_name: str
    week_start: date
    decided: int  # approvals they decided in the week
    median_hours_to_decide: float | None
    pending_approvals: int
    never_coached: tuple[str, ...]  # Slack ids of the team's reps who never had a nudge


# ---- pure helpers -------------------------------------------------------------------------------------------


def week_start(now: datetime, timezone: str) -> date:
    """The Monday of the week containing `now`, in `timezone`."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    return local - timedelta(days=local.weekday())


def reported_week(now: datetime, timezone: str) -> date:
    """The Monday of the last complete week before `now`: the week a digest posted at `now` reports on."""
    return week_start(now, timezone) - timedelta(days=7)


def week_bounds(monday: date, timezone: str) -> tuple[datetime, datetime]:
    """The week starting `monday` as a UTC interval [start, end), midnight to midnight local time."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(monday, time(0), zone)
    end = datetime.combine(monday + timedelta(days=7), time(0), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def coverage(practised: int, reps: int) -> float:
    """Share of reps who practised; 0 for a team without reps."""
    return practised / reps if reps else 0.0


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _within(when: datetime | None, start: datetime, end: datetime) -> bool:
    return when is not None and start <= _aware(when) < end


# ---- queries --------------------------------------------------------------------------------------------------


def _skill_of(coach: Coach, scenario_id: str) -> str | None:
    """The criterion a drill trains: the scenario's skill, or the criterion coach.yaml routes to it."""
    scenario = coach.scenarios.get(scenario_id)
    if scenario is not None:
        return scenario.skill
    rules = {**coach.config.metric_rules, **coach.config.criteria}
    return next((name for name, rule in rules.items() if rule.scenario == scenario_id), None)


def _drill_gains(session: Session, coach: Coach, reps: dict[int, Rep], start: datetime,
                 end: datetime) -> dict[tuple[int, str], float]:
    """(rep, criterion) -> best − first score over graded drills up to `end`, for drills graded in the week."""
    rows = session.exec(
        select(PracticeSession, Grade).join(Grade, col(Grade.session_id) == col(PracticeSession.id))
        .where(col(PracticeSession.rep_id).in_(list(reps)), Grade.graded_at < end)
        .order_by(col(PracticeSession.started_at), col(PracticeSession.id))
    ).all()
    scores: dict[tuple[int, str], list[int]] = defaultdict(list)
    active: set[tuple[int, str]] = set()
    for practice, grade in rows:
        skill = _skill_of(coach, practice.scenario_id)
        if skill is None:
            continue
        scores[(practice.rep_id, skill)].append(grade.score)
        if _within(grade.graded_at, start, end):
            active.add((practice.rep_id, skill))
    return {key: float(max(scores[key]) - scores[key][0]) for key in active}


def _first_practice(session: Session, nudge_ids: Sequence[int]) -> dict[int, datetime]:
    rows = session.exec(select(PracticeSession.nudge_id, PracticeSession.started_at)
                        .where(col(PracticeSession.nudge_id).in_(nudge_ids))).all()
    first: dict[int, datetime] = {}
    for nudge_id, started in rows:
        started = _aware(started)
        if nudge_id not in first or started < first[nudge_id]:
            first[nudge_id] = started
    return first


def _expired_approvals(session: Session, nudges: Sequence[Nudge], start: datetime, end: datetime) -> int:
    """Nudges that expired in the week while waiting for a manager (asked, never decided)."""
    waited = {f"nudge:{n.id}" for n in nudges
              if n.state == NudgeState.EXPIRED and n.decided_at is None and n.approval_channel is not None}
    if not waited:
        return 0
    expired = session.exec(select(AuditEntry.subject).where(
        AuditEntry.action == "expired", col(AuditEntry.subject).in_(waited),
        AuditEntry.at >= start, AuditEntry.at < end)).all()
    return len(set(expired))


def _team(coach: Coach, team_id: str) -> TeamConfig:
    team = coach.config.team(team_id)
    if team is None:
        raise ValueError(f"no team {team_id!r} in coach.yaml")
    return team


def digest_figures(session: Session, coach: Coach, *, team_id: str, now: datetime) -> DigestFigures:
    """The figures for the last complete week before `now` (see the module docstring)."""
    team = _team(coach, team_id)
    monday = reported_week(now, team.timezone)
    start, end = week_bounds(monday, team.timezone)
    reps = {r.id: r for r in session.exec(select(Rep).where(Rep.team_id == team_id))}
    nudges = list(session.exec(select(Nudge).where(Nudge.team_id == team_id)))

    sessions = session.exec(select(PracticeSession).where(
        col(PracticeSession.rep_id).in_(list(reps)), PracticeSession.started_at >= start,
        PracticeSession.started_at < end)).all()
    practised = len({s.rep_id for s in sessions})
    graded = session.exec(select(Grade.id).join(PracticeSession, col(Grade.session_id) == col(PracticeSession.id))
                          .where(col(PracticeSession.rep_id).in_(list(reps)), Grade.graded_at >= start,
                                 Grade.graded_at < end)).all()

    first = _first_practice(session, [n.id for n in nudges])
    waits = []
    for nudge in nudges:
        signal = session.get(Signal, nudge.signal_id) if nudge.signal_id else None
        if signal is not None and _within(first.get(nudge.id), start, end):
            waits.append(_hours(first[nudge.id] - _aware(signal.detected_at)))

    gains = _drill_gains(session, coach, reps, start, end)
    by_skill: dict[str, list[float]] = defaultdict(list)
    by_rep: dict[int, float] = {}
    for (rep_id, skill), gain in gains.items():
        by_skill[skill].append(gain)
        by_rep[rep_id] = max(gain, by_rep.get(rep_id, gain))
    improvers = sorted(((reps[r].slack_user_id, g) for r, g in by_rep.items() if g > 0 and reps[r].slack_user_id),
                       key=lambda pair: (-pair[1], pair[0]))[:3]

    transfers = [live_trend(session, coach, n).status for n in nudges
                 if n.state == NudgeState.COMPLETED and n.completed_at is not None and _aware(n.completed_at) < end]
    counted = [s for s in transfers if s != "not enough calls yet"]
    carried = sum(s in ("improved", "held") for s in counted)

    gaps: dict[str, int] = defaultdict(int)
    for criterion in session.exec(select(Signal.criterion).where(
            col(Signal.rep_id).in_(list(reps)), col(Signal.status).in_(OPEN_SIGNALS), Signal.detected_at < end)):
        gaps[criterion] += 1
    made = [n for n in nudges if _within(n.created_at, start, end)]

    return DigestFigures(
        # every rep coach.yaml lists counts, also one Rehearse has not seen on a call yet
        team_id=team_id, team_name=team.title, week_start=monday, reps=max(len(reps), len(team.reps)),
        reps_practised=practised, coverage=coverage(practised, max(len(reps), len(team.reps))),
        sessions_completed=len(graded),
        median_hours_signal_to_practice=median(waits),
        score_gain_by_skill={skill: statistics.fmean(values) for skill, values in sorted(by_skill.items())},
        transfer_rate=carried / len(counted) if counted else None, transfer_counted=len(counted),
        top_gaps=tuple(sorted(gaps.items(), key=lambda kv: (-kv[1], kv[0]))[:3]),
        pending_approvals=sum(n.state == NudgeState.PENDING_APPROVAL for n in nudges),
        expired_approvals=_expired_approvals(session, nudges, start, end),
        nudges_made=len(made),
        strategy={p.name: sum(n.criterion in p.criteria for n in made) for p in coach.config.priorities},
        improvers=tuple(improvers),
    )


def manager_figures(session: Session, coach: Coach, *, team_id: str, manager: str, now: datetime) -> ManagerFigures:
    """Approval latency (request to decision) for `manager`'s decisions in the week, and reps never nudged."""
    team = _team(coach, team_id)
    monday = reported_week(now, team.timezone)
    start, end = week_bounds(monday, team.timezone)
    decided = list(session.exec(select(Nudge).where(Nudge.team_id == team_id, Nudge.decided_by == manager,
                                                    Nudge.decided_at >= start, Nudge.decided_at < end)))
    asked = {subject: _aware(at) for subject, at in session.exec(
        select(AuditEntry.subject, AuditEntry.at).where(
            AuditEntry.action == "manager_asked",
            col(AuditEntry.subject).in_([f"nudge:{n.id}" for n in decided])))}
    latency = [_hours(_aware(n.decided_at) - asked.get(f"nudge:{n.id}", _aware(n.created_at))) for n in decided]
    nudged = set(session.exec(select(Nudge.rep_id).where(Nudge.team_id == team_id)))
    reps = session.exec(select(Rep).where(Rep.team_id == team_id).order_by(col(Rep.id))).all()
    pending = session.exec(select(Nudge.id).where(Nudge.team_id == team_id,
                                                  Nudge.state == NudgeState.PENDING_APPROVAL)).all()
    return ManagerFigures(
        manager=manager, team_name=team.title, week_start=monday, decided=len(decided),
        median_hours_to_decide=median(latency), pending_approvals=len(pending),
        never_coached=tuple(r.slack_user_id or r.email or str(r.id) for r in reps if r.id not in nudged))


def weekly_averages(session: Session, *, team_id: str, criteria: Sequence[str], now: datetime, weeks: int = 8,
                    timezone: str = "UTC") -> dict[str, list[float | None]]:
    """Team average live-call score (percent) per criterion for the `weeks` weeks up to the reported week,
    oldest first; None for a week without scored calls."""
    last = reported_week(now, timezone)
    mondays = [last - timedelta(days=7 * i) for i in range(weeks - 1, -1, -1)]
    first_start, _ = week_bounds(mondays[0], timezone)
    _, last_end = week_bounds(last, timezone)
    rows = session.exec(
        select(CallScore, Call.started_at).join(Call, col(Call.id) == col(CallScore.call_pk))
        .join(Rep, col(Rep.id) == col(Call.rep_id))
        .where(Rep.team_id == team_id, col(CallScore.criterion).in_(criteria),
               Call.started_at >= first_start, Call.started_at < last_end)).all()
    buckets: dict[tuple[str, int], list[float]] = defaultdict(list)
    for score, started in rows:
        index = (week_start(_aware(started), timezone) - mondays[0]).days // 7
        buckets[(score.criterion, index)].append(score.percent)
    return {c: [statistics.fmean(buckets[(c, i)]) if buckets.get((c, i)) else None for i in range(weeks)]
            for c in criteria}


# ---- rendering and posting ---------------------------------------------------------------------------------


def render_chart(averages: dict[str, list[float | None]], labels: dict[str, str], *,
                 weeks: Sequence[date] = ()) -> bytes:
    """A PNG line chart: one line per criterion over the weeks, 0-100. Headless (no pyplot, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    count = max((len(v) for v in averages.values()), default=0)
    xs = list(range(count))
    for criterion, values in averages.items():
        ys = [float("nan") if v is None else v for v in values]
        axes.plot(xs[: len(ys)], ys, marker="o", linewidth=2, label=labels.get(criterion, criterion))
    axes.set_ylim(0, 100)
    axes.set_ylabel("Team average on calls (%)")
    if count:
        axes.set_xticks(xs)
        ticks = [f"{d:%b %d}" for d in weeks] if len(weeks) == count else [f"-{count - 1 - i}w" for i in xs]
        axes.set_xticklabels(ticks)
    axes.set_xlabel("Week starting")
    axes.grid(True, alpha=0.3)
    if averages:
        axes.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _labels(coach: Coach) -> dict[str, str]:
    names = [*coach.config.criteria, *coach.config.metric_rules]
    return {name: coach.config.criterion_label(name) for name in names}


def post_digest(coach: Coach, *, team_id: str, now: datetime | None = None) -> bool:
    """Enqueue the team's digest, its chart (into the digest's thread) and each manager's note, once per
    reported week; False when this week's digest was already enqueued (a rerun or another replica)."""
    now = now or coach.clock()
    team = _team(coach, team_id)
    labels = _labels(coach)
    channel = team.digest_channel or team.approvals_channel
    try:
        with coach.db.session() as session:
            figures = digest_figures(session, coach, team_id=team_id, now=now)
            key = f"digest:{team_id}:{figures.week_start.isoformat()}"
            if session.exec(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)).first() is not None:
                return False
            post = enqueue(session, method=POST, channel=channel, dedupe_key=key, now=now,
                           payload={"channel": channel, **digest_message(figures, labels)})
            averages = weekly_averages(session, team_id=team_id, criteria=list(coach.config.criteria), now=now,
                                       timezone=team.timezone)
            mondays = [figures.week_start - timedelta(days=7 * i) for i in range(7, -1, -1)]
            png = render_chart(averages, labels, weeks=mondays)
            title = f"{team.title}: team average per skill, 8 weeks to {figures.week_start:%b %d}"
            enqueue(session, method=CHART_METHOD, channel=channel, anchor=post, dedupe_key=f"{key}:chart", now=now,
                    payload={"png_b64": base64.b64encode(png).decode("ascii"),
                             "filename": f"rehearse-{team_id}-{figures.week_start.isoformat()}.png",
                             "title": title})
            for manager in team.managers:
                if not SLACK_USER.match(manager):
                    continue  # an email: no DM until the directory links it to a Slack id
                mine = manager_figures(session, coach, team_id=team_id, manager=manager, now=now)
                enqueue(session, method=POST, channel=manager, dedupe_key=f"{key}:note:{manager}", now=now,
                        payload={"channel": manager, **manager_note(mine)})
    except IntegrityError:
        return False  # another replica enqueued this week's digest first
    return True
