"""The LLM buyer against a fake OpenAI-compatible server: in character, and a scripted turn whenever it fails."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bot.practice.llm_buyer import LLMBuyer
from bot.practice.roleplay import ScriptedBuyer, roleplay_over
from bot.practice.scenarios import load_scenarios
from bot.practice.transcript import Turn
from tests.fake_openai import Answer, FakeOpenAI, echo_last_user, error, reply, reply_json, system_prompt

PRICE = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")["price-objection"]
PRIORITIES = ["Finance teams want payback inside a year before they sign anything new."]
TURNS = [
    Turn("buyer", PRICE.opening_line),
    Turn("rep", "That's fair, it's a real jump. What is the 130 being compared against?"),
    Turn("buyer", "The 128 is what's in the budget for routing."),
    Turn("rep", "I'm sure we can knock 15% off if you sign this week."),
]


def said(line: str, *, ends: bool = False, delay: float = 0.0) -> Answer:
    """The model's structured reply: the buyer's line and whether it ends the call."""
    return reply_json({"line": line, "ends_call": ends}, delay=delay)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _buyer(fake: FakeOpenAI, *, timeout_s: float = 5) -> LLMBuyer:
    client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=10)
    return LLMBuyer(client, "buyer-model", fallback=ScriptedBuyer(), priorities=PRIORITIES, timeout_s=timeout_s)


def test_buyer_replies_in_character_to_what_the_rep_said(fake: FakeOpenAI) -> None:
    fake.script(said("So there was room in the 186 all along? Then what else is padded?"))

    line = _buyer(fake).reply(PRICE, TURNS)

    assert line == Turn("buyer", "So there was room in the 186 all along? Then what else is padded?")
    [request] = fake.requests
    assert request["model"] == "buyer-model"
    roles = [message["role"] for message in request["messages"]]
    assert roles == ["system", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in request["messages"][1:]] == [turn.text for turn in TURNS]
    system = system_prompt(request)
    persona = PRICE.persona
    for fact in (persona.name, persona.role, persona.company, persona.temperament, *persona.hidden_concerns):
        assert fact in system
    assert PRICE.context in system and PRIORITIES[0] in system
    assert "never say or hint that this is" in system
    rubric_text = [text for c in PRICE.rubric for text in (c.label, *c.levels.values())]
    assert not [text for text in rubric_text if text.lower() in system.lower()]
    assert PRICE.goal not in system and "rubric" not in system.lower()


def test_buyer_reacts_to_the_last_rep_turn(fake: FakeOpenAI) -> None:
    fake.always(lambda request: {"line": echo_last_user(request), "ends_call": False})
    assert _buyer(fake).reply(PRICE, TURNS).text == f"You said: {TURNS[-1].text}"


def test_a_roleplay_opened_with_the_buyers_real_words_is_what_the_model_is_told_it_said(fake: FakeOpenAI) -> None:
    """Practising the real moment: the roleplay opened with the buyer's words from the rep's call, so the persona
    says it opened with those, not with the scenario's stock line the rep never saw."""
    fake.script(said("Honestly? The renewal is the problem, not you."))
    real = "We love the product, but 186 a seat is not happening this year."
    _buyer(fake).reply(PRICE, [Turn("buyer", real), Turn("rep", "What would have to be true for it to happen?")])
    system = system_prompt(fake.requests[0])
    assert f"You opened the call with: {real}" in system and PRICE.opening_line not in system


def test_buyer_opening_line_needs_no_model(fake: FakeOpenAI) -> None:
    assert _buyer(fake).reply(PRICE, []) == Turn("buyer", PRICE.opening_line)
    assert fake.requests == []


def test_a_rambling_reply_is_cut_to_three_sentences(fake: FakeOpenAI) -> None:
    fake.script(said('"Fine. Noted. Go on. But also this. And that."'))
    assert _buyer(fake).reply(PRICE, TURNS).text == "Fine. Noted. Go on."


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(said("Too late.", delay=3), id="slow model"),
        pytest.param(error(500), id="500"),
        pytest.param(error(429), id="429"),
        pytest.param(said("  "), id="empty reply"),
        pytest.param(reply(None), id="no content"),
        pytest.param(reply("Fine, walk me through it."), id="prose, not the structured reply"),
        pytest.param(reply_json({"line": "Fine."}), id="no end signal"),
    ],
)
def test_a_failed_turn_is_answered_by_the_scripted_buyer(
    fake: FakeOpenAI, failure: Answer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(failure)
    started = time.monotonic()

    with caplog.at_level(logging.WARNING, logger="bot.practice.llm_buyer"):
        line = _buyer(fake, timeout_s=0.5).reply(PRICE, TURNS)

    assert line == ScriptedBuyer().reply(PRICE, TURNS)
    assert time.monotonic() - started < 2.5
    assert len(fake.requests) == 1, "the fallback is the recovery, not a retry"
    assert "scripted buyer answers this turn" in caplog.text


def test_the_next_turn_goes_back_to_the_model(fake: FakeOpenAI) -> None:
    fake.script(error(500), said("Fine, walk me through the deadhead math."))
    buyer = _buyer(fake)
    assert buyer.reply(PRICE, TURNS) == ScriptedBuyer().reply(PRICE, TURNS)
    assert buyer.reply(PRICE, TURNS).text == "Fine, walk me through the deadhead math."


def test_the_model_ends_the_call_by_saying_so_not_by_quoting_the_script(fake: FakeOpenAI) -> None:
    closing = next(beat.line for beat in PRICE.beats if beat.closes and beat.min_trust)
    fake.script(said("Alright, send me the one-pager and come to Thursday's review.", ends=True), said(closing))

    ends, goes_on = _buyer(fake).reply(PRICE, TURNS), _buyer(fake).reply(PRICE, TURNS)

    assert ends.ends and roleplay_over(PRICE, [*TURNS, ends])
    assert not goes_on.ends and not roleplay_over(PRICE, [*TURNS, goes_on])  # the script's words end nothing
    schema = fake.requests[0]["response_format"]["json_schema"]
    assert schema["strict"] is True and schema["schema"]["required"] == ["line", "ends_call"]
