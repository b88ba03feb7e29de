"""Calibration: replay historical scored calls through the rules, the focus choice and the budget, offline.

It answers "with these settings, how many reps would be flagged and how many nudges per rep per week would go
out?" before a team switches Rehearse on, and again at other thresholds. Pure: no Slack, no database, no clock.

The replay makes the decisions `triage.review_rep` makes, reviewing a rep at each of their calls (the live
service reviews after each ingest batch). What it has to assume, since no one approves or practises:
- a nudge is made at its call's start time, stays open `practice_days`, then counts as completed (with the
  finding's mean) for the cooldown;
- a rep belongs to the team whose `reps` lists the call's rep reference (an email, a Slack id, or a Gong user
  mapped under `gong.users`); the live service also matches emails and Slack ids through Slack.
"""

from __future__ import annotations

import gc
import multiprocessing
from bisect import bisect_left, insort
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bot.config import CoachConfig, CriterionConfig, MetricRuleConfig
from bot.nudges.adapters import ScoredCall
from bot.nudges.budget import Completed, RepBudget, budget_verdict
from bot.nudges.focus import choose_focus
from bot.nudges.metrics import conversation_metrics
from bot.nudges.signals import CallRecord, Finding, ScorePoint, below_threshold, metric_past_limit

ALTERNATIVE_THRESHOLDS: tuple[float, ...] = (50, 55, 60, 65, 70)
WEEK = timedelta(days=7)
PROGRESS_EVERY = 2_000  # calls between progress reports


@dataclass(frozen=True)
class RuleStats:
    """One criterion or metric rule on one team over the replayed history."""

    team: str
    rule: str
    kind: Literal["criterion", "metric"]
    comparison: Literal["below", "above"]
    threshold: float  # the limit in force at the end of the history (percent for criteria)
    calibrated: bool  # the threshold was the team's baseline percentile
    reps_flagged: int  # distinct reps with at least one signal
    signals: int  # distinct findings (one per triggering call)
    nudges: int
    nudges_per_rep_week: float


@dataclass(frozen=True)
class TeamStats:
    """A team's totals; `max_nudges_7d` is the most nudges any of its reps got in any 7 days."""

    team: str
    reps: int  # reps with calls in the history
    calls: int
    reps_flagged: int
    nudges: int
    nudges_per_rep_week: float
    max_nudges_7d: int
    waits: Mapping[str, int]  # signals held back at a review, by reason (a signal waiting twice counts twice)


@dataclass(frozen=True)
class Replay:
    """What the rules and the budget would have done with the history."""

    calls: int  # distinct calls (same source and call_id counted once)
    duplicates: int
    unmatched_calls: int  # calls whose rep is on no team: counted, never flagged
    unmatched_reps: tuple[str, ...]
    first_call: datetime | None
    last_call: datetime | None
    weeks: float  # spanned by the history, at least 1
    weekly_cap: int
    teams: tuple[TeamStats, ...]
    rules: tuple[RuleStats, ...]
    nudged: Mapping[str, tuple[tuple[datetime, str], ...]]  # rep → (when, criterion or rule) of each nudge

    def team(self, team_id: str) -> TeamStats:
        return next(t for t in self.teams if t.team == team_id)

    def rule(self, team_id: str, name: str) -> RuleStats:
        return next(r for r in self.rules if r.team == team_id and r.rule == name)

    @property
    def max_nudges_7d(self) -> int:
        return max((t.max_nudges_7d for t in self.teams), default=0)

    @property
    def cap_holds(self) -> bool:
        return self.max_nudges_7d <= self.weekly_cap

    def as_dict(self) -> dict:
        """JSON-ready (times as ISO strings), without the per-rep nudges."""
        data = asdict(self)
        del data["nudged"]
        for key in ("first_call", "last_call"):
            data[key] = data[key].isoformat() if data[key] else None
        data["teams"] = [{**t, "waits": dict(t["waits"])} for t in data["teams"]]
        data["max_nudges_7d"], data["cap_holds"] = self.max_nudges_7d, self.cap_holds
        return data


@dataclass(frozen=True)
class Calibration:
    """The current settings' replay, and for each criterion a replay per alternative threshold."""

    current: Replay
    alternatives: Mapping[str, Mapping[float, Replay]]

    def as_dict(self, team: str | None = None) -> dict:
        """One JSON-ready document: totals, then per team its rules, each criterion with its alternatives."""
        data = self.current.as_dict()
        rules = data.pop("rules")
        data["teams"] = [t for t in data["teams"] if team is None or t["team"] == team]
        for row in data["teams"]:
            row["rules"] = []
            for rule in (r for r in rules if r["team"] == row["team"]):
                rule = {k: v for k, v in rule.items() if k != "team"}
                if rule["rule"] in self.alternatives:
                    rule["alternatives"] = [
                        {"threshold": threshold, "reps_flagged": found.rule(row["team"], rule["rule"]).reps_flagged,
                         "nudges_per_rep_week": found.rule(row["team"], rule["rule"]).nudges_per_rep_week}
                        for threshold, found in self.alternatives[rule["rule"]].items()]
                row["rules"].append(rule)
        data["max_nudges_7d"] = max((t["max_nudges_7d"] for t in data["teams"]), default=0)
        data["cap_holds"] = data["max_nudges_7d"] <= data["weekly_cap"]
        return data


def replay(
    calls: Iterable[ScoredCall], config: CoachConfig, *, threshold_overrides: Mapping[str, float] | None = None,
    practice_days: int = 3, progress: Callable[[int], None] | None = None,
) -> Replay:
    """Replay the calls (in started_at order per rep) through the rules, one focus skill and the budget.

    `threshold_overrides` replaces a criterion's threshold, fixed or calibrated. `progress` is called with the
    number of calls just read or replayed, every few thousand: `2 * len(calls)` in all.
    """
    return _History(calls, config, progress).replay(threshold_overrides or {}, practice_days=practice_days)


def alternatives(
    calls: Iterable[ScoredCall], config: CoachConfig, criterion: str,
    thresholds: Sequence[float] = ALTERNATIVE_THRESHOLDS, *, team: str | None = None, practice_days: int = 3,
) -> dict[float, tuple[int, float]]:
    """Threshold → (reps flagged, nudges per rep per week) for the criterion, on `team` or on all teams."""
    if criterion not in config.criteria:
        raise ValueError(f"{criterion!r} is not a criterion in coach.yaml")
    history = _History(calls, config)
    out = {}
    for threshold in thresholds:
        result = history.replay({criterion: threshold}, practice_days=practice_days)
        rows = [r for r in result.rules if r.rule == criterion and (team is None or r.team == team)]
        reps = sum(t.reps for t in result.teams if team is None or t.team == team)
        nudges = sum(r.nudges for r in rows)
        out[threshold] = (sum(r.reps_flagged for r in rows), nudges / reps / result.weeks if reps else 0.0)
    return out


def calibrate(
    calls: Iterable[ScoredCall], config: CoachConfig, *, thresholds: Sequence[float] = ALTERNATIVE_THRESHOLDS,
    practice_days: int = 3, progress: Callable[[int], None] | None = None, workers: int = 1,
) -> Calibration:
    """The current replay and every criterion's alternatives, reading the calls once.

    With `workers` > 1 the alternatives are replayed in that many forked processes (where fork exists).
    `progress` counts calls: `len(calls) * calibration_passes(config, thresholds)` in all.
    """
    history = _History(calls, config, progress)
    current = history.replay({}, practice_days=practice_days)
    found: dict[str, dict[float, Replay]] = {name: {} for name in config.criteria}
    tasks = []
    for name, rule in config.criteria.items():
        for threshold in thresholds:
            if rule.baseline_percentile is None and threshold == rule.threshold:
                found[name][threshold] = current  # the current settings: already replayed
            else:
                tasks.append((name, threshold))
    for (name, threshold), result in zip(tasks, _replays(history, tasks, practice_days, workers), strict=True):
        found[name][threshold] = result
    return Calibration(current=current,
                       alternatives={name: dict(sorted(by.items())) for name, by in found.items()})


def calibration_passes(config: CoachConfig, thresholds: Sequence[float] = ALTERNATIVE_THRESHOLDS) -> int:
    """How many times `calibrate` reports each call to `progress`."""
    return 2 + sum(1 for rule in config.criteria.values() for threshold in thresholds
                   if rule.baseline_percentile is not None or threshold != rule.threshold)


_worker_history: _History | None = None  # set in each forked worker by `_start_worker`, never in the parent


def _start_worker(history: _History) -> None:
    global _worker_history
    history.progress = _no_progress  # the parent reports progress as results arrive
    _worker_history = history


def _replay_in_worker(task: tuple[str, float, int]) -> Replay:
    name, threshold, practice_days = task
    if _worker_history is None:
        raise RuntimeError("not in a calibration worker")
    return _worker_history.replay({name: threshold}, practice_days=practice_days)


def _replays(history: _History, tasks: Sequence[tuple[str, float]], practice_days: int, workers: int
             ) -> list[Replay]:
    """One replay per (criterion, threshold) override, in order; in forked workers when asked and possible."""
    if workers < 2 or len(tasks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [history.replay({name: threshold}, practice_days=practice_days) for name, threshold in tasks]
    results = []
    # fork: the workers inherit the history instead of receiving a pickled copy; frozen, the collector in a
    # worker leaves the inherited objects alone instead of touching (and so copying) every page of them
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks)), _start_worker, (history,)) as pool:
            for result in pool.imap(_replay_in_worker, [(n, t, practice_days) for n, t in tasks]):
                history.progress(history.calls + history.duplicates)
                results.append(result)
    finally:
        gc.unfreeze()
    return results


def _no_progress(_: int) -> None:
    pass


# --- the history, read once --------------------------------------------------------------------------------------

class _TeamWindow:
    """A team's scores on one criterion over the trailing `days`, kept sorted for the baseline percentile."""

    def __init__(self, days: int):
        self.span = timedelta(days=days)
        self.recent: deque[tuple[datetime, float]] = deque()
        self.ordered: list[float] = []

    def add(self, at: datetime, percent: float) -> None:
        self.recent.append((at, percent))
        insort(self.ordered, percent)

    def trim(self, now: datetime) -> None:
        cutoff = now - self.span
        while self.recent and self.recent[0][0] < cutoff:
            _, percent = self.recent.popleft()
            del self.ordered[bisect_left(self.ordered, percent)]

    def baseline(self, percentile: float) -> float:
        """`signals.team_baseline` of the window, without sorting it again (the window is kept sorted)."""
        ordered = self.ordered
        rank = (len(ordered) - 1) * percentile / 100
        low = int(rank)
        high = low if rank == low else low + 1
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class _RepCalls:
    """One matched rep's calls in order, each call's calibrated thresholds, and what the rules read, built once."""

    def __init__(self, team: str):
        self.team = team
        self.records: list[CallRecord] = []
        self.baselines: list[Mapping[str, float]] = []  # per call: the calibrated thresholds in force then
        self._indexes: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self._points: dict[tuple[str, str, int], ScorePoint] = {}

    def scored(self, name: str) -> tuple[list[int], list[float]]:
        """The calls scored on the criterion (indexes) and their percents."""
        key = ("score", name)
        if key not in self._indexes:
            indexes = [i for i, record in enumerate(self.records) if name in record.scores]
            self._indexes[key] = indexes, [self.records[i].scores[name][0] for i in indexes]
        return self._indexes[key]

    def eligible(self, rule: MetricRuleConfig) -> tuple[list[int], list[float]]:
        """The calls a metric rule reads (the metric is known, the call is of its types) and their values."""
        key = ("metric", f"{rule.metric}|{'|'.join(rule.call_types)}")
        if key not in self._indexes:
            indexes = [i for i, record in enumerate(self.records) if rule.metric in record.metrics
                       and (not rule.call_types or record.call_type in rule.call_types)]
            self._indexes[key] = indexes, [self.records[i].metrics[rule.metric] for i in indexes]
        return self._indexes[key]

    def points(self, kind: Literal["score", "metric"], name: str, indexes: Iterable[int]) -> list[ScorePoint]:
        """The calls' values as the rules read them (`CallRecord.point`), each built once."""
        out = []
        for i in indexes:
            point = self._points.get((kind, name, i))
            if point is None:
                record = self.records[i]
                point = record.point(*record.scores[name]) if kind == "score" else record.point(record.metrics[name])
                self._points[kind, name, i] = point
            out.append(point)
        return out


def _team_lookup(config: CoachConfig) -> Callable[[str], str | None]:
    teams = {rep: team.id for team in config.teams for rep in team.reps}
    gong = getattr(config, "gong", None)
    users = gong.users if gong is not None else {}

    def team_of(ref: str) -> str | None:
        if ref.startswith("gong-user:") and (mapped := users.get(ref.removeprefix("gong-user:"))):
            ref = mapped.strip().lower() if "@" in mapped else mapped.strip()
        return teams.get(ref)

    return team_of


def _record(pk: int, call: ScoredCall) -> CallRecord:
    metrics = call.metrics or (conversation_metrics(call.transcript).as_dict() if call.transcript else {})
    return CallRecord(call_pk=pk, call_id=call.call_id, started_at=call.started_at,
                      scores={s.criterion: (s.percent, ()) for s in call.scores}, metrics=metrics,
                      call_type=call.call_type)


NO_FINDINGS: Mapping[int, Finding] = {}  # shared, so reps whose rules never fire share one cache key


class _History:
    """The calls read once: deduplicated, ordered, grouped by matched rep, with each call's calibrated thresholds.

    Replays share what does not depend on their overrides: each rule's findings per rep (per threshold), and a
    rep's outcome when none of their findings changed.
    """

    def __init__(self, calls: Iterable[ScoredCall], config: CoachConfig,
                 progress: Callable[[int], None] | None = None):
        self.config = config
        self.progress = progress or _no_progress
        seen: set[tuple[str, str]] = set()
        unique: list[ScoredCall] = []
        self.duplicates = 0
        for call in calls:  # the first of a (source, call_id) is kept, as ingest keeps the first stored
            key = (call.source, call.call_id)
            if key in seen:
                self.duplicates += 1
            else:
                seen.add(key)
                unique.append(call)
        unique.sort(key=lambda c: c.started_at)  # stable: calls at the same moment keep the file's order
        self.calls = len(unique)
        self.first = unique[0].started_at if unique else None
        self.last = unique[-1].started_at if unique else None
        self.unmatched: Counter[str] = Counter()
        self.reps: dict[str, _RepCalls] = {}
        team_of = _team_lookup(config)
        calibrated = {name: rule for name, rule in config.criteria.items() if rule.baseline_percentile is not None}
        windows = {(team.id, name): _TeamWindow(rule.baseline_days)
                   for team in config.teams for name, rule in calibrated.items()}
        for pk, call in enumerate(unique):
            team = team_of(call.rep)
            if team is None:
                self.unmatched[call.rep] += 1
            else:
                record = _record(pk, call)
                rep = self.reps.get(call.rep)
                if rep is None:
                    rep = self.reps[call.rep] = _RepCalls(team)
                rep.records.append(record)
                baselines = {}
                for name, rule in calibrated.items():  # the team's scores up to this call, as live reads them
                    window = windows[team, name]
                    if name in record.scores:
                        window.add(record.started_at, record.scores[name][0])
                    window.trim(record.started_at)
                    if len(window.ordered) >= rule.baseline_min_scores:
                        baselines[name] = window.baseline(rule.baseline_percentile)
                rep.baselines.append(baselines)
            if (pk + 1) % PROGRESS_EVERY == 0:
                self.progress(PROGRESS_EVERY)
        self.progress(len(unique) % PROGRESS_EVERY + self.duplicates)
        self.latest_baselines = {key: w.baseline(calibrated[key[1]].baseline_percentile)
                                 for key, w in windows.items()
                                 if len(w.ordered) >= calibrated[key[1]].baseline_min_scores}
        self._findings: dict[tuple[str, float | None, str], Mapping[int, Finding]] = {}
        self._outcomes: dict[tuple, _Outcome] = {}

    def rule_findings(self, name: str, override: float | None, rep_id: str) -> Mapping[int, Finding]:
        """Call index → the rule's finding at that call, for one rep (computed once per rule and override)."""
        key = (name, override, rep_id)
        if key not in self._findings:
            rep = self.reps[rep_id]
            criterion = self.config.criteria.get(name)
            if criterion is None:
                found = _metric_findings(name, self.config.metric_rules[name], rep)
            else:
                found = _criterion_findings(name, criterion, rep, override)
                if override is not None and found == self.rule_findings(name, None, rep_id):
                    found = self.rule_findings(name, None, rep_id)  # the same findings: the same outcome
            self._findings[key] = found or NO_FINDINGS
        return self._findings[key]

    def replay(self, overrides: Mapping[str, float], *, practice_days: int) -> Replay:
        config = self.config
        if unknown := sorted(set(overrides) - set(config.criteria)):
            raise ValueError(f"threshold overrides for {', '.join(unknown)}: not criteria in coach.yaml")
        if practice_days < 0:
            raise ValueError("practice_days cannot be negative")
        review = _Review(config, practice_days=practice_days)
        names = [*config.criteria, *config.metric_rules]
        outcomes, done = {}, 0
        for rep_id, rep in self.reps.items():
            by_rule = [self.rule_findings(name, overrides.get(name), rep_id) for name in names]
            key = (rep_id, practice_days, *map(id, by_rule))  # the findings are cached, so their ids are stable
            if key not in self._outcomes:
                self._outcomes[key] = review.rep(rep, by_rule)
            outcomes[rep_id] = self._outcomes[key]
            done += len(rep.records)
            if done >= PROGRESS_EVERY:
                self.progress(done)
                done = 0
        self.progress(done + sum(self.unmatched.values()) + self.duplicates)
        return self._summary(outcomes, overrides)

    def _summary(self, outcomes: Mapping[str, _Outcome], overrides: Mapping[str, float]) -> Replay:
        config = self.config
        weeks = max(1.0, (self.last - self.first) / WEEK) if self.first and self.last else 1.0
        names = [*config.criteria, *config.metric_rules]
        rules, teams = [], []
        for team in config.teams:
            members = {rep_id: outcomes[rep_id] for rep_id, rep in self.reps.items() if rep.team == team.id}
            calls = sum(len(self.reps[rep_id].records) for rep_id in members)

            def rate(nudges: int, reps: int = len(members)) -> float:
                return nudges / reps / weeks if reps else 0.0

            for name in names:
                nudges = sum(o.nudges[name] for o in members.values())
                rules.append(RuleStats(
                    team=team.id, rule=name, **_limit(team.id, name, config, overrides, self.latest_baselines),
                    reps_flagged=sum(1 for o in members.values() if o.signals[name]),
                    signals=sum(o.signals[name] for o in members.values()), nudges=nudges,
                    nudges_per_rep_week=rate(nudges)))
            nudges = sum(o.nudges.total() for o in members.values())
            waits: Counter[str] = Counter()
            for outcome in members.values():
                waits.update(outcome.waits)
            teams.append(TeamStats(
                team=team.id, reps=len(members), calls=calls,
                reps_flagged=sum(1 for o in members.values() if o.signals), nudges=nudges,
                nudges_per_rep_week=rate(nudges), max_nudges_7d=max((o.max_7d for o in members.values()), default=0),
                waits=dict(waits)))
        return Replay(calls=self.calls, duplicates=self.duplicates, unmatched_calls=sum(self.unmatched.values()),
                      unmatched_reps=tuple(sorted(self.unmatched)), first_call=self.first, last_call=self.last,
                      weeks=weeks, weekly_cap=config.budget.weekly_cap, teams=tuple(teams), rules=tuple(rules),
                      nudged={rep_id: tuple(o.nudged) for rep_id, o in outcomes.items() if o.nudged})


def _limit(team: str, name: str, config: CoachConfig, overrides: Mapping[str, float],
           baselines: Mapping[tuple[str, str], float]) -> dict:
    """How a rule's limit reads in the result: comparison, threshold and whether it is the team's baseline."""
    if name in config.metric_rules:
        rule = config.metric_rules[name]
        above = rule.above is not None
        return {"kind": "metric", "comparison": "above" if above else "below",
                "threshold": rule.above if above else rule.below, "calibrated": False}
    criterion = config.criteria[name]
    if name in overrides:
        return {"kind": "criterion", "comparison": "below", "threshold": overrides[name], "calibrated": False}
    if criterion.baseline_percentile is not None and (team, name) in baselines:
        return {"kind": "criterion", "comparison": "below", "threshold": baselines[team, name], "calibrated": True}
    return {"kind": "criterion", "comparison": "below", "threshold": criterion.threshold, "calibrated": False}


# --- each rule's findings, call by call ---------------------------------------------------------------------------
# `signals.evaluate` runs `below_threshold` or `metric_past_limit` over each rule's values on the rep's latest
# calls; so does this, but only where a run of values past the limit is as long as the rule asks, and with each
# call's points built once for every replay. A finding holds at every later call until the rule's next value
# (or a calibrated threshold) changes it.

def _criterion_findings(name: str, rule: CriterionConfig, rep: _RepCalls, override: float | None
                        ) -> dict[int, Finding]:
    n, found = rule.consecutive_calls, {}
    scored, values = rep.scored(name)
    ends = [*scored[1:], len(rep.records)]  # a value is the latest until the next scored call
    fixed = override if override is not None else rule.threshold if rule.baseline_percentile is None else None
    if fixed is not None:
        run = 0
        for k, i in enumerate(scored):
            run = run + 1 if values[k] < fixed else 0
            if run >= n:
                finding = below_threshold(name, rep.points("score", name, scored[k - n + 1:k + 1]),
                                          threshold=fixed, consecutive=n)
                for j in range(i, ends[k]):
                    found[j] = finding
        return found
    for k in range(n - 1, len(scored)):  # calibrated: the team's baseline moves from call to call
        top, finding = max(values[k - n + 1:k + 1]), None
        for j in range(scored[k], ends[k]):
            threshold = rep.baselines[j].get(name, rule.threshold)
            if top < threshold:
                if finding is None or finding.threshold != threshold:
                    finding = below_threshold(name, rep.points("score", name, scored[k - n + 1:k + 1]),
                                              threshold=threshold, consecutive=n)
                found[j] = finding
    return found


def _metric_findings(name: str, rule: MetricRuleConfig, rep: _RepCalls) -> dict[int, Finding]:
    n, found = rule.consecutive_calls, {}
    eligible, values = rep.eligible(rule)
    ends = [*eligible[1:], len(rep.records)]
    run = 0
    for k, i in enumerate(eligible):
        past = values[k] > rule.above if rule.above is not None else values[k] < rule.below
        run = run + 1 if past else 0
        if run >= n:
            finding = metric_past_limit(name, rep.points("metric", rule.metric, eligible[k - n + 1:k + 1]),
                                        above=rule.above, below=rule.below, consecutive=n,
                                        call_types=rule.call_types)
            for j in range(i, ends[k]):
                found[j] = finding
    return found


# --- the decisions of triage.review_rep, at each call with a finding ---------------------------------------------

WAIT_OPEN, WAIT_FOCUS, WAIT_CAP, WAIT_COOLDOWN = ("open nudge on another skill", "another skill came first",
                                                  "weekly cap", "cooldown")


def _wait_reason(verdict: str) -> str:
    if "weekly cap" in verdict:
        return WAIT_CAP
    return WAIT_COOLDOWN if "cooling down" in verdict else verdict


@dataclass
class _Outcome:
    """One rep's replay: signals and nudges per rule, waits by reason, the most nudges in any 7 days."""

    signals: Counter[str] = field(default_factory=Counter)
    nudges: Counter[str] = field(default_factory=Counter)
    waits: Counter[str] = field(default_factory=Counter)
    max_7d: int = 0
    nudged: list[tuple[datetime, str]] = field(default_factory=list)


class _Review:
    """`triage.review_rep` at each call of a rep where a rule fires, with nudges that complete on their own."""

    def __init__(self, config: CoachConfig, *, practice_days: int):
        self.budget = config.budget
        self.weights = {n: r.weight for n, r in {**config.criteria, **config.metric_rules}.items()}
        self.boosts = {n: p.boost for p in config.priorities for n in p.criteria}
        self.practice = timedelta(days=practice_days)

    def rep(self, rep: _RepCalls, by_rule: Sequence[Mapping[int, Finding]]) -> _Outcome:
        """At most one open nudge, one focus skill, within the weekly cap and the cooldown."""
        at: defaultdict[int, list[Finding]] = defaultdict(list)
        for found in by_rule:
            for i, finding in found.items():
                at[i].append(finding)
        outcome = _Outcome()
        counted: dict[str, int] = {}  # criterion → trigger of the last signal counted
        consumed: dict[str, int] = {}  # criterion → trigger of the last signal nudged or attached to a nudge
        completed: dict[str, Completed] = {}
        open_nudge: tuple[str, datetime, float] | None = None  # criterion, open until, the finding's mean
        recent: deque[datetime] = deque()  # this rep's nudges in the trailing 7 days
        for i in sorted(at):
            now, findings = rep.records[i].started_at, at[i]
            if open_nudge is not None and now >= open_nudge[1]:
                completed[open_nudge[0]] = Completed(at=open_nudge[1], mean_then=open_nudge[2])
                open_nudge = None
            candidates = []
            for finding in findings:
                trigger = finding.trigger.call_pk
                if counted.get(finding.criterion) != trigger:
                    counted[finding.criterion] = trigger
                    outcome.signals[finding.criterion] += 1
                if consumed.get(finding.criterion) != trigger:
                    candidates.append(finding)
            if not candidates:
                continue
            if open_nudge is not None:
                for finding in candidates:
                    if finding.criterion == open_nudge[0]:  # more evidence for the skill in focus
                        consumed[finding.criterion] = finding.trigger.call_pk
                    else:
                        outcome.waits[WAIT_OPEN] += 1
                continue
            focus = candidates[0] if len(candidates) == 1 else choose_focus(candidates, weights=self.weights,
                                                                            boosts=self.boosts)
            while recent and recent[0] < now - WEEK:
                recent.popleft()
            verdict = budget_verdict(
                criterion=focus.criterion, mean_now=focus.mean, worse_is_lower=focus.rule != "metric_above",
                rep=RepBudget(open_nudge=False, nudges_last_7_days=len(recent), completed=completed),
                weekly_cap=self.budget.weekly_cap, cooldown_days=self.budget.cooldown_days, now=now)
            if verdict:
                outcome.waits[_wait_reason(verdict)] += len(candidates)
                continue
            recent.append(now)
            outcome.nudges[focus.criterion] += 1
            outcome.nudged.append((now, focus.criterion))
            outcome.max_7d = max(outcome.max_7d, len(recent))
            consumed[focus.criterion] = focus.trigger.call_pk
            open_nudge = (focus.criterion, now + self.practice, focus.mean)
            if len(candidates) > 1:
                outcome.waits[WAIT_FOCUS] += len(candidates) - 1
        return outcome
