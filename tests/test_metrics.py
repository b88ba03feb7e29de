"""Conversation metrics from diarized turns: hand-checked tables and properties."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.nudges.adapters import TranscriptTurn
from bot.nudges.metrics import ConversationMetrics, conversation_metrics


def t(speaker: str, start: float, end: float, text: str = "") -> TranscriptTurn:
    return TranscriptTurn(speaker=speaker, start_s=start, end_s=end, text=text)


def metrics(*turns: TranscriptTurn) -> ConversationMetrics:
    return conversation_metrics(turns)


@pytest.mark.parametrize(
    ("turns", "ratio"),
    [
        ([t("rep", 0, 60), t("customer", 60, 100)], 0.6),
        ([t("rep", 0, 10), t("rep", 5, 15), t("customer", 15, 25)], 0.6),  # the rep's own overlap counts once
        ([t("rep", 0, 10), t("customer", 100, 110)], 0.5),  # silence is not listening
        ([t("rep", 0, 10), t("customer", 5, 15)], 0.5),  # crosstalk counts for both sides
        ([t("customer", 0, 10), t("buyer", 5, 15), t("rep", 15, 20)], 0.25),  # the other side is one side
        ([t("rep", 0, 10)], 1.0),
        ([], None),
        ([t("rep", 5, 5), t("customer", 9, 3)], None),  # zero-length and backwards turns are skipped
    ],
)
def test_talk_ratio(turns, ratio):
    assert metrics(*turns).talk_ratio == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("turns", "monologue", "story"),
    [
        ([t("rep", 0, 10), t("rep", 11.4, 20)], 20, 0),  # a 1.4 s pause merges
        ([t("rep", 0, 10), t("rep", 11.5, 20)], 10, 0),  # a 1.5 s pause splits
        ([t("rep", 0, 30), t("customer", 30, 31.9, "sorry"), t("rep", 31.9, 60)], 60, 1.9),  # a cough
        ([t("rep", 0, 30), t("customer", 31, 32.5), t("rep", 33.5, 60)], 60, 1.5),  # 1 s silence either side
        ([t("rep", 0, 30), t("customer", 29, 30.5), t("rep", 30.5, 60)], 60, 1.5),  # backchannel over the rep
        ([t("rep", 0, 30), t("customer", 30, 33, "wait, what?"), t("rep", 33, 60)], 30, 3),  # an interjection
        ([t("rep", 0, 30), t("customer", 30, 32), t("rep", 32, 60)], 30, 2),  # 2 s is no longer a backchannel
        ([t("rep", 0, 30), t("customer", 31, 31.5), t("rep", 33.2, 60)], 30, 0.5),  # 1.7 s silence after it
        ([t("customer", 0, 40), t("rep", 40, 41, "mm-hm"), t("buyer", 41, 70)], 1, 70),  # rep backchannel
        ([t("rep", 0, 10), t("rep", 0, 25)], 25, 0),
        ([], 0, 0),
    ],
)
def test_longest_monologue_and_customer_story(turns, monologue, story):
    result = metrics(*turns)
    assert result.longest_monologue_s == pytest.approx(monologue)
    assert result.longest_customer_story_s == pytest.approx(story)


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("What does your process look like?", True),
        ("How do you handle renewals today", True),  # no "?" from the transcriber, but an opener
        ("So, walk me through the last rollout.", True),
        ("Great. Could you share the deck with Priya", True),  # opener at the start of a later sentence
        ("Okay um tell me about the team", True),
        ("Is there anyone else involved?", True),
        ("We integrate with Salesforce.", False),
        ("Somehow it always works out.", False),
        ("Whatever works for you.", False),
        ("The question is why.", False),  # an opener word mid-sentence is not an opener
        ("", False),
    ],
)
def test_a_rep_turn_asks_a_question(text, asks):
    assert metrics(t("rep", 0, 5, text)).questions == int(asks)


def test_questions_count_rep_turns_only_once_each():
    turns = [
        t("rep", 0, 5, "What's the budget? And who signs?"),
        t("customer", 5, 10, "Why do you ask?"),
        t("rep", 10, 15, "Tell me about Q3."),
        t("rep", 15, 20, "We can help."),
    ]
    assert metrics(*turns).questions == 2


def test_patience_averages_positive_hand_offs_to_the_rep():
    turns = [
        t("customer", 0, 10), t("rep", 11, 20),  # 1 s
        t("customer", 20, 30), t("rep", 32, 40),  # 2 s
        t("customer", 39, 45), t("rep", 44.5, 50),  # the rep cut in: a negative pause, left out
        t("customer", 50, 55), t("rep", 55, 60),  # no pause, left out
        t("rep", 62, 63),  # the rep after the rep is no hand-off
        t("customer", 63, 70, "mm"), t("customer", 70, 72), t("rep", 75, 80),  # one turn split in two: 3 s
    ]
    assert metrics(*turns).patience_s == pytest.approx((1 + 2 + 3) / 3)


@pytest.mark.parametrize(
    "turns",
    [[t("rep", 0, 10)], [t("rep", 0, 10), t("customer", 12, 20)], [t("customer", 0, 10), t("rep", 8, 20)]],
)
def test_patience_is_none_without_a_positive_hand_off(turns):
    assert metrics(*turns).patience_s is None


CALL_BODY = [t("rep", 0, 300, "Thanks for the time today."), t("customer", 300, 540, "Sure, so our team...")]


@pytest.mark.parametrize(
    ("closing", "next_step"),
    [
        ([t("rep", 560, 580, "Let's book Thursday at 3pm.")], True),
        ([t("customer", 560, 570, "Tuesday at 2 works."), t("rep", 570, 600, "Great, I'll send an invite.")], True),
        ([t("rep", 540, 600, "So to recap the pain points... let\u2019s meet on the 14th")], True),  # runs into it
        ([t("rep", 560, 600, "I'll follow up with a calendar hold for March 3")], True),
        ([t("rep", 560, 600, "See you Tuesday.")], False),  # a date without a commitment
        ([t("rep", 560, 600, "I'll send the deck.")], False),  # a commitment without a date
        ([t("rep", 560, 600, "Thanks again for the time today, let's stay in touch.")], False),
        ([t("rep", 560, 600, "We grew at 20 percent, let's keep it up.")], False),  # "at 20" is not a time
        ([], False),
    ],
)
def test_next_step_in_the_last_tenth_of_the_call(closing, next_step):
    assert metrics(*CALL_BODY, *closing).next_step is next_step


def test_a_next_step_mentioned_early_in_the_call_only_does_not_count():
    turns = [
        t("rep", 0, 20, "Let's schedule the demo for next Tuesday at 2pm."),
        t("customer", 20, 500, "Sounds good. So about our current setup..."),
        t("rep", 500, 600, "Thanks, talk soon."),
    ]
    assert metrics(*turns).next_step is False


def test_as_dict_uses_the_stored_metric_keys_and_leaves_out_none():
    result = metrics(t("rep", 0, 30, "Why now?"), t("customer", 30, 60, "Let's book Friday."))
    assert result.as_dict() == {
        "talk_ratio": 0.5, "longest_monologue_s": 30.0, "longest_customer_story_s": 30.0,
        "questions": 1.0, "next_step": 1.0,
    }
    assert "talk_ratio" not in metrics().as_dict()


def test_malformed_turns_are_skipped():
    good = [t("rep", 0, 30, "How many seats?"), t("customer", 31, 60)]
    bad = [
        t("rep", 50, 40, "Why? Let's book Friday."),  # ends before it starts
        t("rep", 45, 45, "What?"),  # zero length
        SimpleNamespace(speaker="rep", start_s=math.nan, end_s=70.0, text="Who?"),
        SimpleNamespace(speaker="customer", start_s=0.0, end_s=math.inf, text=""),
    ]
    assert conversation_metrics([*good, *bad]) == conversation_metrics(good)


def test_rep_speakers_takes_speaker_ids():
    by_role = [t("rep", 0, 30, "What's blocking you?"), t("customer", 31, 60), t("rep", 62, 70)]
    by_id = [t({"rep": "SPEAKER_01"}.get(turn.speaker, "SPEAKER_00"), turn.start_s, turn.end_s, turn.text)
             for turn in by_role]
    assert conversation_metrics(by_id, rep_speakers=frozenset({"speaker_01"})) == conversation_metrics(by_role)
    assert metrics(t("Rep", 0, 10)).talk_ratio == 1.0  # speaker names are matched without case


# Properties. Times are tenths of a second, so the 1.5 s and 2 s boundaries come up often.
PHRASES = ["", "mm-hm", "How's the quarter going?", "what do you use today", "Let's book Tuesday at 2pm.",
           "I'll send an invite", "next week works", "Our platform integrates with everything."]
tenths = st.integers(0, 3000).map(lambda n: n / 10)


@st.composite
def calls(draw) -> list[TranscriptTurn]:
    turns = []
    for _ in range(draw(st.integers(0, 25))):
        start, length = draw(tenths), draw(st.integers(1, 400)) / 10
        speaker = draw(st.sampled_from(["rep", "customer", "buyer", "Jordan"]))
        turns.append(t(speaker, start, start + length, draw(st.sampled_from(PHRASES))))
    return turns


@given(calls())
def test_metrics_stay_in_range(turns):
    result = conversation_metrics(turns)
    span = max((x.end_s for x in turns), default=0) - min((x.start_s for x in turns), default=0)
    assert result.talk_ratio is None or 0 <= result.talk_ratio <= 1
    assert 0 <= result.longest_monologue_s <= span
    assert 0 <= result.longest_customer_story_s <= span
    assert result.patience_s is None or 0 < result.patience_s <= span
    assert 0 <= result.questions <= len(turns)


@given(calls(), st.data())
def test_splitting_a_turn_changes_no_timing_metric(turns, data):
    # `questions` counts turns, so one question turn cut in two may count twice or (mid-opener) not at all;
    # `next_step` matches words, and a cut can fall inside "tomorrow". Both are left out for that reason.
    assume(turns)
    i = data.draw(st.integers(0, len(turns) - 1))
    turn = turns[i]
    at = turn.start_s + data.draw(st.floats(0.01, 0.99)) * (turn.end_s - turn.start_s)
    assume(turn.start_s < at < turn.end_s)
    cut = data.draw(st.integers(0, len(turn.text)))
    pieces = [t(turn.speaker, turn.start_s, at, turn.text[:cut]), t(turn.speaker, at, turn.end_s, turn.text[cut:])]
    before, after = conversation_metrics(turns), conversation_metrics([*turns[:i], *pieces, *turns[i + 1:]])
    for name in ("talk_ratio", "longest_monologue_s", "longest_customer_story_s", "patience_s"):
        assert getattr(after, name) == getattr(before, name), name


@given(calls())
def test_swapping_the_sides_mirrors_the_ratio_and_swaps_monologue_with_story(turns):
    swapped = [t("customer" if x.speaker == "rep" else "rep", x.start_s, x.end_s, x.text) for x in turns]
    before, after = conversation_metrics(turns), conversation_metrics(swapped)
    if before.talk_ratio is None:
        assert after.talk_ratio is None
    else:
        assert after.talk_ratio == pytest.approx(1 - before.talk_ratio, abs=1e-12)
    assert after.longest_monologue_s == before.longest_customer_story_s
    assert after.longest_customer_story_s == before.longest_monologue_s
    assert after.next_step == before.next_step  # either side can name the next step


@given(calls(), st.randoms(use_true_random=False))
def test_the_order_of_the_turns_does_not_matter(turns, random):
    shuffled = list(turns)
    random.shuffle(shuffled)
    assert conversation_metrics(shuffled) == conversation_metrics(turns)
