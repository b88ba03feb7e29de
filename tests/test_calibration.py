"""`rehearse calibrate`: replaying historical calls through the rules, one focus skill and the budget."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import cli
from bot.config import CoachConfig, parse_config
from bot.nudges.adapters import CriterionScore, ScoredCall
from bot.nudges.calibration import (
    WAIT_CAP,
    WAIT_COOLDOWN,
    WAIT_FOCUS,
    WAIT_OPEN,
    _TeamWindow,
    alternatives,
    calibrate,
    replay,
)
from bot.nudges.signals import CallRecord, evaluate, team_baseline

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
ALEX, SAM, EVE = "alex@example.com", "U0SAM", "eve@example.com"
CRITERIA = ("objection_handling", "discovery", "closing", "multi_threading")


def make_config(**changes: object) -> CoachConfig:
    data: dict = {
        "teams": [{"id": "west", "name": "West AEs", "managers": ["U0DANA"], "approvals_channel": "C0APPROVALS",
                   "reps": [ALEX, SAM]}],
        "criteria": {
            "objection_handling": {"label": "Objection handling", "weight": 3, "scenario": "price-objection"},
            "discovery": {"weight": 1, "scenario": "discovery-impact"},
        },
        "budget": {"weekly_cap": 2, "cooldown_days": 21},
    }
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return parse_config(data)


def call(rep: str, day: float, scores: dict[str, float] | None = None, *, metrics: dict | None = None,
         call_type: str | None = None, call_id: str | None = None) -> ScoredCall:
    return ScoredCall(call_id=call_id or f"{rep}-{day}", rep=rep, started_at=START + timedelta(days=day),
                      scores=[CriterionScore(criterion=c, score=s) for c, s in (scores or {}).items()],
                      metrics=metrics or {}, call_type=call_type)


def objection(*days_and_scores: tuple[float, float], rep: str = ALEX) -> list[ScoredCall]:
    return [call(rep, day, {"objection_handling": score}) for day, score in days_and_scores]


# --- counted by hand ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("history", "signals", "nudges"), [
    (((0, 40), (1, 45), (2, 50)), 1, 1),
    (((0, 40), (1, 45)), 0, 0),                                      # not enough calls yet
    (((0, 40), (1, 60), (2, 50), (3, 45)), 0, 0),                    # 60 is not below 60
    (((0, 40), (1, 45), (2, 50), (3, 55)), 2, 1),                    # the 4th call adds to the open nudge
    (((0, 40), (1, 45), (2, 50), (3, 80), (4, 40), (5, 45), (6, 50)), 2, 1),  # cooling down, no worse
    (((0, 40), (1, 45), (2, 50), (3, 80), (4, 30), (5, 30), (6, 30)), 2, 2),  # worse: the cooldown gives way
    (((0, 40), (1, 45), (2, 50), (29, 80), (30, 40), (31, 45), (32, 50)), 2, 2),  # the cooldown is over
])
def test_signals_and_nudges_counted_by_hand(history, signals, nudges):
    result = replay(objection(*history), make_config())
    rule = result.rule("west", "objection_handling")
    assert (rule.signals, rule.nudges, rule.reps_flagged) == (signals, nudges, 1 if signals else 0)
    assert rule.threshold == 60 and not rule.calibrated


def test_nudges_per_rep_per_week_divide_by_reps_with_calls_and_weeks():
    calls = objection((0, 40), (1, 45), (2, 50), (14, 90)) + [call(SAM, 0, {"objection_handling": 90})]
    result = replay(calls, make_config())
    assert result.weeks == 2 and result.team("west").reps == 2
    assert result.rule("west", "objection_handling").nudges_per_rep_week == pytest.approx(1 / 2 / 2)


def test_a_short_history_counts_as_one_week():
    result = replay(objection((0, 40), (1, 45), (2, 50)), make_config())
    assert result.weeks == 1
    assert result.team("west").nudges_per_rep_week == 1


@pytest.mark.parametrize(("weekly_cap", "nudged_on_days"), [
    (1, [2, 10]),
    (2, [2, 3, 10, 11]),
])
def test_the_weekly_cap_limits_nudges(weekly_cap, nudged_on_days):
    calls = objection(*((day, 40) for day in range(14)))
    result = replay(calls, make_config(budget={"weekly_cap": weekly_cap, "cooldown_days": 0}), practice_days=1)
    assert [(at - START).days for at, _ in result.nudged[ALEX]] == nudged_on_days
    assert result.team("west").max_nudges_7d == weekly_cap
    assert result.team("west").waits[WAIT_CAP] > 0


@pytest.mark.parametrize(("cooldown_days", "nudges"), [(21, 1), (0, 4)])
def test_the_cooldown_limits_nudges_on_a_skill(cooldown_days, nudges):
    calls = objection(*((day, 40) for day in range(6)))
    result = replay(calls, make_config(budget={"weekly_cap": 14, "cooldown_days": cooldown_days}), practice_days=1)
    assert result.rule("west", "objection_handling").nudges == nudges
    assert (WAIT_COOLDOWN in result.team("west").waits) == (cooldown_days > 0)


@pytest.mark.parametrize(("priorities", "focus", "waiting"), [
    ([], "objection_handling", "discovery"),  # weight 3 outranks discovery's bigger gap
    ([{"name": "Land discovery", "criteria": ["discovery"], "boost": 3}], "discovery", "objection_handling"),
])
def test_one_focus_skill_at_a_time(priorities, focus, waiting):
    calls = [call(ALEX, day, {"objection_handling": 40, "discovery": 30}) for day in range(4)]
    result = replay(calls, make_config(priorities=priorities))
    assert [criterion for _, criterion in result.nudged[ALEX]] == [focus]
    assert result.rule("west", waiting).signals == 2 and result.rule("west", waiting).nudges == 0
    # day 2: the other skill came first; day 3: the open nudge gets the new evidence, the other skill waits
    assert result.team("west").waits == {WAIT_FOCUS: 1, WAIT_OPEN: 1}


def test_unmatched_reps_are_counted_and_never_flagged():
    calls = objection((0, 40), (1, 45), (2, 50), rep=EVE) + objection((0, 90), (1, 90), (2, 90))
    result = replay(calls, make_config())
    assert (result.unmatched_calls, result.unmatched_reps) == (3, (EVE,))
    assert result.team("west").reps == 1 and result.team("west").reps_flagged == 0
    assert EVE not in result.nudged


def test_a_gong_user_mapped_in_coach_yaml_is_on_the_team():
    calls = [call("gong-user:4711", day, {"objection_handling": 40}) for day in range(3)]
    result = replay(calls, make_config(gong={"users": {"4711": SAM}}))
    assert result.unmatched_calls == 0 and result.rule("west", "objection_handling").nudges == 1


def test_a_call_sent_twice_counts_once():
    calls = objection((0, 40), (1, 45), (2, 50))
    result = replay([*calls, calls[0]], make_config())
    assert (result.calls, result.duplicates) == (3, 1)
    assert result.rule("west", "objection_handling").signals == 1


def test_metric_rules_fire_on_their_call_types_only():
    config = make_config(metric_rules={"few_questions": {"metric": "questions", "below": 6,
                                                         "call_types": ["discovery"], "scenario": "discovery-impact"}})
    calls = [call(ALEX, day, metrics={"questions": 3}, call_type=kind)
             for day, kind in enumerate(("discovery", "demo", "discovery", "discovery", "demo"))]
    result = replay(calls, config)
    rule = result.rule("west", "few_questions")
    assert (rule.kind, rule.comparison, rule.threshold) == ("metric", "below", 6)
    assert (rule.signals, rule.nudges) == (1, 1)


def test_a_calibrated_threshold_follows_the_team():
    config = make_config(criteria={"objection_handling": {
        "baseline_percentile": 50, "baseline_min_scores": 5, "scenario": "price-objection"}})
    calls = [c for day in range(6) for c in (call(SAM, day, {"objection_handling": 90}),
                                             call(ALEX, day + 0.1, {"objection_handling": 70}))]
    result = replay(calls, config)
    rule = result.rule("west", "objection_handling")
    # 70 is above the fixed 60, but below the team's median (80) once 5 team scores exist (day 2 on)
    assert rule.calibrated and rule.threshold == 80
    assert (rule.reps_flagged, rule.signals) == (1, 4)


def test_an_override_replaces_a_calibrated_threshold():
    config = make_config(criteria={"objection_handling": {
        "baseline_percentile": 50, "baseline_min_scores": 5, "scenario": "price-objection"}})
    calls = [c for day in range(6) for c in (call(SAM, day, {"objection_handling": 90}),
                                             call(ALEX, day + 0.1, {"objection_handling": 70}))]
    rule = replay(calls, config, threshold_overrides={"objection_handling": 60}).rule("west", "objection_handling")
    assert (rule.calibrated, rule.threshold, rule.signals) == (False, 60, 0)


def test_the_team_window_baseline_is_team_baseline():
    rng = random.Random(3)
    window = _TeamWindow(days=1)
    for step in range(600):  # every 10 minutes for about 4 days: the window fills, then slides
        now = START + timedelta(minutes=10 * step)
        window.add(now, rng.choice([rng.uniform(0, 100), 50.0]))  # ties too
        window.trim(now)
        assert len(window.ordered) == min(step + 1, 145)
        for percentile in (1, 20, 25, 50, 99):
            assert window.baseline(percentile) == team_baseline([p for _, p in window.recent], percentile)


# --- a realistic history ------------------------------------------------------------------------------------------

def generated(reps: int = 40, weeks: int = 12, *, seed: int = 11) -> tuple[list[ScoredCall], CoachConfig]:
    """Two teams, 3 calls per rep per week on working days, 4 criteria, one rep in eight weak on a criterion."""
    rng = random.Random(seed)
    names = [f"rep{i}@example.com" for i in range(reps)]
    config = parse_config({
        "teams": [{"id": team, "managers": ["U0DANA"], "approvals_channel": "C0APPROVALS", "reps": names[i::2]}
                  for i, team in enumerate(("west", "east"))],
        "criteria": {
            "objection_handling": {"weight": 3, "scenario": "price-objection"},
            "discovery": {"weight": 2, "scenario": "discovery-impact"},
            "closing": {"baseline_percentile": 20, "scenario": "stall-think-about-it"},
            "multi_threading": {"threshold": 55, "scenario": "multithread-champion"},
        },
        "metric_rules": {
            "over_talking": {"metric": "talk_ratio", "above": 0.65, "scenario": "active-listening"},
            "few_questions": {"metric": "questions", "below": 6, "call_types": ["discovery"],
                              "scenario": "discovery-impact"},
        },
        "priorities": [{"name": "Land discovery", "criteria": ["discovery"], "boost": 1.5}],
    })
    calls = []
    for n, rep in enumerate(names):
        means = {c: rng.gauss(72, 8) for c in CRITERIA}
        if n % 8 == 3:
            means[rng.choice(CRITERIA)] = 48
        talk = 0.72 if n % 10 == 5 else rng.gauss(0.55, 0.05)
        for week in range(weeks):
            for k, day in enumerate(sorted(rng.sample(range(5), 3))):
                calls.append(ScoredCall(
                    call_id=f"{rep}-{week}-{k}", rep=rep, call_type=rng.choice(("discovery", "demo")),
                    started_at=START + timedelta(weeks=week, days=day, minutes=rng.randrange(8 * 60)),
                    scores=[CriterionScore(criterion=c, score=round(min(100, max(0, rng.gauss(m, 12)))))
                            for c, m in means.items()],
                    metrics={"talk_ratio": rng.gauss(talk, 0.06), "questions": max(0, round(rng.gauss(9, 3)))}))
    rng.shuffle(calls)  # files are not always in order
    return calls, config


@pytest.mark.parametrize(("budget", "practice_days"), [
    ({}, 3),                                          # the defaults: 2 a week, 21 days' cooldown
    ({"weekly_cap": 1, "cooldown_days": 0}, 1),
    ({"weekly_cap": 3, "cooldown_days": 0}, 0),       # nudges close at once: only the cap holds them back
])
def test_every_rep_stays_within_the_weekly_cap_on_a_realistic_history(budget, practice_days):
    calls, config = generated()
    config = config.model_copy(update={"budget": config.budget.model_copy(update=budget)})
    result = replay(calls, config, practice_days=practice_days)
    cap = config.budget.weekly_cap
    assert result.calls == 40 * 12 * 3 and result.unmatched_calls == 0
    assert sum(t.nudges for t in result.teams) > 0
    for times in result.nudged.values():
        moments = [at for at, _ in times]
        for i, start in enumerate(moments):
            assert sum(1 for at in moments[i:] if at <= start + timedelta(days=7)) <= cap
    for team in result.teams:
        assert team.max_nudges_7d <= cap and team.nudges_per_rep_week <= cap
    assert result.cap_holds


def test_lower_thresholds_flag_fewer_reps():
    calls, config = generated()
    for criterion in ("objection_handling", "closing"):
        found = alternatives(calls, config, criterion, thresholds=(40, 50, 55, 60, 65, 70, 80))
        flagged = [found[t][0] for t in sorted(found)]
        assert flagged == sorted(flagged) and flagged[0] < flagged[-1]
        rates = [found[t][1] for t in sorted(found)]
        assert rates[0] < rates[-1]
    current = replay(calls, config)
    assert alternatives(calls, config, "objection_handling", thresholds=(60,))[60][0] == sum(
        current.rule(team.id, "objection_handling").reps_flagged for team in config.teams)


def test_replay_finds_what_evaluate_finds_on_each_rep_s_whole_history():
    """The replay keeps only the calls the rules read; `evaluate` on every rep's whole history, with the team's
    baseline from every score in the window, must find the same signals."""
    calls, config = generated(reps=16, weeks=8)
    ordered = sorted(calls, key=lambda c: c.started_at)
    team_of = {rep: team.id for team in config.teams for rep in team.reps}
    histories: dict[str, list[CallRecord]] = {}
    triggers: set[tuple[str, str, int]] = set()
    team_scores: list[tuple[str, datetime, float]] = []
    signals: Counter[tuple[str, str]] = Counter()
    flagged: dict[tuple[str, str], set[str]] = {}
    for pk, c in enumerate(ordered):
        team = team_of[c.rep]
        history = histories.setdefault(c.rep, [])
        history.append(CallRecord(call_pk=pk, call_id=c.call_id, started_at=c.started_at,
                                  scores={s.criterion: (s.percent, ()) for s in c.scores}, metrics=c.metrics,
                                  call_type=c.call_type))
        team_scores += [(team, c.started_at, s.percent) for s in c.scores if s.criterion == "closing"]
        rule = config.criteria["closing"]
        window = [p for t, at, p in team_scores if t == team and at >= c.started_at - timedelta(rule.baseline_days)]
        thresholds = ({"closing": team_baseline(window, rule.baseline_percentile)}
                      if len(window) >= rule.baseline_min_scores else {})
        for finding in evaluate(history, criteria=config.criteria, metric_rules=config.metric_rules,
                                thresholds=thresholds):
            key = (team, finding.criterion)
            flagged.setdefault(key, set()).add(c.rep)
            if (c.rep, finding.criterion, finding.trigger.call_pk) not in triggers:
                triggers.add((c.rep, finding.criterion, finding.trigger.call_pk))
                signals[key] += 1
    result = replay(calls, config)
    assert sum(signals.values()) > 50
    for rule in result.rules:
        assert rule.signals == signals[rule.team, rule.rule], rule
        assert rule.reps_flagged == len(flagged.get((rule.team, rule.rule), ())), rule


def test_calibrate_in_worker_processes_gives_the_same_answers():
    calls, config = generated(reps=12, weeks=6)
    one = calibrate(calls, config)
    two = calibrate(calls, config, workers=2)
    assert one == two
    assert set(one.alternatives) == set(config.criteria)
    assert list(one.alternatives["objection_handling"]) == [50, 55, 60, 65, 70]
    assert one.alternatives["objection_handling"][60] is one.current  # the current threshold: not replayed again


def test_progress_counts_every_call_of_every_pass():
    from bot.nudges.calibration import calibration_passes

    calls, config = generated(reps=8, weeks=4)
    seen: list[int] = []
    calibrate([*calls, calls[0]], config, progress=seen.append)
    assert sum(seen) == (len(calls) + 1) * calibration_passes(config)


# --- the command --------------------------------------------------------------------------------------------------

COACH = {
    "teams": [{"id": "west", "name": "West AEs", "managers": ["U0DANA"], "approvals_channel": "C0APPROVALS",
               "reps": [ALEX, SAM]}],
    "criteria": {"objection_handling": {"label": "Objection handling", "weight": 3, "scenario": "price-objection"},
                 "discovery": {"scenario": "discovery-impact"}},
    "metric_rules": {"over_talking": {"metric": "talk_ratio", "above": 0.65, "scenario": "active-listening"}},
}


@pytest.fixture
def coach_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "coach.yaml"
    path.write_text(yaml.safe_dump(COACH), encoding="utf-8")
    return path


def _generic(call_id: str, rep: str, day: int, objection_score: float, talk_ratio: float) -> dict:
    return {"call_id": call_id, "rep": rep, "started_at": (START + timedelta(days=day)).isoformat(),
            "scores": [{"criterion": "objection_handling", "score": objection_score},
                       {"criterion": "discovery", "score": 4, "max": 5}],
            "metrics": {"talk_ratio": talk_ratio}}


def _gong(call_id: str, rep: str, day: int, talk_ratio_percent: float) -> dict:
    return {"isTest": False, "callData": {
        "metaData": {"id": call_id, "started": (START + timedelta(days=day)).isoformat(), "title": "Acme"},
        "parties": [{"emailAddress": rep, "affiliation": "Internal"}],
        "interaction": {"interactionStats": [{"name": "Talk Ratio", "value": talk_ratio_percent}]}}}


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    lines = [_generic(f"c{day}", ALEX, day, 56 + day, 0.5) for day in range(4)]  # 56..59: below 60, not 55
    lines += [_gong(f"g{day}", "sam@example.com", day, 72) for day in range(3)]  # sam is on no team by email
    lines += [_generic(f"s{day}", SAM, day, 90, 0.7) for day in range(3)]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_calibrate_prints_a_table_per_team(jsonl, coach_yaml):
    result = CliRunner().invoke(cli, ["calibrate", str(jsonl), "--config", str(coach_yaml)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "West AEs (west): 2 reps, 7 calls, 2026-03-02 to 2026-03-05, 1.0 weeks" in out
    # the cells wrap in a narrow terminal, so look for them piece by piece
    for shown in ("Objection handling", "< 60%", "Over talking", "talk_ratio", "> 0.65", "All (2 nudges)"):
        assert shown in out
    # alex is flagged from 60 up: 1 nudge for 2 reps in 1 week
    for shown in ("50→0.00", "55→0.00", "60→0.50", "65→0.50", "70→0.50", "50→0", "55→0", "60→1", "70→1"):
        assert shown in out
    assert "Unmatched: 3 calls from 1 rep(s)" in out and "sam@example.com" in out
    assert "Weekly cap of 2 holds: the most nudges any rep got in any 7 days was 1." in out


def test_calibrate_json_is_one_document_on_stdout(jsonl, coach_yaml):
    result = CliRunner().invoke(cli, ["calibrate", str(jsonl), "--json", "--config", str(coach_yaml)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["calls"], data["unmatched_calls"], data["cap_holds"]) == (10, 3, True)
    [west] = data["teams"]
    rules = {rule["rule"]: rule for rule in west["rules"]}
    assert rules["objection_handling"]["nudges"] == 1 and rules["over_talking"]["reps_flagged"] == 1
    assert [a["threshold"] for a in rules["objection_handling"]["alternatives"]] == [50, 55, 60, 65, 70]
    assert [a["reps_flagged"] for a in rules["objection_handling"]["alternatives"]] == [0, 0, 1, 1, 1]
    assert "alternatives" not in rules["over_talking"]


def test_calibrate_reads_csv(tmp_path, coach_yaml):
    rows = ["call_id,rep,started_at,criterion,score,metric:talk_ratio"]
    rows += [f"c{day},{ALEX},{(START + timedelta(days=day)).isoformat()},objection_handling,{45 + day},0.4"
             for day in range(3)]
    rows += [f"c{day},{ALEX},{(START + timedelta(days=day)).isoformat()},discovery,80,0.4" for day in range(3)]
    path = tmp_path / "history.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    human = CliRunner().invoke(cli, ["calibrate", str(path), "--config", str(coach_yaml), "--team", "west"])
    assert human.exit_code == 0, human.output
    assert "1 reps, 3 calls" in human.stdout
    machine = CliRunner().invoke(cli, ["calibrate", str(path), "--json", "--config", str(coach_yaml)])
    rules = {rule["rule"]: rule for rule in json.loads(machine.stdout)["teams"][0]["rules"]}
    assert (rules["objection_handling"]["signals"], rules["discovery"]["signals"]) == (1, 0)


@pytest.mark.parametrize(("content", "suffix", "expected"), [
    ('{"call_id": "c1", "rep": "alex@example.com", "started_at": "2026-03-02T09:00:00Z"}\n{"call_id": \n',
     ".jsonl", "line 2: not valid JSON"),
    ('{"call_id": "c1", "rep": "alex@example.com", "started_at": "2026-03-02T09:00:00Z",'
     ' "scores": [{"criterion": "discovery", "score": 140}]}\n', ".jsonl", "line 1: scores[0]"),
    ("call_id,rep,started_at,criterion,score\nc1,alex@example.com,2026-03-02T09:00:00Z,discovery,abc\n", ".csv",
     "row 2 (call c1).score"),
])
def test_calibrate_names_the_bad_input_by_path(tmp_path, coach_yaml, content, suffix, expected):
    path = tmp_path / f"history{suffix}"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--config", str(coach_yaml)])
    assert result.exit_code == 1
    assert f"{path} has mistakes" in result.output and expected in result.output


def test_calibrate_unknown_team(jsonl, coach_yaml):
    result = CliRunner().invoke(cli, ["calibrate", str(jsonl), "--team", "north", "--config", str(coach_yaml)])
    assert result.exit_code == 1 and "no team 'north'" in result.output and "teams: west" in result.output
