"""The coaching services' collaborators, wired once in `bot/app.py` and handed to every service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.config import CoachConfig
from bot.practice.grader import Grader
from bot.practice.roleplay import Buyer
from bot.practice.scenarios import Scenario
from bot.slack.directory import SlackDirectory
from storage.db import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Coach:
    db: Database
    config: CoachConfig
    scenarios: dict[str, Scenario]
    buyer: Buyer
    grader: Grader
    directory: SlackDirectory
    clock: Callable[[], datetime] = utcnow

    def scenario(self, scenario_id: str, criterion: str | None = None) -> Scenario | None:
        """The scenario, or (renamed or removed since) the one coach.yaml now routes the criterion to."""
        if scenario_id in self.scenarios:
            return self.scenarios[scenario_id]
        routed = self.config.criteria.get(criterion) if criterion else None
        return self.scenarios.get(routed.scenario) if routed else None
