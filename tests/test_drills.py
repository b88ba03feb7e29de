"""`/drill [skill]`: a forgiving match from what the rep typed to a scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.nudges.drills import match_scenarios
from bot.practice.scenarios import load_scenarios

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")


@pytest.mark.parametrize(("typed", "found", "first"), [
    ("price", True, "price-objection"),
    ("price-objection", True, "price-objection"),
    ("objection handling", True, "price-objection"),
    ("Active_Listening", True, "active-listening"),
    ("spredsheets", False, "status-quo-spreadsheets"),
    ("multi threding", False, "multithread-champion"),
    ("pri\u200bce", True, "price-objection"),  # a zero-width space pasted inside the word
])
def test_match(typed, found, first):
    exact, matches = match_scenarios(typed, SCENARIOS)
    assert exact is found and matches[0].id == first


def test_nothing_close_gives_no_suggestion():
    assert match_scenarios("quarterly tax filing", SCENARIOS) == (False, [])


def test_no_text_lists_every_drill():
    exact, matches = match_scenarios("", SCENARIOS)
    assert exact and len(matches) == len(SCENARIOS)
