"""The App Home tab: the rep's focus and Start practice; the manager's approvals, heatmap and coverage."""

from __future__ import annotations

import copy

from bot.slack import ids
from tests.conftest import MANAGER, REP, TEST_CONFIG, low_calls, scored_call


def _home(harness, user: str) -> dict:
    harness.slack.event({"type": "app_home_opened", "user": user, "tab": "home"})
    return harness.standin.wait_for(lambda: harness.standin.views.get(user))


def _text(view: dict) -> str:
    return " ".join((b.get("text") or {}).get("text", "") for b in view["blocks"]) + " ".join(
        str(b.get("elements", "")) for b in view["blocks"])


def test_a_manager_approves_from_home_and_the_rep_starts_from_home(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    manager_home = _home(harness, MANAGER)
    assert "Waiting for you (1)" in _text(manager_home) and "42 → 51 → 38" in _text(manager_home)
    harness.slack.click_home(manager_home, ids.APPROVE, user=MANAGER)
    harness.standin.wait_for(lambda: approval.get("updated"))  # the channel message says who decided
    assert f"Approved by <@{MANAGER}>" in str(approval["blocks"])
    rep_home = harness.standin.wait_for(
        lambda: (lambda v: v if v and "Start practice" in _text(v) else None)(harness.standin.views.get(REP)))
    assert "Your focus skill:* Objection handling" in _text(rep_home)
    harness.slack.click_home(rep_home, ids.HOME_START, user=REP)
    root = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages_in(REP)
                                                 if m["text"].startswith("Practice: ")), None))
    harness.standin.wait_for(lambda: len(harness.thread(root)) >= 2)


def test_the_heatmap_pages_through_a_large_team(start_app):
    config = copy.deepcopy(TEST_CONFIG)
    config["teams"][0]["reps"] = [f"U0REP{i:03d}" for i in range(25)]
    harness = start_app(config=config)
    harness.send_calls([scored_call(f"c{i}", 30 + 2 * i, rep=f"U0REP{i:03d}") for i in range(25)])
    view = _home(harness, MANAGER)
    assert "page 1 of 3" in _text(view) and "<@U0REP000>" in _text(view) and "<@U0REP010>" not in _text(view)
    assert len(view["blocks"]) <= 100
    harness.slack.click_home(view, ids.HOME_PAGE, user=MANAGER)
    second = harness.standin.wait_for(
        lambda: (lambda v: v if "page 2 of 3" in _text(v) else None)(harness.standin.views[MANAGER]))
    assert "<@U0REP010>" in _text(second)
