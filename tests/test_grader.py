"""The rule-based grader: strong reps beat weak ones on every scenario, with evidence quoted verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.practice.grader import (
    CriterionGrade,
    Grade,
    HeuristicGrader,
    assemble_grade,
    weighted_level,
    weighted_score,
)
from bot.practice.roleplay import ScriptedBuyer
from bot.practice.scenarios import load_scenarios
from bot.practice.transcript import Turn
from tests.transcripts import TRANSCRIPTS

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")
PRICE = SCENARIOS["price-objection"]


def _conversation(scenario_id: str, kind: str) -> list[Turn]:
    """The rep's lines with the scripted buyer's replies between them, as the Slack thread would hold them."""
    scenario = SCENARIOS[scenario_id]
    turns = [Turn("buyer", scenario.opening_line)]
    for line in TRANSCRIPTS[scenario_id][kind]:
        turns.append(Turn("rep", line))
        turns.append(ScriptedBuyer().reply(scenario, turns))
    return turns


def _grade(scenario_id: str, kind: str) -> Grade:
    return HeuristicGrader().grade(SCENARIOS[scenario_id], _conversation(scenario_id, kind))


def test_every_scenario_has_a_strong_and_a_weak_transcript() -> None:
    assert set(TRANSCRIPTS) == set(SCENARIOS)
    assert all(set(lines) == {"strong", "weak"} for lines in TRANSCRIPTS.values())


@pytest.mark.parametrize("scenario_id", sorted(TRANSCRIPTS))
def test_strong_rep_passes_and_beats_the_weak_rep_on_every_criterion(scenario_id: str) -> None:
    strong, weak = _grade(scenario_id, "strong"), _grade(scenario_id, "weak")

    assert strong.passed and not weak.passed
    assert strong.score > weak.score
    for good, poor in zip(strong.criteria, weak.criteria, strict=True):
        assert good.criterion == poor.criterion
        assert good.level >= poor.level, (good.criterion, good.feedback, poor.feedback)


@pytest.mark.parametrize("kind", ["strong", "weak"])
@pytest.mark.parametrize("scenario_id", sorted(TRANSCRIPTS))
def test_evidence_is_verbatim_rep_text_and_feedback_never_repeats_it(scenario_id: str, kind: str) -> None:
    grade = _grade(scenario_id, kind)
    rep_lines = TRANSCRIPTS[scenario_id][kind]

    assert [c.criterion for c in grade.criteria] == [c.id for c in SCENARIOS[scenario_id].rubric]
    for criterion in grade.criteria:
        assert 1 <= criterion.level <= 4
        assert len(criterion.evidence) <= 2
        for quote in criterion.evidence:
            assert any(quote in line for line in rep_lines), quote
            assert quote not in criterion.feedback  # the quote is shown once, from ``evidence``
        if not criterion.evidence:
            assert criterion.level <= 2
            assert criterion.feedback.startswith(("No line of yours", "Nothing you said worked against it"))
        assert 1 <= criterion.feedback.count(". ") + 1 <= 3, criterion.feedback
    assert f"{grade.score}/100" in grade.summary


def test_buyer_lines_and_done_are_never_evidence() -> None:
    buyer_says_it_all = [
        Turn("buyer", "I hear you. What does it cost? $2.1M in deadhead. Let's book Thursday at 2pm."),
        Turn("rep", "ok"),
        Turn("rep", "done"),
    ]

    grade = HeuristicGrader().grade(PRICE, buyer_says_it_all)

    assert all(quote == "ok" for c in grade.criteria for quote in c.evidence)  # named as earning nothing
    assert all(c.level <= 2 for c in grade.criteria) and grade.score < 50 and not grade.passed


def test_no_rep_turns_grades_every_criterion_level_one_and_says_what_was_missing() -> None:
    grade = HeuristicGrader().grade(SCENARIOS["active-listening"], [])

    assert [c.level for c in grade.criteria] == [1, 1, 1]
    assert grade.criteria[2].feedback.startswith("No line of yours plays back what the buyer said.")
    assert "To reach level 3: paraphrases one thing Nadia said" in grade.criteria[2].feedback


def test_a_discount_caps_holding_the_price_and_is_quoted() -> None:
    lines = [*TRANSCRIPTS["price-objection"]["strong"], "Honestly, I could knock 10% off to get it done."]

    grade = HeuristicGrader().grade(PRICE, [Turn("rep", line) for line in lines])
    hold = next(c for c in grade.criteria if c.criterion == "hold_price")

    assert hold.level <= 2 and hold.against
    assert hold.evidence[0] == "Honestly, I could knock 10% off to get it done."
    assert hold.feedback.startswith("Worked against you: it offers a discount")
    assert not grade.passed and grade.score < 75 and "knock 10% off" in grade.summary


def test_curly_quotes_and_case_do_not_hide_a_phrase() -> None:
    grade = HeuristicGrader().grade(PRICE, [Turn("rep", "THAT\u2019S FAIR. What\u2019s driving the 130?")])
    acknowledge = next(c for c in grade.criteria if c.criterion == "acknowledge")

    assert acknowledge.level == 3
    assert acknowledge.evidence == ("THAT\u2019S FAIR.",)


def test_long_turns_cost_brevity_with_the_word_count_in_the_feedback() -> None:
    long_turn = " ".join(["We also help with onboarding and reporting."] * 8)
    turns = [
        Turn("rep", "So what I'm hearing is nobody trusts the score. What changed?"),
        Turn("rep", long_turn),
    ]

    brevity = HeuristicGrader().grade(SCENARIOS["active-listening"], turns).criteria[0]

    assert brevity.criterion == "brevity" and brevity.level == 2
    assert brevity.feedback.startswith("Your longest turn ran 56 words")
    assert brevity.evidence[0] == "We also help with onboarding and reporting."


def test_grading_is_deterministic() -> None:
    turns = _conversation("stall-think-about-it", "strong")

    assert HeuristicGrader().grade(SCENARIOS["stall-think-about-it"], turns) == HeuristicGrader().grade(
        SCENARIOS["stall-think-about-it"], list(turns)
    )


@pytest.mark.parametrize(
    ("levels_and_weights", "score"),
    [
        ([(4, 1.0)], 100),
        ([(1, 1.0)], 25),
        ([(3, 0.5), (2, 0.5)], 63),
        ([(4, 0.3), (1, 0.7)], 48),
        ([(4, 3), (2, 1)], 88),
        ([(3, 0.1), (3, 0.2), (3, 0.3)], 75),
    ],
)
def test_weighted_score(levels_and_weights: list[tuple[int, float]], score: int) -> None:
    assert weighted_score(levels_and_weights) == score


@pytest.mark.parametrize("bad", [[], [(3, 0.0)], [(5, 1.0)], [(0, 1.0)]])
def test_weighted_score_rejects_nonsense(bad: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError):
        weighted_score(bad)


def test_pass_is_the_weighted_mean_level_reaching_the_scenario_level_despite_float_weights() -> None:
    weights = [0.1, 0.2, 0.3]
    assert (3 * 0.1 + 3 * 0.2 + 3 * 0.3) / sum(weights) < 3, "naive float arithmetic would fail a level-3 rep"
    assert weighted_level([(3, w) for w in weights]) == 3.0

    at_level = [CriterionGrade(c.id, c.label, 3, (), "") for c in PRICE.rubric]
    just_below = [CriterionGrade(c.id, c.label, 3 if i else 2, (), "") for i, c in enumerate(PRICE.rubric)]

    assert assemble_grade(PRICE, at_level).passed
    assert assemble_grade(PRICE, at_level).score == 75
    assert not assemble_grade(PRICE, just_below).passed
