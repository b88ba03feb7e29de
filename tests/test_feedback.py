"""The feedback a rep reads first: one strength, one fix with a better line, short, no quote twice (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.practice.feedback import VISIBLE_WORDS, feedback_for
from bot.practice.grader import HeuristicGrader
from bot.practice.roleplay import ScriptedBuyer, roleplay_over
from bot.practice.scenarios import Scenario, load_scenarios
from bot.practice.substance import content_words, stem
from bot.practice.transcript import Turn
from tests.transcripts import TRANSCRIPTS

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")


def played(scenario: Scenario, lines: list[str]) -> list[Turn]:
    turns = [Turn("buyer", scenario.opening_line)]
    for line in lines:
        turns.append(Turn("rep", line))
        turns.append(ScriptedBuyer().reply(scenario, turns))
        if roleplay_over(scenario, turns):
            break
    return turns


CASES = [(sid, kind) for sid in sorted(TRANSCRIPTS) for kind in ("strong", "weak")]


@pytest.mark.parametrize(("scenario_id", "kind"), CASES)
def test_feedback_is_short_quotes_the_rep_once_each_and_offers_a_better_line(scenario_id: str, kind: str) -> None:
    scenario = SCENARIOS[scenario_id]
    turns = played(scenario, TRANSCRIPTS[scenario_id][kind])
    note = feedback_for(scenario, HeuristicGrader().grade(scenario, turns))
    said = " ".join(turn.text for turn in turns if turn.role == "rep")

    assert note.words <= VISIBLE_WORDS, note.lines()
    quotes = [point.quote for point in (note.strength, note.fix) if point is not None and point.quote]
    assert len(quotes) == len(set(quotes))
    assert all(quote.rstrip("\u2026") in said for quote in quotes), quotes
    if kind == "weak":
        assert note.fix is not None and note.fix.better, "the fix comes with a better version of the line"


def test_a_discount_is_the_fix_on_a_hold_the_price_drill_with_the_line_and_why() -> None:
    scenario = SCENARIOS["price-objection"]
    turns = played(scenario, ["That's fair. What is the 130 being compared against?", "Okay, I can do 10% off."])

    note = feedback_for(scenario, HeuristicGrader().grade(scenario, turns))

    assert note.fix is not None and note.fix.quote == "Okay, I can do 10% off."
    assert "discount" in note.fix.reason and note.fix.better
    assert note.strength is not None and note.strength.quote == "What is the 130 being compared against?"


def test_nothing_earned_means_no_strength_and_the_empty_line_is_the_fix() -> None:
    scenario = SCENARIOS["discovery-impact"]
    note = feedback_for(scenario, HeuristicGrader().grade(scenario, played(scenario, ["Why?", "How?"])))

    assert note.strength is None
    assert note.fix is not None and note.fix.quote == "Why?" and "no content" in note.fix.reason


@pytest.mark.parametrize("scenario_id", sorted(SCENARIOS))
def test_feedback_after_a_poor_attempt_gives_away_no_hidden_concern(scenario_id: str) -> None:
    """What the rep has not uncovered stays for the retake: no word the buyer keeps to herself (and that the brief,
    the opening and her replies never said) is in the feedback."""
    scenario = SCENARIOS[scenario_id]
    turns = played(scenario, ["Okay.", "Tell me more about that.", "Sure."])
    note = feedback_for(scenario, HeuristicGrader().grade(scenario, turns))
    public = " ".join([scenario.context, scenario.goal, scenario.title, *(t.text for t in turns),
                       *(text for c in scenario.rubric for text in (c.label, *c.levels.values()))])
    known = {stem(word) for word in content_words(public)}
    secret = {stem(word) for concern in scenario.persona.hidden_concerns for word in content_words(concern)
              if len(word) >= 5 and not word.isdigit()} - known
    better = [point.better for point in (note.strength, note.fix) if point is not None and point.better]
    shown = {stem(word) for word in content_words(" ".join(better))}  # what the scenario's author wrote for it

    assert not shown & secret, sorted(shown & secret)
