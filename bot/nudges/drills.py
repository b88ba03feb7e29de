"""On-demand drills (`/drill [skill]`): match the request to a scenario and DM its invite."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping

from bot.coach import Coach
from bot.nudges import practice, progress
from bot.practice.scenarios import Scenario
from bot.slack import blocks


def _words(text: str) -> str:
    """The request as words to match: lower case, `_`/`-` as spaces, invisible characters (zero-width, BOM) gone."""
    visible = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return visible.lower().replace("_", " ").replace("-", " ").strip()


def wants_menu(text: str) -> bool:
    """`/drill` with nothing readable after it (spaces or invisible characters only) asks for the picker."""
    return not _words(text)


def _contains(wanted: str, scenario: Scenario) -> bool:
    return any(wanted in _words(name) for name in (scenario.id, scenario.skill, scenario.title))


def match_scenarios(text: str, scenarios: Mapping[str, Scenario]) -> tuple[bool, list[Scenario]]:
    """(found, scenarios): those whose id, skill or title contains the request, best first; else the closest."""
    wanted = _words(text)
    if not wanted:
        return True, sorted(scenarios.values(), key=lambda s: (s.skill, s.id))
    exact = [s for s in scenarios.values() if _contains(wanted, s)]
    if exact:
        return True, sorted(exact, key=lambda s: (_words(s.skill) != wanted, s.id))
    scored = sorted(((_likeness(wanted, s), s.id, s) for s in scenarios.values()), reverse=True)
    return False, [s for score, _, s in scored[:3] if score >= 0.75]


def _likeness(wanted: str, scenario: Scenario) -> float:
    """How well each requested word matches some word of the scenario (typos forgiven), averaged."""
    words = _words(f"{scenario.id} {scenario.skill} {scenario.title}").split()
    asked = wanted.split()
    return sum(max(difflib.SequenceMatcher(None, a, w).ratio() for w in words) for a in asked) / len(asked)


def drill_menu(coach: Coach, *, user_id: str) -> dict:
    """The picker for `/drill` with no text: drills grouped by skill, the rep's focus skill first."""
    focus = progress.focus_skill(coach, user_id=user_id)
    by_skill: dict[str, list[Scenario]] = {}
    for scenario in sorted(coach.scenarios.values(), key=lambda s: s.title):
        by_skill.setdefault(scenario.skill, []).append(scenario)
    order = sorted(by_skill, key=lambda skill: (skill != focus, skill))
    groups = [(coach.config.criterion_label(skill), [(s.id, f"{s.title}: {s.goal}") for s in by_skill[skill]])
              for skill in order]
    return blocks.drill_picker(groups, focus=coach.config.criterion_label(focus) if focus else None)


def answer_drill(scenarios: Mapping[str, Scenario], text: str) -> tuple[str, Scenario | None]:
    """What `/drill <text>` answers at once, and the scenario to start (None when there is nothing to start)."""
    found, matches = match_scenarios(text, scenarios)
    if not found:
        hint = ", ".join(f"`{s.id}`" for s in matches) or "`/drill` with no text to see them all"
        return f"No drill matches “{text.strip()}”. Closest: {hint}.", None
    return f"*{matches[0].title}* is starting in your DM with Rehearse: reply in its thread.", matches[0]


def send_drill(coach: Coach, *, user_id: str, scenario: Scenario) -> None:
    """Start the on-demand drill in the rep's DM (no approval needed; it counts toward progress)."""
    practice.start_on_demand(coach, user_id=user_id, scenario=scenario)
