"""`coach.yaml`: teams, criteria and the follow-up ladder, parsed into typed models.

Every mistake is reported by its path (`teams[1].approvals_channel: required`) so an admin can fix
the file in one pass.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.nudges.adapters import GongMapping
from bot.problems import problems_of

SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(Exception):
    """The configuration file has mistakes; `problems` lists each by path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _person(value: str) -> str:
    value = value.strip()
    if not (SLACK_USER.match(value) or EMAIL.match(value)):
        raise ValueError(f"{value!r} is neither a Slack user ID (U...) nor an email address")
    return value.lower() if "@" in value else value


class ApprovalConfig(_Strict):
    """manual: the manager approves each nudge; auto: the rep gets it at once and the channel an FYI;
    rep_first: the rep gets it privately and the manager is asked only if the rep has not started within
    `rep_first_hours`."""

    policy: Literal["manual", "auto", "rep_first"] = "manual"
    rep_first_hours: int = Field(default=24, ge=1, le=336)


class TeamConfig(_Strict):
    id: str
    name: str | None = None
    managers: list[str]
    approvers: list[str] = []
    approvals_channel: str
    digest_channel: str | None = None
    timezone: str = "UTC"
    reps: list[str] = []
    approval: ApprovalConfig | None = None  # this team's policy; the top-level `approval` otherwise

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9_-]*$", value):
            raise ValueError(f"{value!r}: use lowercase letters, digits, - and _ (e.g. 'west')")
        return value

    @field_validator("managers")
    @classmethod
    def _some_manager(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("needs at least one manager (a Slack user ID or email) to approve practice")
        return values

    @field_validator("managers", "approvers", "reps")
    @classmethod
    def _people(cls, values: list[str]) -> list[str]:
        return [_person(v) for v in values]

    @field_validator("approvals_channel", "digest_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel ID (C..., G...); copy it from the channel details")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as 'America/New_York'") from None
        return value

    @property
    def title(self) -> str:
        return self.name or self.id

    def deciders(self) -> list[str]:
        """Who may approve or skip this team's nudges."""
        return [*self.managers, *self.approvers]


class CriterionConfig(_Strict):
    """A scored criterion: below `threshold` percent on `consecutive_calls` calls in a row is a signal."""

    label: str | None = None
    weight: float = Field(default=1.0, gt=0)
    threshold: float = Field(default=60, ge=0, le=100)
    consecutive_calls: int = Field(default=3, ge=1, le=20)
    baseline_percentile: float | None = Field(default=None, gt=0, lt=100)
    baseline_days: int = Field(default=90, ge=7, le=730)
    baseline_min_scores: int = Field(default=20, ge=5)
    scenario: str


METRICS = ("talk_ratio", "longest_monologue_s", "longest_customer_story_s", "questions", "patience_s", "next_step",
           "interactivity")


class MetricRuleConfig(_Strict):
    """A conversation metric past a limit on `consecutive_calls` calls in a row (of `call_types`, if given)."""

    metric: str
    above: float | None = None
    below: float | None = None
    consecutive_calls: int = Field(default=3, ge=1, le=20)
    call_types: list[str] = []
    label: str | None = None
    weight: float = Field(default=1.0, gt=0)
    scenario: str

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS and not value.startswith("tracker:"):
            raise ValueError(f"{value!r} is not a metric Rehearse knows ({', '.join(METRICS)}, or tracker:<name>)")
        return value

    @model_validator(mode="after")
    def _one_limit(self) -> MetricRuleConfig:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")
        return self




class BudgetConfig(_Strict):
    """How much coaching a rep gets: at most one open nudge, a weekly cap, a cooldown, working hours only."""

    weekly_cap: int = Field(default=2, ge=1, le=14)
    cooldown_days: int = Field(default=21, ge=0, le=365)
    working_days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default=["mon", "tue", "wed", "thu", "fri"], min_length=1)
    working_hours: tuple[time, time] | None = (time(8, 30), time(18, 0))  # None: any time of a working day

    @field_validator("working_hours", mode="before")
    @classmethod
    def _hours(cls, value: object) -> object:
        if isinstance(value, dict):
            value = (value.get("start"), value.get("end"))
        if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
            try:
                start, end = (time.fromisoformat(v) for v in value)
            except ValueError:
                raise ValueError("use 24-hour times, e.g. {start: '08:30', end: '18:00'}") from None
            if start >= end:
                raise ValueError("start must be before end")
            return start, end
        return value


class PriorityConfig(_Strict):
    """A strategic priority: its criteria weigh more when choosing a rep's one focus skill."""

    name: str
    criteria: list[str] = Field(min_length=1)
    boost: float = Field(default=1.5, gt=1, le=5)


class FollowupConfig(_Strict):
    """Follow-ups after a nudge completes: due `ladder_days` after it; after each follow-up drill a pass stretches
    the next gap by `stretch` (up to `max_gap_days`) and a miss brings a re-drill `redrill_working_days` later."""

    ladder_days: list[int] = Field(default=[14, 60], min_length=1)
    stretch: float = Field(default=2.5, ge=1, le=10)
    max_gap_days: int = Field(default=180, ge=1, le=730)
    redrill_working_days: int = Field(default=3, ge=1, le=30)
    retention_turns: int = Field(default=2, ge=1, le=10)

    @field_validator("ladder_days")
    @classmethod
    def _ascending(cls, days: list[int]) -> list[int]:
        if any(d <= 0 for d in days) or days != sorted(set(days)):
            raise ValueError("must be positive whole days in increasing order, e.g. [14, 60]")
        return days


class RetentionConfig(_Strict):
    """How long call text and practice text are kept; the scores, grades and attempts built from them stay.

    `transcripts_days`: evidence quotes from calls (on scores, signals and approval messages already sent).
    `practice_turns_days`: what the rep and the buyer said in roleplays (turns, winning lines, grade evidence).
    `null` keeps the text for good.
    """

    transcripts_days: int | None = 180
    practice_turns_days: int | None = 180

    @field_validator("transcripts_days", "practice_turns_days", mode="before")
    @classmethod
    def _whole_days(cls, value: object) -> object:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise ValueError(f"{value!r}: give a whole number of days (e.g. 90), or null to keep the text")
        if value is not None and not 1 <= value <= 3650:
            raise ValueError(f"{value} days: keep text between 1 and 3650 days (or null to keep it for good)")
        return value


class CoachConfig(_Strict):
    teams: list[TeamConfig] = Field(min_length=1)
    criteria: dict[str, CriterionConfig] = Field(min_length=1)
    metric_rules: dict[str, MetricRuleConfig] = {}
    budget: BudgetConfig = BudgetConfig()
    followups: FollowupConfig = FollowupConfig()
    approval: ApprovalConfig = ApprovalConfig()
    priorities: list[PriorityConfig] = []
    gong: GongMapping = GongMapping()
    retention: RetentionConfig = RetentionConfig()
    scenarios_dir: str | None = None

    @model_validator(mode="after")
    def _one_team_per_person(self) -> CoachConfig:
        seen: dict[str, str] = {}
        problems = []
        for team in self.teams:
            for rep in team.reps:
                if rep in seen and seen[rep] != team.id:
                    problems.append(f"rep {rep} is on teams {seen[rep]!r} and {team.id!r}; keep one")
                seen[rep] = team.id
        ids = [t.id for t in self.teams]
        if len(ids) != len(set(ids)):
            problems.append("team ids must be unique")
        if clash := sorted(set(self.criteria) & set(self.metric_rules)):
            problems.append(f"{', '.join(clash)}: a name is either a criterion or a metric rule, not both")
        for i, priority in enumerate(self.priorities):
            unknown = [c for c in priority.criteria if c not in self.criteria and c not in self.metric_rules]
            if unknown:
                problems.append(f"priorities[{i}].criteria: {', '.join(unknown)} not under criteria or metric_rules")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def team(self, team_id: str) -> TeamConfig | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def approval_for(self, team_id: str) -> ApprovalConfig:
        team = self.team(team_id)
        return (team.approval if team and team.approval else None) or self.approval

    def rule(self, name: str) -> CriterionConfig | MetricRuleConfig | None:
        """The criterion or metric rule a nudge is about."""
        return self.criteria.get(name) or self.metric_rules.get(name)

    def criterion_label(self, criterion: str) -> str:
        found = self.rule(criterion)
        return (found.label if found and found.label else criterion.replace("_", " ").capitalize())

    def priority_for(self, criterion: str) -> PriorityConfig | None:
        return next((p for p in self.priorities if criterion in p.criteria), None)


def parse_config(data: object) -> CoachConfig:
    """Validate already-parsed YAML; raise ConfigError listing every mistake by path."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping with 'teams' and 'criteria'"])
    try:
        return CoachConfig.model_validate(data)
    except ValidationError as exc:
        unknown = "unknown setting (check the spelling against coach.example.yaml)"
        problems = [f"{path}: {message}" for path, message in problems_of(exc, unknown=unknown)]
        raise ConfigError(problems) from None


def read_yaml(path: str | Path) -> object:
    """The file's YAML, or ConfigError saying where it is broken."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (set REHEARSE_CONFIG or copy coach.example.yaml)"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"]) from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply to be a configuration"]) from None
    except ValueError as exc:  # a date YAML cannot build, e.g. 2026-02-30 or year 0
        raise ConfigError([f"{path}: not valid YAML: a date or time is out of range ({exc})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    return data


def load_config(path: str | Path) -> CoachConfig:
    """Read and validate `coach.yaml`."""
    return parse_config(read_yaml(path))


def unknown_scenarios(data: object, scenario_ids: set[str]) -> list[str]:
    """Criteria and metric rules (in the parsed YAML, valid or not) naming a scenario the library lacks."""
    problems = []
    for section in ("criteria", "metric_rules"):
        rules = data.get(section) if isinstance(data, dict) else None
        for name, rule in rules.items() if isinstance(rules, dict) else ():
            scenario = rule.get("scenario") if isinstance(rule, dict) else None
            if isinstance(scenario, str) and scenario not in scenario_ids:
                known = ", ".join(sorted(scenario_ids)) or "none found"
                problems.append(f"{section}.{name}.scenario: no scenario {scenario!r} (known: {known})")
    return problems
