"""`rehearse demo`: the whole loop, offline, against a local Slack stand-in, printed as a transcript."""

from __future__ import annotations

import json
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from sqlmodel import select

from bot.app import BackgroundServer, create_app
from bot.config import parse_config
from bot.demo.driver import SlackDriver, webhook_headers
from bot.demo.slack_standin import SlackStandIn
from bot.settings import Settings
from bot.slack import ids
from storage.models import FollowUp

MANAGER, REP, APPROVALS = "U0MARIA", "U0ALEX", "C0APPROVALS"
NAMES = {MANAGER: "Maria (manager)", REP: "Alex (rep)", "bot": "Rehearse"}
SIGNING_SECRET, WEBHOOK_SECRET = "demo-signing-secret", "demo-webhook-secret"

DEMO_CONFIG = {
    "teams": [{"id": "west", "name": "West AEs", "managers": [MANAGER], "approvals_channel": APPROVALS,
               "digest_channel": "C0WEST", "timezone": "America/Los_Angeles", "reps": [REP]}],
    "criteria": {
        "objection_handling": {"label": "Objection handling", "weight": 3, "threshold": 60,
                               "consecutive_calls": 3, "scenario": "price-objection"},
        "discovery": {"label": "Discovery", "weight": 2, "scenario": "discovery-impact"},
    },
    # The demo runs whenever you run it; a real team keeps quiet hours (see coach.example.yaml).
    "budget": {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "working_hours": None},
}

REP_REPLIES = [
    "That's fair, and I appreciate you being straight with me. Before we talk numbers, what is the "
    "$128,000 tool leaving out that your ops team liked in the pilot?",
    "So if I understand it right, the real question is whether this pays back inside the fiscal year. "
    "Deadhead cost you $2.1M last year; if we take out even 5% that is $105,000, more than the $58,000 gap.",
    "I'd rather not cut the price, but I can show the payback math with your own numbers. Could we walk "
    "your CFO through it on Thursday at 2pm?",  # Dana agrees to the review: the call ends there, graded
]


def _calls(now: datetime) -> list[dict]:
    """Three calls where Alex gives ground on price: the signal the demo starts from."""
    quotes = ["I guess we could knock 20% off if that helps", "Let me see what discount I can get you",
              "Honestly the price is flexible, we can work something out"]
    return [{
        "call_id": f"demo-{i}", "source": "generic", "rep": REP,
        "started_at": (now - timedelta(days=6 - 2 * i)).isoformat(), "duration_s": 1800 + 60 * i,
        "title": f"Northwind Freight - pricing #{i + 1}", "call_type": "negotiation",
        "recording_url": f"https://ci.example.com/calls/demo-{i}",
        "scores": [{"criterion": "objection_handling", "score": s, "max": 100,
                    "evidence": [{"quote": quotes[i], "at_s": 754 + 30 * i}]},
                   {"criterion": "discovery", "score": 72, "max": 100}],
    } for i, s in enumerate((42, 51, 38))]


SLACK_MARKUP = re.compile(r"<(?P<target>[^>|]+)(?:\|(?P<label>[^>]+))?>")


def readable(text: str) -> str:
    """Slack mrkdwn as a person reads it: mentions by name, dates by their fallback, links by label."""

    def swap(match: re.Match[str]) -> str:
        target, label = match["target"], match["label"]
        if target.startswith("@"):
            return "@" + NAMES.get(target[1:], target[1:]).split(" (")[0]
        if target.startswith("!date"):
            return label or target
        return f"{label} ({target})" if label else target

    return SLACK_MARKUP.sub(swap, text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain(message: dict) -> str:
    """A message as a reader sees it: section and context text, then its buttons."""
    parts, buttons = [], []
    for block in message.get("blocks") or []:
        if block.get("text", {}).get("text"):
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "button":
                buttons.append(f"[{element['text']['text']}]")
            elif element.get("text"):
                parts.append(element["text"])
    body = "\n".join(parts) or message.get("text", "")
    return readable(body + ("\n" + " ".join(buttons) if buttons else ""))


class Transcript:
    def __init__(self, console: Console, standin: SlackStandIn):
        self.console, self.standin, self.shown = console, standin, 0
        self.edits_shown: set[str] = set()

    def say(self, where: str, who: str, text: str) -> None:
        self.console.print(f"[bold cyan]{where}[/] [bold]{who}[/]", highlight=False)
        self.console.print("  " + text.replace("\n", "\n  "), markup=False, highlight=False)

    def catch_up(self) -> None:
        """Print what the bot posted since last time, and messages it edited."""
        for message in self.standin.messages[self.shown:]:
            self.say(self._where(message), NAMES["bot"], plain(message))
            if message.get("updated"):
                self.edits_shown.add(message["ts"])
        for message in self.standin.messages[:self.shown]:
            if message.get("updated") and message["ts"] not in self.edits_shown:
                self.edits_shown.add(message["ts"])
                self.say(self._where(message) + " (edited)", NAMES["bot"], plain(message).splitlines()[-1])
        self.shown = len(self.standin.messages)

    @staticmethod
    def _where(message: dict) -> str:
        where = "DM" if message["channel"].startswith("D") else f"#{message['channel']}"
        if message.get("thread_ts"):
            where += " › thread"
        if message.get("ephemeral"):
            where += f" (only {NAMES.get(message.get('user'), message.get('user'))} sees this)"
        return where

    def wait(self, predicate, what: str):  # noqa: ANN001, ANN201
        found = self.standin.wait_for(predicate, timeout=10)
        self.catch_up()
        return found


def run_demo(console: Console) -> None:
    started = time.monotonic()
    users = [{"id": MANAGER, "name": "maria", "real_name": "Maria Lopez", "email": "maria@example.com"},
             {"id": REP, "name": "alex", "real_name": "Alex Kim", "email": "alex@example.com"}]
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(users=users) as standin:
        settings = Settings(SLACK_BOT_TOKEN=standin.bot_token, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                            SLACK_API_URL=standin.base_url, DATABASE_URL=f"sqlite:///{Path(tmp) / 'demo.db'}",
                            REHEARSE_WEBHOOK_SECRET=WEBHOOK_SECRET, REHEARSE_OUTBOX_SWEEP_SECONDS=0.5)
        app = create_app(settings, config=parse_config(DEMO_CONFIG))
        app.start()
        try:
            with BackgroundServer(app) as server, httpx.Client(timeout=10) as http:
                _play(console, Transcript(console, standin), standin, app, server.url, http)
        finally:
            app.stop()
    console.print(f"\n[green]Demo finished in {time.monotonic() - started:.1f} s.[/]")


def _play(console: Console, show: Transcript, standin: SlackStandIn, app, url: str,  # noqa: ANN001
          http: httpx.Client) -> None:
    slack = SlackDriver(url, SIGNING_SECRET, http)
    now = datetime.now(UTC)
    console.rule("1. The call scorer sends three scored calls")
    body = json.dumps(_calls(now)).encode()
    answer = http.post(f"{url}/webhooks/calls", content=body, headers=webhook_headers(WEBHOOK_SECRET, body))
    show.say("POST /webhooks/calls", "scorer", f"{answer.status_code} {answer.text}")

    console.rule("2. Rehearse asks the manager")
    approval = show.wait(lambda: next((m for m in standin.messages_in(APPROVALS)), None), "approval")
    show.say(f"#{APPROVALS}", NAMES[MANAGER], "clicks [Approve]")
    slack.click(approval, ids.APPROVE, user=MANAGER)
    show.wait(lambda: approval.get("updated"), "decision shown")
    invite = show.wait(lambda: next((m for m in standin.messages_in(REP) if m.get("blocks")), None), "DM")

    console.rule("3. The rep practises in the DM thread")
    show.say("DM", NAMES[REP], "clicks [Start practice]")
    slack.click(invite, ids.START_PRACTICE, user=REP)
    thread = invite["ts"]
    show.wait(lambda: len(standin.messages_in(invite["channel"], thread_ts=thread)) >= 2 and invite.get("updated"),
              "opening line")
    for reply in REP_REPLIES:
        before = len(standin.messages_in(invite["channel"], thread_ts=thread))
        show.say("DM › thread", NAMES[REP], reply)
        slack.dm(user=REP, channel=invite["channel"], text=reply, thread_ts=thread)
        show.wait(lambda b=before: len(said := standin.messages_in(invite["channel"], thread_ts=thread)) > b
                  and "typing" not in said[-1]["text"], "reply")  # the buyer's answer, not "typing…"
    show.wait(lambda: any(m["text"].startswith("Score") for m in standin.messages_in(invite["channel"],
                                                                                    thread_ts=thread)), "grade")

    console.rule("4. Follow-ups on the calendar")
    with app.coach.db.session() as session:
        followups = list(session.exec(select(FollowUp).order_by(FollowUp.due_at)))
    for f in followups:
        show.say("schedule", "Rehearse", f"follow-up {f.step}: {f.due_at:%Y-%m-%d %H:%M} UTC ({f.status})")
    if followups:
        show.say("jobs", "Rehearse", f"running due jobs as of {followups[0].due_at:%Y-%m-%d} …")
        app.run_due_jobs(followups[0].due_at + timedelta(minutes=1))
        show.wait(lambda: any("Refresher" in m["text"] for m in standin.messages_in(REP)), "refresher")
