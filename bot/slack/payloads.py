"""Slack's request bodies, read as Bolt reads them, only faster where it matters.

A click arrives as `payload=` plus 5 to 20 KB of URL-encoded JSON (the whole message clicked, blocks included).
`urllib.parse` decodes the percent escapes one at a time in Python: about 1 ms a click, which in a burst of clicks
is most of the time to answer them all. Here binascii's quoted-printable decoder (C) does the same work.
"""

from __future__ import annotations

import binascii
import json
import re
import urllib.parse
from typing import Any

# What a Slack id looks like: a capital letter for its kind (users U/W, channels C/D/G, workspaces T, orgs E, apps
# A), then capitals and digits.
SLACK_ID = re.compile(r"[A-Z][A-Z0-9]{2,63}")
SLACK_TS = re.compile(r"\d{1,12}\.\d{1,8}")  # a message's `ts`: seconds and a sequence number


class OddPayload(ValueError):
    """A part of a payload that no request from Slack about Rehearse's own messages has (a mangled or forged click,
    a button value no message carries): the listener refuses it with one warning line, not as a failure."""


def part_at(body: Any, *path: str | int) -> Any:
    """The value at `path` in a payload (`part_at(body, "actions", 0, "value")`), or None where the path does not
    lead (a missing key, a list where an object was expected)."""
    value = body
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value


def text_at(body: Any, *path: str | int, max_length: int = 3000) -> str:
    """The string at `path` in a payload; OddPayload when it is missing, not a string, empty or longer than any
    Slack sends there."""
    value = part_at(body, *path)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise OddPayload(f"{'.'.join(map(str, path))} is not what Slack sends")
    return value


def id_at(body: Any, *path: str | int) -> str:
    """The Slack id at `path` (a channel, a user); OddPayload unless it is shaped as Slack's ids are."""
    value = text_at(body, *path, max_length=64)
    if not SLACK_ID.fullmatch(value):
        raise OddPayload(f"{'.'.join(map(str, path))} is not a Slack id")
    return value


def ts_at(body: Any, *path: str | int) -> str:
    """The message `ts` at `path`; OddPayload unless it is shaped as Slack's are (`1700000000.000100`)."""
    value = text_at(body, *path, max_length=24)
    if not SLACK_TS.fullmatch(value):
        raise OddPayload(f"{'.'.join(map(str, path))} is not a message ts")
    return value


def metadata(view: Any) -> dict[str, Any]:
    """A modal's `private_metadata`, which Rehearse wrote as a JSON object."""
    try:
        data = json.loads(text_at(view, "private_metadata"))
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise OddPayload("view.private_metadata is not what Rehearse wrote")
    return data


def unquote_plus(text: str) -> str:
    """`urllib.parse.unquote_plus(text)`, the same result, decoded in C when the text is plain ASCII."""
    escapes = text.count("%")
    if not escapes:
        return text.replace("+", " ")
    if not text.isascii() or "\n" in text or "\r" in text:  # line breaks mean something in quoted-printable
        return urllib.parse.unquote_plus(text)
    # "%XX" -> "=XX" is quoted-printable; a literal "=" is first written as its own escape, "=3D".
    decoded = binascii.a2b_qp(text.replace("+", " ").replace("=", "=3D").replace("%", "=").encode("ascii"))
    if len(decoded) != len(text) - 2 * escapes:  # a "%" without two hex digits: urllib keeps it as it is
        return urllib.parse.unquote_plus(text)
    return decoded.decode("utf-8", "replace")


def form_fields(body: str) -> dict[str, str]:
    """`dict(urllib.parse.parse_qsl(body, keep_blank_values=True))`: a field named twice keeps its last value."""
    fields: dict[str, str] = {}
    for pair in body.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields[unquote_plus(name)] = unquote_plus(value)
    return fields


def read_body(body: str, content_type: str | None) -> dict[str, Any]:
    """The payload of a request to /slack/events, given its Content-Type header (parameters such as
    `; charset=utf-8` are ignored, as Bolt ignores them): JSON, a click's form with its JSON in `payload`, or a
    command's form. `slack_bolt.request.internals.parse_body` reads any form whose text holds the word "payload"
    as a click, so `/drill payload` reached Bolt as an empty request; Bolt is handed this reading instead."""
    content_type = (content_type or "").split(";")[0]
    if not body:
        return {}
    if content_type == "application/json" or body.startswith("{"):
        return json.loads(body)
    fields = form_fields(body)
    if "payload" in fields:
        return json.loads(fields["payload"])
    return fields
