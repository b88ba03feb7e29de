"""Plays Slack and the scorer against a running Rehearse: signed events, clicks, commands and webhooks.

Requests are signed exactly as Slack signs them (v0 HMAC of `v0:{ts}:{body}`), and clicks are built
from the blocks the bot actually posted.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0REHEARSE"
_ids = itertools.count(1)


def webhook_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """`X-Rehearse-Timestamp` and `X-Rehearse-Signature` for a scored-call webhook body."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Rehearse-Timestamp": ts, "X-Rehearse-Signature": f"v1={digest}",
            "Content-Type": "application/json"}


def find_button(message: dict, action_id: str) -> tuple[dict, str | None]:
    """The button with `action_id` in a posted message, and its block_id."""
    for block in message.get("blocks") or []:
        for element in [*block.get("elements", []), *([block["accessory"]] if "accessory" in block else [])]:
            if element.get("action_id") == action_id:
                return element, block.get("block_id")
    raise LookupError(f"no {action_id!r} button in message {message.get('ts')}: {message.get('text')!r}")


class SlackDriver:
    """Sends signed Slack requests to `{url}/slack/events`."""

    def __init__(self, url: str, signing_secret: str, http: httpx.Client | None = None):
        self.url = url.rstrip("/") + "/slack/events"
        self.verifier = SignatureVerifier(signing_secret)
        self.http = http or httpx.Client(timeout=10)

    def signed_headers(self, body: str, content_type: str, *, timestamp: int | None = None) -> dict[str, str]:
        """The headers Slack sends with `body`: its type, the time and the signature over both."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body)}

    def post(self, body: str, content_type: str, *, timestamp: int | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        signed = {**self.signed_headers(body, content_type, timestamp=timestamp), **(headers or {})}
        return self.http.post(self.url, content=body.encode(), headers=signed)

    def event(self, event: dict[str, Any], *, event_id: str | None = None,
              retry_num: int | None = None) -> httpx.Response:
        event_id = event_id or f"Ev{next(_ids):08d}"
        body = json.dumps({
            "token": "legacy", "team_id": TEAM_ID, "api_app_id": "A0REHEARSE", "type": "event_callback",
            "event": event, "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": "U0BOT", "is_bot": True}],
        })
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else {}
        return self.post(body, "application/json", headers=headers)

    def dm(self, *, user: str, channel: str, text: str, thread_ts: str | None = None,
           event_id: str | None = None, retry_num: int | None = None) -> httpx.Response:
        """The rep typing in their DM with the bot (a thread reply when `thread_ts` is given)."""
        ts = f"{time.time():.6f}"
        event = {"type": "message", "channel_type": "im", "channel": channel, "user": user, "text": text,
                 "ts": ts, "event_ts": ts, **({"thread_ts": thread_ts} if thread_ts else {})}
        return self.event(event, event_id=event_id, retry_num=retry_num)

    def click(self, message: dict, action_id: str, *, user: str, option: dict | None = None) -> httpx.Response:
        """A click on a button the bot posted (`message` as the Slack stand-in recorded it)."""
        button, block_id = find_button(message, action_id)
        action = {"type": button.get("type", "button"), "action_id": action_id, "block_id": block_id,
                  "action_ts": f"{time.time():.6f}"}
        if option is not None:  # a static_select
            action["selected_option"] = option
        else:
            action.update(value=button.get("value"), text=button.get("text"))
        payload = {
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "rehearse-demo"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": f"{next(_ids)}.1.abc",
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                          "is_ephemeral": False},
            "channel": {"id": message["channel"], "name": "channel"},
            "message": {"type": "message", "ts": message["ts"], "text": message.get("text"),
                        "blocks": message.get("blocks")},
            "response_url": "https://hooks.slack.invalid/actions/1",
            "actions": [action],
        }
        return self.post("payload=" + urllib.parse.quote(json.dumps(payload)),
                         "application/x-www-form-urlencoded")

    def click_home(self, view: dict, action_id: str, *, user: str) -> httpx.Response:
        """A click on a button in the App Home tab the bot published (`view` as the stand-in recorded it)."""
        button, block_id = find_button(view, action_id)
        payload = {
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "rehearse-demo"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": f"{next(_ids)}.1.abc",
            "container": {"type": "view", "view_id": view.get("id", "V0HOME")}, "view": view,
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id, "value": button["value"],
                         "action_ts": f"{time.time():.6f}"}],
        }
        return self.post("payload=" + urllib.parse.quote(json.dumps(payload)), "application/x-www-form-urlencoded")

    def select(self, message: dict, action_id: str, *, user: str, option: dict) -> httpx.Response:
        """Picking `option` in a select menu the bot posted."""
        return self.click(message, action_id, user=user, option=option)

    def submit(self, view: dict, *, user: str, values: dict[tuple[str, str], str | None]) -> httpx.Response:
        """Submit a modal the bot opened (`view` as the Slack stand-in recorded it), with typed-in values."""
        state = {"values": {}}
        for (block_id, action_id), value in values.items():
            state["values"].setdefault(block_id, {})[action_id] = {"type": "plain_text_input", "value": value}
        payload = {
            "type": "view_submission", "team": {"id": TEAM_ID, "domain": "rehearse-demo"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": f"{next(_ids)}.1.abc",
            "view": {**view, "state": state, "hash": f"{next(_ids)}.hash"}, "response_urls": [],
        }
        return self.post("payload=" + urllib.parse.quote(json.dumps(payload)), "application/x-www-form-urlencoded")

    def command(self, command: str, *, user: str, text: str = "", channel: str = "C0GENERAL") -> httpx.Response:
        form = {"token": "legacy", "team_id": TEAM_ID, "channel_id": channel, "user_id": user,
                "command": command, "text": text, "response_url": "https://hooks.slack.invalid/commands/1",
                "trigger_id": f"{next(_ids)}.1.abc"}
        return self.post(urllib.parse.urlencode(form), "application/x-www-form-urlencoded")
