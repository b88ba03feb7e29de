"""Signals end to end: metric rules from any source, one focus skill, evidence, budget, working hours, unmatched."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bot.nudges.unmatched import list_unmatched, rematch
from storage.models import Nudge, OutboxMessage, Signal
from tests.conftest import APPROVALS, REP, TEST_CONFIG, low_calls, scored_call

OVER_TALKING = {"over_talking": {"metric": "talk_ratio", "above": 0.65, "consecutive_calls": 3,
                                 "label": "Talking too much", "scenario": "active-listening"}}


def _config(**changes) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    config.update(changes)
    return config


def _text(message: dict) -> str:
    return " ".join(b.get("text", {}).get("text", "") or str(b.get("elements", "")) for b in message["blocks"])


def _gong_body(i: int, talk_ratio_percent: float) -> dict:
    started = (datetime.now(UTC) - timedelta(days=5 - i)).isoformat()
    return {"isTest": False, "callData": {
        "metaData": {"id": f"77823422740259378{i}", "started": started, "duration": 1834, "title": f"Acme #{i}",
                     "url": f"https://app.gong.io/call?id=77823422740259378{i}", "primaryUserId": "2345"},
        "parties": [{"userId": "2345", "emailAddress": "alex@example.com", "affiliation": "Internal"},
                    {"emailAddress": "buyer@acme.com", "affiliation": "External"}],
        "interaction": {"interactionStats": [{"name": "Talk Ratio", "value": talk_ratio_percent}]},
    }}


def _generic(i: int, talk_ratio: float) -> dict:
    call = scored_call(f"g-{i}", 80, days_ago=5 - i, rep="sam@example.com")
    call["metrics"] = {"talk_ratio": talk_ratio}
    return call


def _nudges(harness, count: int) -> list[tuple[str, str]]:
    """(criterion/scenario, the values line of its approval message) for each nudge, oldest first."""
    messages = harness.standin.wait_for(lambda: (lambda m: m if len(m) >= count else None)(
        harness.standin.messages_in(APPROVALS)))
    with harness.app.coach.db.session() as session:
        nudges = session.exec(select(Nudge).order_by(Nudge.id)).all()
    return [(f"{n.criterion}/{n.scenario_id}", _text(m).split("\n")[1]) for n, m in zip(nudges, messages, strict=False)]


def test_a_gong_body_and_a_generic_one_for_the_same_calls_make_the_same_nudge(start_app):
    harness = start_app(config=_config(metric_rules=OVER_TALKING))
    for i in range(3):
        assert harness.send_calls(_gong_body(i, 72)).status_code == 202      # Alex, through Gong
        assert harness.send_calls(_generic(i, 0.72)).status_code == 202      # Sam, the generic format
    from_gong, generic = _nudges(harness, 2)
    assert from_gong == generic
    assert from_gong[0] == "over_talking/active-listening" and "72% → 72% → 72%" in from_gong[1]


def test_metrics_are_computed_from_a_transcript_when_the_source_gives_none(start_app):
    harness = start_app(config=_config(metric_rules=OVER_TALKING))
    for i in range(3):
        call = scored_call(f"t-{i}", 80, days_ago=5 - i)
        call["transcript"] = [
            {"speaker": "rep", "start_s": 0, "end_s": 80, "text": "Let me walk you through everything we do."},
            {"speaker": "customer", "start_s": 81, "end_s": 101, "text": "Okay."},
        ]
        harness.send_calls(call)
    [summary] = _nudges(harness, 1)
    assert summary[0] == "over_talking/active-listening" and "80% → 80% → 80%" in summary[1]


def test_one_focus_skill_the_other_waits_and_is_shown(harness):
    calls = low_calls()
    for call in calls:
        call["scores"].append({"criterion": "discovery", "score": 30, "max": 100})
    harness.send_calls(calls)
    approval = harness.approval_message()
    assert "Objection handling" in _text(approval)          # weight 3 beats discovery's 2
    assert "waiting (one focus skill at a time): Discovery" in _text(approval)
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(Nudge)).all()) == 1
        waiting = session.exec(select(Signal).where(Signal.criterion == "discovery")).one()
    assert waiting.status == "waiting" and "objection handling came first" in waiting.wait_reason


def test_a_new_signal_on_the_open_nudge_adds_its_evidence(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.send_calls([scored_call("c-4", 35, days_ago=0.5, quote="Fine, 25% off, final offer")])
    harness.standin.wait_for(lambda: approval.get("updated"))
    assert "Fine, 25% off, final offer" in _text(approval) and "35" in _text(approval)
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(Nudge)).all()) == 1
        assert [s.status for s in session.exec(select(Signal).order_by(Signal.id))] == ["nudged", "attached"]


def test_the_weekly_cap_holds_back_a_second_nudge(start_app):
    harness = start_app(config=_config(budget={**TEST_CONFIG["budget"], "weekly_cap": 1}))
    harness.send_calls(low_calls())
    harness.skip(harness.approval_message())
    harness.standin.wait_for(lambda: harness.approval_message().get("updated"))
    harness.send_calls([scored_call("c-4", 30, days_ago=0.5)])
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(Nudge)).all()) == 1
        latest = session.exec(select(Signal).order_by(Signal.id.desc())).first()
    assert latest.status == "waiting" and "weekly cap of 1" in latest.wait_reason


def test_an_approval_made_out_of_hours_waits_for_the_teams_working_day(start_app, standin):
    quiet = {"working_days": ["mon"], "working_hours": {"start": "09:00", "end": "09:01"}}
    harness = start_app(config=_config(budget=quiet))
    harness.send_calls(low_calls())
    harness.app.sender.drain()
    with harness.app.coach.db.session() as session:
        row = session.exec(select(OutboxMessage)).one()
    assert standin.messages_in(APPROVALS) == [] and row.next_attempt_at > datetime.now(UTC)
    local = row.next_attempt_at.astimezone(__import__("zoneinfo").ZoneInfo("America/Los_Angeles"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)


def test_calls_of_an_unconfigured_rep_wait_and_are_coached_once_configured(start_app, standin):
    harness = start_app()
    answer = harness.send_calls(low_calls(rep="U0NEW"))
    assert answer.json() == {"accepted": 3, "duplicates": 0}
    [waiting] = list_unmatched(harness.app.coach)
    assert (waiting.rep, waiting.calls) == ("U0NEW", 3) and "coach.yaml" in waiting.reason

    config = _config()
    config["teams"][0]["reps"].append("U0NEW")
    later = start_app(config=config, background=False)
    assert rematch(later.app.coach) == 3  # `rehearse serve` runs this at start-up and hourly
    later.app.sender.drain()
    assert "<@U0NEW>" in _text(later.approval_message())
    assert list_unmatched(later.app.coach) == []


def test_an_unknown_criterion_is_stored_and_ignored(harness):
    calls = low_calls()
    for call in calls:
        call["scores"][0]["criterion"] = "rapport_building"
    assert harness.send_calls(calls).json() == {"accepted": 3, "duplicates": 0}
    harness.app.sender.drain()
    assert harness.standin.messages_in(APPROVALS) == []
    assert REP  # the rep is matched; only the criterion is unknown
