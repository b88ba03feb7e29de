"""Rep moves, the scripted buyer's beats and meters, and when a roleplay is over."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.practice.roleplay import ScriptedBuyer, buyer_meters, next_beat, roleplay_over
from bot.practice.scenarios import Scenario, load_scenarios
from bot.practice.transcript import Turn, rep_moves, sentence_moves, sentences
from tests.transcripts import TRANSCRIPTS

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")
PRICE = SCENARIOS["price-objection"]

FEATURE_DUMP = (
    "So our platform is best-in-class for route optimisation, and we offer load matching, real-time "
    "tracking, a driver app, automated dispatch, fuel card integration, and a whole analytics suite on top, "
    "with seamless integrations into every TMS you can name, a dedicated customer success manager for the "
    "first year, and quarterly business reviews with our solutions team so you always know what you're "
    "getting for the money."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What does that cost you each month?", {"open_question"}),
        ("Walk me through your month-end close.", {"open_question"}),
        ("Can you tell me more about that?", {"open_question"}),
        ("And the finance team, how do they feel about it?", {"open_question"}),
        ("Is that fair?", {"closed_question"}),
        ("Does the CFO sign off on this?", {"closed_question"}),
        ("Budget approved?", {"closed_question"}),
        ("I hear you.", {"acknowledged"}),
        ("That\u2019s fair, it\u2019s a real jump.", {"acknowledged"}),
        ("So what I'm hearing is the approvals at the branches are the bottleneck.", {"paraphrase"}),
        ("If I understand you right, it's Elaine who signs.", {"paraphrase"}),
        ("That's roughly $38,000 a quarter.", {"quantified"}),
        ("The pilot cut empty miles by 8%.", {"quantified"}),
        ("Three clerks working twenty extra hours each.", {"quantified"}),
        ("Deadhead cost you 2.1M last year.", {"quantified"}),
        ("Let's schedule 30 minutes on Thursday at 2pm.", {"next_step"}),
        ("I'll send over a calendar invite. Does Tuesday work?", {"next_step", "closed_question"}),
        ("I'll send you some information.", set()),
        ("I can knock 15% off if that helps.", {"discount"}),  # a concession is not a figure of value
        ("What if I lower the price a bit?", {"discount", "open_question"}),
        ("I can probably get you to 150.", {"discount"}),
        ("I'm not going to discount, the price reflects the value.", set()),
        ("You missed the early-pay discount with your supplier?", {"closed_question"}),
        ("Our platform is best-in-class and we offer seamless integrations.", {"pitch"}),
        (FEATURE_DUMP, {"pitch", "long_turn"}),
        (" ".join(["word"] * 61), {"long_turn"}),
        ("done", {"done"}),
        ("Done.", {"done"}),
        ("STOP", {"done"}),
        ("I'm done", {"done"}),
        ("We're done with spreadsheets, aren't we?", {"closed_question"}),
        ("", set()),
        ("can i ask what's behind the 130?", {"open_question"}),  # typed fast, lowercase
        ("is it what's budgeted for routing today or are you comparing us to another quote", {"closed_question"}),
        ("Would you be up for a working session Tuesday the 9th?", {"closed_question", "next_step"}),
        ("Could we walk your CFO through it on Thursday at 2pm?", {"closed_question", "next_step"}),
        ("Branch approvals are the number one thing we fix. Our mobile approvals app matches invoices automatically.",
         {"pitch"}),
        ("Fine, 20% then.", {"discount"}),
        ("Look, I can only hold this quote through Friday.", {"pressure"}),
    ],
)
def test_rep_moves(text: str, expected: set[str]) -> None:
    assert rep_moves(text) == frozenset(expected)


def test_sentences_are_verbatim_and_keep_abbreviations_and_decimals() -> None:
    text = "Dr. Hale has to approve.  Is that right?\nWe saved $1.2M last year! ok"

    assert sentences(text) == [
        "Dr. Hale has to approve.",
        "Is that right?",
        "We saved $1.2M last year!",
        "ok",
    ]


def test_a_commitment_sentence_counts_as_a_next_step_when_the_day_is_elsewhere_in_the_turn() -> None:
    [invite, day] = sentence_moves("I'll send over a calendar invite. Does Tuesday work?")

    assert "next_step" in invite.moves and "next_step" in day.moves
    assert "quantified" not in sentence_moves("Can we grab 30 minutes on Thursday?")[0].moves


def _turns(*rep_lines: str, scenario: Scenario = PRICE) -> list[Turn]:
    """A conversation in which the scripted buyer answers each rep line but the last."""
    turns = [Turn("buyer", scenario.opening_line)]
    for i, line in enumerate(rep_lines):
        turns.append(Turn("rep", line))
        if i < len(rep_lines) - 1:
            turns.append(ScriptedBuyer().reply(scenario, turns))
    return turns


def test_the_buyer_opens_with_the_opening_line() -> None:
    assert ScriptedBuyer().reply(PRICE, []) == Turn("buyer", PRICE.opening_line)


def test_same_turns_give_the_same_reply_from_any_buyer_instance() -> None:
    turns = _turns("That's fair. What's the 130 being compared against?", "I understand. What else matters?")

    replies = {ScriptedBuyer().reply(PRICE, turns) for _ in range(3)}
    buyer = ScriptedBuyer()

    assert len(replies) == 1
    assert buyer.reply(PRICE, turns) == buyer.reply(PRICE, list(turns)) == replies.pop()


def test_the_beat_depends_on_what_the_rep_just_did() -> None:
    discount = ScriptedBuyer().reply(PRICE, _turns("Okay, I can knock 15% off.")).text
    question = ScriptedBuyer().reply(PRICE, _turns("What's the 130 being compared against?")).text

    assert discount != question
    assert discount.startswith("So there was room in the 186")
    assert question.startswith("The 130 is basically the routing line")  # what the buyer knows about the 130


def test_a_beat_is_not_used_twice() -> None:
    scenario = SCENARIOS["discovery-impact"]
    lines = ["Walk me through the last week of the month?", "And who else is involved?"]
    turns = _turns(*lines, scenario=scenario)

    reply = ScriptedBuyer().reply(scenario, turns).text

    assert reply not in [turn.text for turn in turns if turn.role == "buyer"]


def test_empty_turns_get_a_redirect_and_cost_patience_until_the_buyer_walks_away() -> None:
    scenario = SCENARIOS["active-listening"]
    lunch = ScriptedBuyer().reply(scenario, _turns("What did you have for lunch today?", scenario=scenario)).text
    turns = _turns("Okay.", "Sure.", "Right.", scenario=scenario)
    turns.append(ScriptedBuyer().reply(scenario, turns))
    said = [t.text for t in turns if t.role == "buyer"][1:]

    assert lunch in {b.line for b in scenario.beats if b.when == "off_topic"}

    assert len(set(said)) == len(said), said  # no line twice
    assert all(line in {b.line for b in scenario.beats if b.when in ("off_topic", "impatient")} for line in said)
    assert said[-1] == next(b.line for b in scenario.beats if b.when == "impatient" and b.closes)
    assert roleplay_over(scenario, turns)


def test_a_question_about_something_the_buyer_knows_gets_that_fact() -> None:
    reply = ScriptedBuyer().reply(PRICE, _turns("How many trucks are we talking about across the fleet?")).text

    assert reply.startswith("Six hundred trucks")


def test_a_second_discount_gets_pushback_and_costs_trust() -> None:
    turns = _turns("That's fair. What's the 130 compared against?", "Okay, I can do 10% off.", "Fine, 20% then.")
    replies = [t.text for t in turns if t.role == "buyer"][2:] + [ScriptedBuyer().reply(PRICE, turns).text]

    assert all(line in {b.line for b in PRICE.beats if b.when == "discount"} for line in replies), replies
    assert buyer_meters(PRICE, turns).trust < buyer_meters(PRICE, turns[:3]).trust


def test_no_buyer_line_repeats_in_any_shipped_scenario_however_long_the_rep_goes_on() -> None:
    for scenario in SCENARIOS.values():
        turns = [Turn("buyer", scenario.opening_line)]
        for line in ["What's driving that?", "Okay, I can do 10% off.", "Tell me more.", "Sure.", "Why?",
                     "Can we book Thursday at 2pm?", "What else?", "Interesting."] * 2:
            turns.append(Turn("rep", line))
            turns.append(ScriptedBuyer().reply(scenario, turns))
            if roleplay_over(scenario, turns):
                break
        said = [t.text for t in turns if t.role == "buyer"]
        assert len(set(said)) == len(said), (scenario.id, said)


def test_a_premature_close_gets_pushback_and_an_earned_one_closes() -> None:
    early = next_beat(PRICE, _turns("Can we book time with your CFO on Thursday?"))
    earned = next_beat(
        PRICE,
        _turns(
            "That's fair. What's the 130 being compared against?",
            "I understand. Deadhead cost you $2.1M last year, so a 10% cut is $210,000 a year.",
            "Can we book time with your CFO on Thursday?",
        ),
    )

    assert early is not None and early.when == "next_step" and not early.closes
    assert earned is not None and earned.when == "next_step" and earned.closes and earned.min_trust > 0


def test_the_buyer_runs_out_of_patience_with_feature_dumps() -> None:
    turns = _turns(FEATURE_DUMP, FEATURE_DUMP)

    beat = next_beat(PRICE, turns)

    assert buyer_meters(PRICE, turns).impatient
    assert beat is not None and beat.when == "impatient" and beat.closes
    assert roleplay_over(PRICE, [*turns, ScriptedBuyer().reply(PRICE, turns)])


def test_meters_rise_with_good_moves_and_fall_with_pitching_and_discounts() -> None:
    start = buyer_meters(PRICE, [])
    good = buyer_meters(PRICE, _turns("I hear you. What's driving the 130? Deadhead cost you $2.1M."))
    bad = buyer_meters(PRICE, _turns(FEATURE_DUMP + " And I can knock 15% off."))

    assert good.trust > start.trust and good.patience == start.patience
    assert bad.trust < start.trust and bad.patience < start.patience


def test_reply_refuses_when_the_buyer_has_already_answered() -> None:
    turns = _turns("What's the 130 compared against?")
    turns.append(ScriptedBuyer().reply(PRICE, turns))

    with pytest.raises(ValueError, match="already answered"):
        ScriptedBuyer().reply(PRICE, turns)


def _exchanges(count: int, *then: Turn) -> list[Turn]:
    return [
        Turn("buyer", "Hi."),
        *[Turn(role, "Hm.") for _ in range(count) for role in ("rep", "buyer")],
        *then,
    ]


@pytest.mark.parametrize(
    ("turns", "over"),
    [
        (_exchanges(0, Turn("rep", "What matters most?")), False),
        (_exchanges(0, Turn("rep", "done")), True),
        (_exchanges(2, Turn("rep", "Stop.")), True),
        (_exchanges(0, Turn("rep", "Let's stop and think about the budget.")), False),
        (_exchanges(0, Turn("rep", "Hm."), Turn("buyer", "I've got to run.", ends=True)), True),
        (_exchanges(0, Turn("rep", "Hm."), Turn("buyer", PRICE.beats[0].line)), False),  # said, but not ending
        (_exchanges(5), False),
        (_exchanges(5, Turn("rep", "One more thing.")), False),
        (_exchanges(6), True),
        (_exchanges(6, Turn("rep", "One more thing.")), True),
    ],
)
def test_roleplay_over(turns: list[Turn], over: bool) -> None:
    assert PRICE.max_turns == 6
    assert roleplay_over(PRICE, turns) is over


@pytest.mark.parametrize("scenario_id", sorted(TRANSCRIPTS))
def test_a_strong_rep_wins_the_buyer_over_and_a_weak_one_does_not(scenario_id: str) -> None:
    scenario = SCENARIOS[scenario_id]
    won_over = {beat.line for beat in scenario.beats if beat.closes and beat.min_trust > 0}

    def play(lines: list[str]) -> list[Turn]:
        turns = [ScriptedBuyer().reply(scenario, [])]
        for line in lines:
            turns.append(Turn("rep", line))
            turns.append(ScriptedBuyer().reply(scenario, turns))
            if roleplay_over(scenario, turns):
                break
        return turns

    strong, weak = play(TRANSCRIPTS[scenario_id]["strong"]), play(TRANSCRIPTS[scenario_id]["weak"])

    assert strong[-1].text in won_over and roleplay_over(scenario, strong)
    assert not won_over & {turn.text for turn in weak if turn.role == "buyer"}
