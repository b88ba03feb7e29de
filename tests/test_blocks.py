"""Renderers stay inside Block Kit's limits whatever the scorer or the rep sends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.practice.feedback import Feedback, Point
from bot.slack import blocks

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _valid(message: dict) -> None:
    assert message["text"] and len(message["blocks"]) <= 50
    for block in Block.parse_all(message["blocks"]):
        block.to_dict()


def _card(**changes) -> blocks.ApprovalCard:
    quote = blocks.Quote("we can knock 20% off", 754, "Acme", "https://ci.example.com/1")
    base = {"nudge_id": 7, "rep_user": "U0ALEX", "criterion_label": "Objection handling", "values": ("42", "51"),
            "limit": "threshold 60", "scenario_title": "Hold the price", "scenario_summary": "Keep the price.",
            "quotes": (quote,)}
    return blocks.ApprovalCard(**{**base, **changes})


def test_huge_untrusted_text_is_clipped_not_rejected():
    card = _card(quotes=tuple(blocks.Quote("q" * 5000, 1, "T" * 500, "https://x.example.com/" + "p" * 2000)
                              for _ in range(30)), scenario_summary="s" * 5000, priority="p" * 5000,
                 waiting=tuple("w" * 300 for _ in range(40)))
    choices = [(f"scenario-{i}" + "x" * 200, "Title " * 30, i % 2 == 0) for i in range(300)]
    _valid(blocks.approval_message(card, choices=choices, current="scenario-2" + "x" * 200))
    _valid(blocks.decided_message(card, approved=False, decider="U0DANA", when=NOW, reason="r" * 5000))
    _valid(blocks.dispute_message(dispute_id=1, rep_user="U0ALEX", comment="c" * 5000, managers="<@U0DANA>"))
    point = Point("L" * 300, 3, "q" * 4000, "r" * 4000, "b" * 4000)
    _valid(blocks.feedback(score=50, passed=False, note=Feedback("v" * 5000, point, point), next_followups=[NOW] * 3,
                           previous=40, session_id=7))
    lines = [blocks.GradeLine("L" * 300, 3, ("e" * 4000,) * 3, "f" * 4000) for _ in range(80)]
    View(**blocks.grade_details(title="T" * 500, lines=lines)).to_dict()
    _valid(blocks.buyer_line("Dana", "<!channel> " + "b" * 5000))


def test_modals_fit_slacks_limits():
    for modal in (blocks.skip_modal(metadata="m" * 5000), blocks.dispute_modal(metadata="{}")):
        View(**modal).to_dict()


def test_the_validator_does_catch_an_oversized_section():
    with pytest.raises(SlackObjectFormationError):
        _valid({"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]})
