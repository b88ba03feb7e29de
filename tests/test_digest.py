"""The weekly digest: figures from a seeded database, the chart, Block Kit limits, one digest per week.

The clock reads Wed 2025-03-12; the digest reports on the week of Mon 2025-03-03 in America/Los_Angeles, which
runs from 2025-03-03 08:00 UTC (PST) to 2025-03-10 07:00 UTC (PDT, the clocks changed on Mar 9).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, date, datetime
from itertools import count
from pathlib import Path

import pytest
import slack_sdk
from slack_sdk.models.blocks import Block
from sqlmodel import select

from bot.coach import Coach
from bot.config import parse_config
from bot.nudges import digest
from bot.nudges.digest import DigestFigures, ManagerFigures
from bot.practice.grader import HeuristicGrader
from bot.practice.roleplay import ScriptedBuyer
from bot.practice.scenarios import load_scenarios
from bot.slack.digest_blocks import digest_message, manager_note
from bot.slack.directory import SlackDirectory
from storage.db import Database
from storage.models import (
    AuditEntry,
    Call,
    CallScore,
    Grade,
    Nudge,
    NudgeState,
    OutboxMessage,
    PracticeSession,
    Rep,
    Signal,
    Team,
)

NOW = datetime(2025, 3, 12, 17, 0, tzinfo=UTC)
MANAGER, ALEX, BEA, CAM, EVE = "U0DANA", "U0ALEX", "U0BEA", "U0CAM", "U0EVE"
DIGEST_CHANNEL = "C0DIGEST"
CONFIG = {
    "teams": [
        {"id": "west", "name": "West AEs", "managers": [MANAGER, "boss@example.com"], "approvals_channel": "C0APPR",
         "digest_channel": DIGEST_CHANNEL, "timezone": "America/Los_Angeles",
         "reps": [ALEX, BEA, CAM, "dee@example.com"]},
        {"id": "east", "managers": ["U0OTHER"], "approvals_channel": "C0EAST", "reps": [EVE]},
    ],
    "criteria": {
        "objection_handling": {"label": "Objection handling", "scenario": "price-objection"},
        "discovery": {"scenario": "discovery-impact"},
    },
    "priorities": [{"name": "Win on value", "criteria": ["objection_handling"]},
                   {"name": "Discovery first", "criteria": ["discovery"]}],
}
LABELS = {"objection_handling": "Objection handling", "discovery": "Discovery"}
PNG = b"\x89PNG\r\n\x1a\n"


def at(day: str, hour: int = 12, minute: int = 0) -> datetime:
    """A UTC moment in 2025: at("03-04", 9) is Mar 4 09:00 UTC."""
    month, dom = (int(p) for p in day.split("-"))
    return datetime(2025, month, dom, hour, minute, tzinfo=UTC)


class Seed:
    """Small builders over one session; ids come from the database."""

    def __init__(self, session) -> None:  # noqa: ANN001
        self.s = session
        self.n = count(1)

    def add(self, row):  # noqa: ANN001, ANN201
        self.s.add(row)
        self.s.flush()
        return row

    def rep(self, user: str | None, team: str = "west", email: str | None = None) -> Rep:
        return self.add(Rep(slack_user_id=user, email=email, team_id=team, created_at=at("01-01")))

    def call(self, rep: Rep, criterion: str, percent: float, when: datetime) -> Call:
        call = self.add(Call(source="generic", call_id=f"call-{next(self.n)}", rep_ref=rep.slack_user_id or "x",
                             rep_id=rep.id, started_at=when, received_at=when))
        self.add(CallScore(call_pk=call.id, criterion=criterion, score=percent, max=100))
        return call

    def signal(self, rep: Rep, criterion: str, when: datetime, *, status: str = "open",
               values: tuple[float, ...] = (40, 40, 40)) -> Signal:
        call = self.call(rep, criterion, values[-1], when)
        return self.add(Signal(rep_id=rep.id, criterion=criterion, rule="threshold", trigger_call_pk=call.id,
                               detail={"values": list(values)}, detected_at=when, status=status))

    def nudge(self, rep: Rep, criterion: str, created: datetime, state: NudgeState, *, signal: Signal | None = None,
              team: str = "west", **extra: object) -> Nudge:
        scenario = CONFIG["criteria"][criterion]["scenario"]
        return self.add(Nudge(rep_id=rep.id, team_id=team, signal_id=signal.id if signal else None,
                              criterion=criterion, scenario_id=scenario, state=state, created_at=created, **extra))

    def drill(self, rep: Rep, scenario: str, started: datetime, score: int | None, *,
              nudge: Nudge | None = None) -> PracticeSession:
        practice = self.add(PracticeSession(rep_id=rep.id, nudge_id=nudge.id if nudge else None, scenario_id=scenario,
                                            kind="nudge" if nudge else "on_demand", channel="D0DM",
                                            thread_ts=f"{next(self.n)}.000", started_at=started, active=False))
        if score is not None:
            self.add(Grade(session_id=practice.id, score=score, passed=score >= 70, criteria=[],
                           graded_at=started.replace(minute=30)))
        return practice


def seed(session) -> None:  # noqa: ANN001
    session.add(Team(id="west", name="West AEs", approvals_channel="C0APPR", digest_channel=DIGEST_CHANNEL,
                     timezone="America/Los_Angeles"))
    session.add(Team(id="east", name="east", approvals_channel="C0EAST"))
    session.flush()
    db = Seed(session)
    alex, bea, cam, dee = db.rep(ALEX), db.rep(BEA), db.rep(CAM), db.rep(None, email="dee@example.com")
    eve = db.rep(EVE, team="east")

    # Alex: a signal the week before, approved in the week (21 h), practised 48 h after the signal, 40 -> 70,
    # completed, then three live calls at 70 on average: improved.
    s_alex = db.signal(alex, "objection_handling", at("03-02"), status="nudged", values=(42, 51, 38))
    n_alex = db.nudge(alex, "objection_handling", at("03-02", 13), NudgeState.COMPLETED, signal=s_alex,
                      decided_by=MANAGER, decided_at=at("03-03", 10), completed_at=at("03-05", 13),
                      approval_channel="C0APPR")
    db.drill(alex, "price-objection", at("03-04"), 40, nudge=n_alex)
    db.drill(alex, "price-objection", at("03-05"), 70, nudge=n_alex)
    for day, percent in (("03-06", 70), ("03-07", 72), ("03-08", 68)):
        db.call(alex, "objection_handling", percent, at(day))
    # An older discovery nudge of Alex's that slipped on live calls (50 before, 30 after).
    s_old = db.signal(alex, "discovery", at("02-01"), status="nudged", values=(50, 50, 50))
    db.nudge(alex, "discovery", at("02-01", 13), NudgeState.COMPLETED, signal=s_old, completed_at=at("02-10"))
    for day in ("02-12", "02-14", "02-16"):
        db.call(alex, "discovery", 30, at(day))
    # Pending approval, made in the week.
    db.nudge(alex, "discovery", at("03-08"), NudgeState.PENDING_APPROVAL, approval_channel="C0APPR")

    # Bea: signal Mar 4 08:00, asked at once, decided 2 h after the ask, first practice 24 h after the signal.
    s_bea = db.signal(bea, "discovery", at("03-04", 8), status="nudged", values=(45, 42, 40))
    n_bea = db.nudge(bea, "discovery", at("03-04", 9), NudgeState.PRACTISING, signal=s_bea, decided_by=MANAGER,
                     decided_at=at("03-04", 12), approval_channel="C0APPR")
    session.add(AuditEntry(at=at("03-04", 10), actor="rehearse", action="manager_asked", subject=f"nudge:{n_bea.id}"))
    db.drill(bea, "discovery-impact", at("02-26"), 50)  # the week before: her first try
    db.drill(bea, "discovery-impact", at("03-05", 8), 55, nudge=n_bea)
    db.drill(bea, "price-objection", at("03-06"), 60)  # one try only: a gain of 0
    # Completed long ago with a single live call since: not enough calls for a transfer status.
    db.call(bea, "objection_handling", 60, at("02-21"))
    db.nudge(bea, "objection_handling", at("02-15"), NudgeState.COMPLETED, completed_at=at("02-20"))
    # An approval that expired in the week while waiting for the manager; a rep-first one that never asked.
    expired = db.nudge(bea, "objection_handling", at("03-03", 9), NudgeState.EXPIRED, approval_channel="C0APPR")
    quiet = db.nudge(bea, "objection_handling", at("02-20"), NudgeState.EXPIRED, policy="rep_first")
    for nudge in (expired, quiet):
        session.add(AuditEntry(at=at("03-06"), actor="rehearse", action="expired", subject=f"nudge:{nudge.id}"))

    # Cam: never nudged; first try the week before at 30, best in the week 80 (Sun Mar 9, 13:00 PDT); a 95 on
    # Monday Mar 10 belongs to the next week. Two open gaps.
    db.drill(cam, "price-objection", at("02-27"), 30)
    db.drill(cam, "price-objection", at("03-09", 20), 80)
    db.drill(cam, "price-objection", at("03-10", 8), 95)
    db.signal(cam, "discovery", at("03-06"), values=(45,))
    db.signal(cam, "objection_handling", at("03-07"), status="waiting", values=(50,))

    # Dee: no Slack id, never nudged; a drill a minute before the week began (Sun Mar 2, 23:59 PST).
    db.drill(dee, "price-objection", at("03-03", 7, 59), None)
    db.signal(dee, "discovery", at("03-08"), values=(35,))
    db.signal(dee, "discovery", at("03-11"), values=(20,))  # after the week

    # Another team: none of it counts for west.
    db.drill(eve, "price-objection", at("03-04"), 10)
    db.drill(eve, "price-objection", at("03-05"), 100)
    db.call(eve, "objection_handling", 100, at("03-05"))
    db.nudge(eve, "objection_handling", at("03-04"), NudgeState.PENDING_APPROVAL, team="east")


@pytest.fixture
def coach(database_url: str) -> Iterator[Coach]:
    db = Database(database_url)
    db.migrate()
    with db.session() as session:
        seed(session)
    coach = Coach(db=db, config=parse_config(CONFIG), scenarios=load_scenarios(Path("scenarios")),
                  buyer=ScriptedBuyer(), grader=HeuristicGrader(),
                  directory=SlackDirectory(slack_sdk.WebClient(base_url="http://127.0.0.1:9/api/")),
                  clock=lambda: NOW)
    yield coach
    coach.workers.shutdown()
    db.engine.dispose()


def test_weeks_are_local_mondays() -> None:
    assert digest.week_start(NOW, "America/Los_Angeles") == date(2025, 3, 10)
    assert digest.reported_week(NOW, "America/Los_Angeles") == date(2025, 3, 3)
    # Monday 06:00 UTC is still Sunday in Los Angeles.
    assert digest.week_start(at("03-10", 6), "America/Los_Angeles") == date(2025, 3, 3)
    assert digest.week_bounds(date(2025, 3, 3), "America/Los_Angeles") == (at("03-03", 8), at("03-10", 7))


@pytest.mark.parametrize(("values", "expected"), [([], None), ([3.0], 3.0), ([1.0, 5.0, 2.0], 2.0), ([1, 2], 1.5)])
def test_median(values: list[float], expected: float | None) -> None:
    assert digest.median(values) == expected


def test_coverage_of_an_empty_team_is_zero() -> None:
    assert digest.coverage(0, 0) == 0.0
    assert digest.coverage(3, 4) == 0.75


def test_figures_from_a_seeded_week(coach: Coach) -> None:
    with coach.db.reading() as session:
        figures = digest.digest_figures(session, coach, team_id="west", now=NOW)
    assert figures == DigestFigures(
        team_id="west", team_name="West AEs", week_start=date(2025, 3, 3),
        reps=4, reps_practised=3, coverage=0.75, sessions_completed=5,
        median_hours_signal_to_practice=36.0,  # Alex 48 h, Bea 24 h
        score_gain_by_skill={"discovery": 5.0, "objection_handling": pytest.approx(80 / 3)},  # Alex 30, Bea 0, Cam 50
        transfer_rate=0.5, transfer_counted=2,  # Alex improved, his old discovery nudge slipped; Bea's too few calls
        top_gaps=(("discovery", 2), ("objection_handling", 1)),
        pending_approvals=1, expired_approvals=1,
        nudges_made=3, strategy={"Win on value": 1, "Discovery first": 2},
        improvers=((CAM, 50.0), (ALEX, 30.0), (BEA, 5.0)),
    )


def test_manager_figures(coach: Coach) -> None:
    with coach.db.reading() as session:
        mine = digest.manager_figures(session, coach, team_id="west", manager=MANAGER, now=NOW)
    assert mine == ManagerFigures(manager=MANAGER, team_name="West AEs", week_start=date(2025, 3, 3), decided=2,
                                  median_hours_to_decide=11.5,  # Alex 21 h from creation, Bea 2 h from the ask
                                  pending_approvals=1, never_coached=(CAM, "dee@example.com"))


def test_weekly_averages_oldest_first(coach: Coach) -> None:
    with coach.db.reading() as session:
        averages = digest.weekly_averages(session, team_id="west", criteria=["objection_handling", "discovery"],
                                          now=NOW, timezone="America/Los_Angeles")
    assert averages == {
        "objection_handling": [None, None, None, None, None, 60.0, 38.0, 65.0],  # Mar 3 week: 70, 72, 68 and 50
        "discovery": [None, None, 50.0, None, 30.0, None, None, 40.0],
    }


def test_chart_is_a_png() -> None:
    png = digest.render_chart({"objection_handling": [None, 40, 55.5, 60, 62, None, 70, 71],
                               "discovery": [None] * 8}, LABELS)
    assert png.startswith(PNG)
    assert len(png) > 5_000
    assert digest.render_chart({}, LABELS).startswith(PNG)


def assert_valid_message(message: dict) -> None:
    assert message["text"]
    assert len(message["blocks"]) <= 50
    for block in Block.parse_all(message["blocks"]):
        block.to_dict()  # raises SlackObjectFormationError past a limit
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) < 3000


def test_digest_message_reads_with_units(coach: Coach) -> None:
    with coach.db.reading() as session:
        figures = digest.digest_figures(session, coach, team_id="west", now=NOW)
    message = digest_message(figures, LABELS)
    assert_valid_message(message)
    body = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] in ("section", "header"))
    assert "3 of 4 reps practised (75%)" in body
    assert "median 36.0 h" in body
    assert "Objection handling: +27 points" in body
    assert f"<@{CAM}>: +50 points" in body


def test_empty_week_says_what_to_do_next() -> None:
    empty = DigestFigures(team_id="t", team_name="T", week_start=date(2025, 3, 3), reps=2, reps_practised=0,
                          coverage=0.0, sessions_completed=0, median_hours_signal_to_practice=None,
                          score_gain_by_skill={}, transfer_rate=None, transfer_counted=0, top_gaps=(),
                          pending_approvals=2, expired_approvals=0, nudges_made=0, strategy={}, improvers=())
    message = digest_message(empty, LABELS)
    assert_valid_message(message)
    assert "No practice this week: approve the pending drills below or start one with `/drill`." in (
        message["blocks"][1]["text"]["text"])
    note = manager_note(ManagerFigures(manager=MANAGER, team_name="T", week_start=date(2025, 3, 3), decided=0,
                                       median_hours_to_decide=None, pending_approvals=0,
                                       never_coached=tuple(f"U0REP{i}" for i in range(40))))
    assert_valid_message(note)
    assert "and 20 more" in note["blocks"][1]["text"]["text"]


def test_post_digest_once_per_week(coach: Coach) -> None:
    assert digest.post_digest(coach, team_id="west", now=NOW) is True
    assert digest.post_digest(coach, team_id="west", now=at("03-16", 23)) is False  # Sun evening: same week
    with coach.db.reading() as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [(r.method, r.channel, r.dedupe_key) for r in rows] == [
        ("chat.postMessage", DIGEST_CHANNEL, "digest:west:2025-03-03"),
        ("files_upload_v2", DIGEST_CHANNEL, "digest:west:2025-03-03:chart"),
        ("chat.postMessage", MANAGER, "digest:west:2025-03-03:note:U0DANA"),  # the email manager gets no DM
    ]
    post, chart, note = rows
    assert post.payload["channel"] == DIGEST_CHANNEL
    assert_valid_message(post.payload)
    assert chart.anchor_id == post.id
    assert base64.b64decode(chart.payload["png_b64"]).startswith(PNG)
    assert chart.payload["filename"] == "rehearse-west-2025-03-03.png"
    assert chart.payload["title"].startswith("West AEs")
    assert_valid_message(note.payload)
    assert "median 11.5 h" in note.payload["text"]
    # The next week is a new digest.
    assert digest.post_digest(coach, team_id="west", now=at("03-17", 17)) is True


def test_rehearse_digest_posts_once_with_its_chart(start_app, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from bot.cli import cli
    from tests.conftest import low_calls

    harness = start_app()
    harness.send_calls(low_calls())
    harness.approval_message()
    config = tmp_path / "coach.yaml"
    config.write_text("teams:\n  - id: west\n    managers: [U0DANA]\n    approvals_channel: C0APPROVALS\n"
                      "    digest_channel: C0WEST\n    reps: [U0ALEX]\n"
                      "criteria:\n  objection_handling: {scenario: price-objection}\n")
    for name, value in {"REHEARSE_CONFIG": str(config), "DATABASE_URL": harness.app.settings.database_url,
                        "SLACK_BOT_TOKEN": harness.standin.bot_token,
                        "SLACK_API_URL": harness.standin.base_url}.items():
        monkeypatch.setenv(name, value)
    first = CliRunner().invoke(cli, ["digest", "--team", "west"])
    assert first.exit_code == 0 and "Digest posted." in first.output, first.output
    [post] = harness.standin.messages_in("C0WEST")[:1]
    chart = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages if m.get("files")), None))
    assert chart["thread_ts"] == post["ts"], "the chart goes in the digest's thread"
    [upload] = [f for f in harness.standin.files.values() if f.get("content")]
    assert upload["content"].startswith(b"\x89PNG\r\n\x1a\n")
    again = CliRunner().invoke(cli, ["digest", "--team", "west"])
    assert "already posted" in again.output
    assert len([m for m in harness.standin.messages_in("C0WEST") if not m.get("thread_ts")]) == 1
