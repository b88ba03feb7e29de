"""Black-box fuzz run of `rehearse serve` (issue 13): mutated, mostly well-signed requests to both endpoints, then
the server's own log read back line by line.

`rehearse serve` runs in its own process (HTTP mode, JSON log lines captured to a file, SQLite in a temp dir)
against the Slack Web API stand-in. Three low-scored calls are posted first, so there is a real approval message
with real buttons; the clicks, the Skip modal, the `/drill` picker and the Home tab used as templates are the ones
the bot posted. A seeded mutator (`random.Random(seed)`) then changes one to three places in each valid template:
a value swapped for a hostile one (huge numbers, lone surrogates, NUL, terminal escapes, bidi marks, Slack markup,
non-http URLs, ids that are not Slack's), for another person, workspace, app, channel or button value, a key
deleted or added, or a whole part of the envelope (`event`, `actions`, `view`, `callData`, `scores`, ...) replaced
with null, false, a string, a number, [] or {}. Most requests are signed as Slack and the scorer sign them; a
share are unsigned, signed with another secret, stale, or carry junk timestamps and non-ASCII signatures.

  * POST /webhooks/calls: a generic call, an array of calls, a Gong call webhook, Gong answered scorecards;
  * POST /slack/events: events (a DM message, app_home_opened, url_verification), block_actions clicks,
    view_submission, `/drill` and `/progress`, from the manager, the rep, strangers and ids that are not ids.

Requests go one at a time over CONNECTIONS keep-alive connections (raw HTTP/1.1, one asyncio loop), each with an
`X-Request-Id` so that a log line can be traced to the request behind it; after a failure a new connection is
opened. Then the slow-connection check: 50 sockets that send half a request and stop, 1 that sends nothing, how
long the server keeps each open, and whether `/healthz` is answered meanwhile. Last the server is stopped (SIGTERM,
once the Slack inbox is drained) and its log scanned: every line JSON, none with an exception, an error or a
traceback. Exits 1 on any answer >= 500, request left unanswered, unanswered /healthz, socket never closed,
traceback, error line or non-JSON line.

    python bench/fuzz_serve.py [--requests N] [--seed S] [--connections C] [--keep-log PATH]
                                                          # default: 5000 per endpoint, seed 13, 4 connections
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_ingest import WEBHOOK_SECRET, server_env, wait_healthy  # noqa: E402 - a sibling script

from bot.app import free_port  # noqa: E402
from bot.demo.driver import SlackDriver, webhook_headers  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402
from bot.slack import ids  # noqa: E402
from tests.conftest import APPROVALS, MANAGER, OUTSIDER, REP, USERS, low_calls, scored_call  # noqa: E402
from tests.test_fuzz_inputs import CALL, GONG_CALL, GONG_CARDS, GONG_CONFIG  # noqa: E402 - the same templates

SECRET = "bench-signing-secret"  # the signing secret server_env gives the server

# --- the mutator -------------------------------------------------------------------------------------------------


class Raw(str):
    """A JSON literal written as it is (`1e999`, `NaN`), which no Python value serialises to."""


HOSTILE = [10**30, 10**400, -(10**30), 2**63, 1e308, Raw("1e999"), Raw("NaN"), Raw("-Infinity"), True, False, None,
           0, -1, 1.5, "", "x" * 5000, 'say "hi" \\ \'', "a\x00b", "\x00", "\ud800", "\udfff tail", "\x1b]0;x\x07",
           "\x1b[2J", "\x9b31m", "\u202eevil", "<!channel>", "<!here>", "<@U07MGR0EAST>",
           "<https://evil.example|click>", "a|b>c", "javascript:alert(1)", "u0alex", "U" * 5000, 'U0"ALEX',
           "Ünïcödé \U0001f3af", "0001-01-01T00:00:00+05:00", "2026-13-45T99:00:00Z", [], {}, [None], {"": None}]
PEOPLE = [MANAGER, REP, OUTSIDER, "U0NOBODY", "W0DANA", "u0dana", "U" * 5000, 'U0"X', ""]
SWAPS = {  # plausible but wrong values, by key
    "user": PEOPLE, "user_id": PEOPLE, "id": [*PEOPLE, "T0ELSEWHERE", "T0REHEARSE", "V0HOME"],
    "team_id": ["T0REHEARSE", "T0ELSEWHERE", "t0rehearse"], "api_app_id": ["A0REHEARSE", "A0OTHER", ""],
    "channel": ["D0ALEX", "D0DANA", APPROVALS, "C0GENERAL", "c0approvals"],
    "channel_id": ["D0ALEX", "D0DANA", APPROVALS, "C0GENERAL", "c0approvals"],
    "value": ["1", "2", "0", "-1", "2147483648", "99999999999", "nudge:1", "nudge:2", "followup:1",
              "scenario:price-objection", "scenario:nope", "1:price-objection", "1:nope", "nudge:", ":", "abc"],
    "action_id": [ids.APPROVE, ids.SKIP, ids.START_PRACTICE, ids.CHANGE_SCENARIO, ids.DISPUTE, ids.KEEP,
                  ids.WITHDRAW, ids.RETAKE, ids.PICK_DRILL, ids.HOME_START, ids.HOME_PAGE, ids.PRACTICE_DONE, "x"],
    "callback_id": [ids.SKIP_REASON_VIEW, ids.DISPUTE_VIEW, "other"],
    "type": ["event_callback", "block_actions", "view_submission", "view_closed", "message", "app_home_opened",
             "url_verification", "button", "static_select", "view", "modal", "shortcut"],
    "command": [ids.DRILL_COMMAND, ids.PROGRESS_COMMAND, "/other"], "tab": ["home", "messages"],
    "channel_type": ["im", "channel", "mpim"], "subtype": ["bot_message", "message_changed", "file_share"],
    "private_metadata": ['{"nudge_id": 1}', '{"nudge_id": "1"}', '{"nudge_id": 0}', "[]", "{", ""],
}
ENVELOPE = {"event", "actions", "view", "user", "team", "container", "callData", "scores", "message", "channel",
            "state", "values", "metaData", "parties", "answeredScorecards", "answers", "metrics", "evidence",
            "transcript", "authorizations", "selected_option", "private_metadata", "interaction"}
HOLLOW = [None, False, "x", 0, [], {}]
ADDED_KEYS = ["subtype", "bot_id", "thread_ts", "authorizations", "enterprise", "is_enterprise_install", "x", "",
              "__proto__", "callId", "isTest", "\ud800", "\x1b[2J"]


def places(doc: object, path: tuple = ()) -> list[tuple[tuple, object, object]]:
    """(path, container, key) of every value inside `doc`."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    found = []
    for key, value in items:
        found.append((path + (key,), doc, key))
        found += places(value, path + (key,))
    return found


def mutate(rng: random.Random, doc: object) -> list[str]:
    """Change one to three places of `doc` in place; returns what was done, for the report."""
    done = []
    for _ in range(rng.randint(1, 3)):
        found = places(doc)
        if not found:
            break
        # The clicked message's own blocks are most of a click's places, and the least read: weighed down.
        plain = [p for p in found if p[0][:1] != ("message",) and "blocks" not in p[0]]
        path, container, key = rng.choice(plain if plain and rng.random() < 0.85 else found)
        where = ".".join(map(str, path))
        op = rng.choices(["hostile", "swap", "delete", "add", "envelope"], [35, 25, 15, 10, 15])[0]
        swappable = [p for p in found if p[0][-1] in SWAPS and isinstance(p[1], dict)]
        parts = [p for p in found if p[0][-1] in ENVELOPE and isinstance(p[1], dict)]
        if op == "swap" and swappable:
            path, container, key = rng.choice(swappable)
            container[key] = rng.choice(SWAPS[key])
            done.append(f"swap {'.'.join(map(str, path))}={short(container[key])}")
        elif op == "envelope" and parts:
            path, container, key = rng.choice(parts)
            container[key] = copy.copy(rng.choice(HOLLOW + HOSTILE[:12]))
            done.append(f"envelope {'.'.join(map(str, path))}={short(container[key])}")
        elif op == "delete":
            del container[key]
            done.append(f"delete {where}")
        elif op == "add" and isinstance(container, dict | list):
            value = copy.copy(rng.choice(HOSTILE))
            if isinstance(container, list):
                container.append(value)
            else:
                container[rng.choice(ADDED_KEYS)] = value
            done.append(f"add beside {where}: {short(value)}")
        else:
            container[key] = copy.copy(rng.choice(HOSTILE))
            done.append(f"hostile {where}={short(container[key])}")
    return done


def short(value: object) -> str:
    text = value if isinstance(value, str) and not isinstance(value, Raw) else str(value)
    return repr(text[:30] + (f"...({len(text)} chars)" if len(text) > 30 else ""))


def dumps(doc: object, ascii_only: bool) -> bytes:
    """JSON as a sender writes it, escaped (lone surrogates as \\ud800) or as UTF-8 (then invalid UTF-8 for a lone
    surrogate); Raw values written as bare literals."""
    raws: list[str] = []

    def mark(value: object) -> object:
        if isinstance(value, Raw):
            raws.append(str(value))
            return f"\ue000raw{len(raws) - 1}\ue000"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        return [mark(v) for v in value] if isinstance(value, list) else value

    text = json.dumps(mark(doc), ensure_ascii=ascii_only)
    for number, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\ue000raw{number}\ue000", ensure_ascii=ascii_only), raw)
    return text.encode("utf-8", "surrogatepass")


def form(fields: dict) -> bytes:
    """A form body; non-strings as JSON text, keys and values as UTF-8 (a lone surrogate as invalid UTF-8)."""
    def part(value: object) -> str:
        text = value if isinstance(value, str) else dumps(value, True).decode()
        return urllib.parse.quote_plus(text.encode("utf-8", "surrogatepass"))
    return "&".join(f"{part(k)}={part(v)}" for k, v in fields.items()).encode()


# --- requests ----------------------------------------------------------------------------------------------------

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
JUNK_TIMESTAMPS = ["abc", "1.5", "", "-1", "1" * 500, "1e9", " 1700000000", "0x6553f100"]


@dataclass
class Shot:
    """One request: its body and how it is signed; the signature is made with the time it is sent."""
    endpoint: str  # "webhook" or "slack"
    number: int
    label: str
    body: bytes
    content_type: str | None
    signing: tuple[str, object]

    @property
    def request_id(self) -> str:
        return f"fz-{self.endpoint}-{self.number:05d}"

    def describe(self) -> str:
        body = urllib.parse.unquote_to_bytes(self.body) if self.body.startswith(b"payload=") else self.body
        return f"{self.request_id} {self.label} | signing {self.signing[0]} | body {body[:300]!r}"

    def raw(self) -> bytes:
        how, detail = self.signing
        now = int(time.time())
        ts = str(now + detail) if how == "stale" else detail if how == "junk-timestamp" else str(now)
        secret = "not-the-secret" if how == "wrong-secret" else WEBHOOK_SECRET if self.endpoint == "webhook" \
            else SECRET
        if self.endpoint == "webhook":
            names = (b"X-Rehearse-Timestamp", b"X-Rehearse-Signature")
            signature = webhook_headers(secret, self.body, ts)["X-Rehearse-Signature"]
        else:
            names = (b"X-Slack-Request-Timestamp", b"X-Slack-Signature")  # Slack's v0 HMAC, over the raw bytes
            signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + self.body, hashlib.sha256).hexdigest()
        ts_bytes = str(now).translate(FULLWIDTH).encode() if how == "fullwidth-timestamp" else ts.encode()
        sig_bytes = signature.encode()[:-2] + detail if how == "non-ascii-signature" else signature.encode()
        head = [b"POST /" + (b"webhooks/calls" if self.endpoint == "webhook" else b"slack/events") + b" HTTP/1.1",
                b"Host: 127.0.0.1", b"X-Request-Id: " + self.request_id.encode()]
        if self.content_type:
            head.append(b"Content-Type: " + self.content_type.encode())
        if how not in ("unsigned", "no-timestamp"):
            head.append(names[0] + b": " + ts_bytes)
        if how not in ("unsigned", "no-signature"):
            head.append(names[1] + b": " + sig_bytes)
        head.append(f"Content-Length: {len(self.body)}".encode())
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


def signing(rng: random.Random) -> tuple[str, object]:
    """Mostly good; else one of the ways a signature is missing, wrong or unreadable."""
    if rng.random() < 0.85:
        return "good", None
    how = rng.choice(["unsigned", "no-timestamp", "no-signature", "wrong-secret", "junk-timestamp", "stale",
                      "fullwidth-timestamp", "non-ascii-signature"])
    detail = {"junk-timestamp": rng.choice(JUNK_TIMESTAMPS), "stale": rng.choice([-301, -3600, 301, 10**6, -10**9]),
              "non-ascii-signature": rng.choice(["é".encode(), b"\xff\xfe", "\u202e".encode(), b"\x80"])}.get(how)
    return how, detail


def webhook_shots(rng: random.Random, count: int) -> Iterator[Shot]:
    templates = [("call", CALL), ("calls", [CALL, scored_call("fz-2", 80)]), ("gong call", GONG_CALL),
                 ("gong scorecards", GONG_CARDS)]
    for number in range(count):
        name, template = rng.choice(templates)
        doc = copy.deepcopy(template)
        for call in doc if isinstance(doc, list) else [doc]:  # a new call each time, stored unless rejected
            if "call_id" in call:
                call["call_id"] = f"fz-{number}-{call['call_id']}"
        if name == "gong call":
            doc["callData"]["metaData"]["id"] = str(10**15 + number)
        elif name == "gong scorecards":
            doc["answeredScorecards"][0]["callId"] = 10**6 + number
        done = mutate(rng, doc)
        body = dumps(doc, rng.random() < 0.7)
        yield Shot("webhook", number, f"{name}: {'; '.join(done)}", body, "application/json", signing(rng))


def captured(make) -> list[tuple[str, object]]:  # noqa: ANN001
    """The requests `make(driver)` sends, captured instead of sent, as (kind, document) templates."""
    out: list[tuple[str, object]] = []

    def capture(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        if request.headers["content-type"] == "application/json":
            out.append(("json", json.loads(body)))
        else:
            fields = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            out.append(("payload", json.loads(fields["payload"])) if "payload" in fields else ("form", fields))
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(capture)) as http:
        make(SlackDriver("http://fuzz.invalid", SECRET, http))
    return out


def slack_templates(approval: dict, modal: dict, picker: dict, home: dict) -> list[tuple[str, str, object]]:
    """(name, kind, document) of each valid request to /slack/events: real clicks on what the bot posted, plus
    the other buttons' clicks and the dispute modal made from them."""
    nudge = approval["blocks"][-1]["elements"][0]["value"]
    select = next(e for e in approval["blocks"][-1]["elements"] if e["action_id"] == ids.CHANGE_SCENARIO)
    option = select.get("initial_option") or select["option_groups"][0]["options"][0]
    drill = {**picker, "ts": "1.000000", "channel": "D0ALEX"}
    names = ["dm", "thread reply", "app_home_opened", "url_verification", ids.APPROVE, ids.SKIP, ids.CHANGE_SCENARIO,
             ids.PICK_DRILL, "skip modal", ids.DRILL_COMMAND, ids.PROGRESS_COMMAND]
    made = captured(lambda d: [
        d.dm(user=REP, channel="D0ALEX", text="What would it save us per truck?"),
        d.dm(user=REP, channel="D0ALEX", text="Compared to what?", thread_ts="1700000000.000100"),
        d.event({"type": "app_home_opened", "user": MANAGER, "channel": "D0DANA", "tab": "home",
                 "event_ts": "1700000000.000200"}),
        d.post(json.dumps({"token": "legacy", "challenge": "c0ffee", "type": "url_verification"}), "application/json"),
        d.click(approval, ids.APPROVE, user=MANAGER), d.click(approval, ids.SKIP, user=MANAGER),
        d.select(approval, ids.CHANGE_SCENARIO, user=MANAGER, option=option), d.click(drill, ids.PICK_DRILL, user=REP),
        d.submit(modal, user=MANAGER, values={(ids.REASON_BLOCK, ids.REASON_INPUT): "Not this week"}),
        d.command(ids.DRILL_COMMAND, user=REP, text="price"),
        d.command(ids.PROGRESS_COMMAND, user=MANAGER, text=f"<@{REP}>")])
    templates = [(name, kind, doc) for name, (kind, doc) in zip(names, made, strict=True)]
    click = made[4][1]
    for action, value, user in [(ids.START_PRACTICE, f"nudge:{nudge}", REP),
                                (ids.START_PRACTICE, "scenario:price-objection", REP), (ids.DISPUTE, nudge, REP),
                                (ids.RETAKE, "1", REP), (ids.PRACTICE_DONE, "1", REP), (ids.KEEP, "1", MANAGER),
                                (ids.WITHDRAW, "1", MANAGER)]:
        doc = copy.deepcopy(click)
        doc["user"].update(id=user, username=user.lower())
        doc["actions"][0].update(action_id=action, value=value)
        templates.append((action, "payload", doc))
    for action, value in [(ids.HOME_PAGE, "1"), (ids.HOME_START, nudge)]:
        doc = {k: v for k, v in copy.deepcopy(click).items() if k not in ("message", "channel", "response_url")}
        doc.update(container={"type": "view", "view_id": home.get("id", "V0HOME")}, view=home)
        doc["actions"][0].update(action_id=action, value=value)
        templates.append((action, "payload", doc))
    dispute = copy.deepcopy(made[8][1])
    dispute["user"].update(id=REP, username=REP.lower())
    dispute["view"].update(callback_id=ids.DISPUTE_VIEW, private_metadata=json.dumps({"nudge_id": int(nudge)}),
                           state={"values": {ids.COMMENT_BLOCK: {ids.COMMENT_INPUT: {
                               "type": "plain_text_input", "value": "The call was cut off"}}}})
    return [*templates, ("dispute modal", "payload", dispute)]


def slack_shots(rng: random.Random, count: int, templates: list[tuple[str, str, object]]) -> Iterator[Shot]:
    for number in range(count):
        name, kind, template = rng.choice(templates)
        doc = copy.deepcopy(template)
        if "event_id" in doc:
            doc["event_id"] = f"EvFZ{number:08d}"  # a new event each time, not a retry
        if "trigger_id" in doc:
            doc["trigger_id"] = f"{number}.1.fuzz"
        done = mutate(rng, doc)
        ascii_only = rng.random() < 0.7
        if kind == "json":
            body, content_type = dumps(doc, ascii_only), "application/json"
        elif kind == "payload":
            body = b"payload=" + urllib.parse.quote(dumps(doc, ascii_only)).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body, content_type = form(doc), "application/x-www-form-urlencoded"
        if rng.random() < 0.03:
            content_type = rng.choice([None, "text/plain", "application/json", "multipart/form-data"])
        yield Shot("slack", number, f"{name}: {'; '.join(done)}", body, content_type, signing(rng))


# --- sending -----------------------------------------------------------------------------------------------------

LEAK = re.compile(rb"Traceback \(most recent|File \"[^\"]+\", line \d+|Internal Server Error|sqlalchemy|psycopg")


@dataclass
class Tally:
    statuses: Counter
    latencies: list[float]
    failures: list[str]  # answers >= 500 and Python internals in an answer, with the request
    unanswered: list[str]
    failing: Counter  # the templates the failures were made from


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:] if line)}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return status, headers, body
    return status, headers, await reader.readexactly(int(headers.get(b"content-length", b"0")))


async def fire(port: int, shots: Iterator[Shot], connections: int, total: int,
               server: subprocess.Popen) -> dict[str, Tally]:
    """Every shot once, one at a time per connection; a connection that fails is replaced by a new one."""
    tallies = {e: Tally(Counter(), [], [], [], Counter()) for e in ("webhook", "slack")}
    sent = [0]

    async def lane() -> None:
        conn, last = None, None
        for shot in shots:
            tally, request = tallies[shot.endpoint], shot.raw()
            begun = time.monotonic()
            try:
                if conn is None:
                    conn, last = await asyncio.open_connection("127.0.0.1", port), None
                conn[1].write(request)
                await conn[1].drain()
                status, headers, body = await asyncio.wait_for(read_answer(conn[0]), 30)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ValueError, IndexError) as exc:
                after = f" (the answer before on this connection: {last})" if last else " (a new connection)"
                tally.unanswered.append(f"{type(exc).__name__} {exc!s:.80}{after}: {shot.describe()}")
                if conn is not None:
                    conn[1].close()
                conn = None
                if server.poll() is not None:
                    raise RuntimeError(f"rehearse serve exited with {server.returncode}") from exc
                continue
            tally.latencies.append(time.monotonic() - begun)
            tally.statuses[status] += 1
            last = status
            if status >= 500 or LEAK.search(body):
                tally.failures.append(f"{status} {body[:200]!r}: {shot.describe()}")
                tally.failing[shot.label.split(":")[0]] += 1
            if headers.get(b"connection", b"").lower() == b"close":
                conn[1].close()
                conn = None
            sent[0] += 1
            if sent[0] % 1000 == 0:
                print(f"  {sent[0]:,}/{total:,} answered", file=sys.stderr, flush=True)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(lane() for _ in range(connections)))
    return tallies


async def slow_connections(port: int, partial: int = 50, cap: float = 60.0) -> dict:
    """`partial` sockets that send half a request and stop, one that sends nothing: how long each stays open
    (at most `cap` s), and /healthz asked every half second meanwhile."""
    half = b"POST /webhooks/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
    done = asyncio.Event()
    health = Counter()

    async def hold(first: bytes) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        writer.write(first)
        try:
            await asyncio.wait_for(reader.read(), cap)  # until the server closes it
        except (TimeoutError, OSError):
            pass
        writer.close()
        return time.monotonic() - opened

    async def ask_health() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while not done.is_set():
                try:
                    health[(await http.get(f"http://127.0.0.1:{port}/healthz")).status_code] += 1
                except httpx.HTTPError as exc:
                    health[type(exc).__name__] += 1
                await asyncio.sleep(0.5)

    asker = asyncio.create_task(ask_health())
    held = await asyncio.gather(*(hold(half) for _ in range(partial)), hold(b""))
    done.set()
    await asker
    return {"partial": partial, "partial_max_s": max(held[:-1]), "partial_min_s": min(held[:-1]), "idle_s": held[-1],
            "never_closed": sum(h >= cap for h in held), "healthz": dict(health)}


# --- the run -----------------------------------------------------------------------------------------------------


def prepare(url: str, standin: SlackStandIn) -> list[tuple[str, str, object]]:
    """Post three low-scored calls, then read back what the bot posted: the approval message, the Skip modal (a
    real click on Skip), the `/drill` picker and the manager's Home tab; the Slack templates are made from them."""
    with httpx.Client(timeout=30) as http:
        body = json.dumps(low_calls()).encode()
        r = http.post(f"{url}/webhooks/calls", content=body, headers=webhook_headers(WEBHOOK_SECRET, body))
        assert r.status_code == 202, r.text
        approval = standin.wait_for(lambda: next((m for m in standin.messages_in(APPROVALS) if m.get("blocks")),
                                                 None), timeout=60)
        driver = SlackDriver(url, SECRET, http)
        assert driver.click(approval, ids.SKIP, user=MANAGER).status_code == 200
        modal = standin.wait_for(lambda: standin.modals[0] if standin.modals else None, timeout=30)
        picker = driver.command(ids.DRILL_COMMAND, user=REP).json()
        driver.event({"type": "app_home_opened", "user": MANAGER, "channel": "D0DANA", "tab": "home"})
        home = standin.wait_for(lambda: standin.views.get(MANAGER), timeout=30)
    return slack_templates(approval, modal, picker, home)


def drained(url: str, inbox_s: float = 180, outbox_s: float = 60) -> dict[str, float]:
    """Wait until every Slack request the server acknowledged has been handled, then (a while) until every Slack
    write it queued is sent or given up (paced at about 1 a second per channel); what /metrics says is left."""
    started = time.monotonic()
    with httpx.Client(timeout=10) as http:
        while True:
            text = http.get(f"{url}/metrics").text
            left = {k: float(n) for k, n in re.findall(r"^rehearse_(slack_inbox|outbox)_pending (\S+)$", text, re.M)}
            waited = time.monotonic() - started
            if not any(left.values()) or waited > inbox_s + outbox_s or (left.get("slack_inbox") == 0
                                                                          and waited > outbox_s):
                return left
            time.sleep(1)


def children(pid: int) -> list[int]:
    """The processes `pid` started (`rehearse serve` starts one `rehearse worker`), from whichever of its threads."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


def outlived(pids: list[int], grace: float = 30) -> str:
    """Wait up to `grace` s for the worker to exit after the server; kill what is left (it would go on sending)."""
    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    started = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - started < grace:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    if left:
        return f"still running {grace:.0f} s after it, killed"
    return f"gone {time.monotonic() - started:.1f} s after it"


def scan_log(path: Path, requests: dict[str, str]) -> dict:
    """Every line of the server's log: JSON or not, with an exception, at error level, with a traceback; and the
    distinct failures (by message, innermost frame and exception type), each with how often and the request
    behind its first line when the line names one."""
    kinds: dict[str, list[str]] = {"not JSON": [], "with an exception": [], "error/critical": [], "traceback": []}
    distinct: dict[str, list] = {}
    lines = path.read_bytes().splitlines()
    for raw in lines:
        text = raw.decode("utf-8", "backslashreplace")
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            kinds["not JSON"].append(text[:300])
            kinds["traceback"] += [text[:300]] if "Traceback" in text else []
            continue
        shown = f"{line.get('level')} {line.get('logger')}: {str(line.get('message'))[:300]}"
        if exc := line.get("exception"):
            shown += f" | {str(exc).strip().splitlines()[-1][:200]}"
        for kind, hit in (("with an exception", "exception" in line),
                          ("error/critical", line.get("level") in ("error", "critical")),
                          ("traceback", "Traceback" in text)):
            kinds[kind] += [shown] if hit else []
        if "exception" in line or line.get("level") in ("error", "critical"):
            seen = distinct.setdefault(failure_kind(line), [0, None])
            seen[0] += 1
            seen[1] = seen[1] or requests.get(line.get("request_id"))
    return {"lines": len(lines), "kinds": kinds, "distinct": distinct}


def failure_kind(line: dict) -> str:
    """An error line without what varies between its occurrences: numbers, channels, the exception's values."""
    message = str(line.get("message"))
    for varies, same in ((r" to \S+ failed", " to <channel> failed"), (r" on an? .+? request", " on a <type> request"),
                         (r"\b\d+\b", "N")):
        message = re.sub(varies, same, message)
    exc = str(line.get("exception") or "").strip().splitlines()
    if not exc:
        return f"{line.get('level')} {line.get('logger')}: {message[:200]}"
    frames = re.findall(r'File "(?:[^"]*/site-packages/|[^"]*/main/)?([^"]+)", line (\d+), in (\S+)', "\n".join(exc))
    where = "{}:{} {}".format(*frames[-1]) if frames else "?"
    head = f"{line.get('level')} {line.get('logger')}: {message.split(':')[0][:120]}"
    return f"{head} | {exc[-1].split(':')[0][:60]} at {where}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per endpoint (default 5000)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here")
    args = parser.parse_args()
    started = time.monotonic()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp_name, SlackStandIn(users=[dict(u) for u in USERS]) as standin:
        tmp = Path(tmp_name)
        config, log_path = tmp / "coach.yaml", tmp / "serve.log"
        config.write_text(json.dumps(GONG_CONFIG))  # JSON is YAML
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**server_env(standin, f"sqlite:///{tmp / 'fuzz.db'}", config, port), "REHEARSE_LOG_FORMAT": "json",
               "REHEARSE_OUTBOX_SWEEP_SECONDS": "0.5"}
        env.pop("SLACK_APP_TOKEN", None)  # HTTP mode
        with open(log_path, "ab") as log:  # the web process and its worker append to it
            server = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT)
        requests: dict[str, str] = {}
        try:
            wait_healthy(url, server)
            templates = prepare(url, standin)
            webhooks, slacks = webhook_shots(rng, args.requests), slack_shots(rng, args.requests, templates)

            def interleaved() -> Iterator[Shot]:
                for pair in zip(webhooks, slacks, strict=True):
                    for shot in pair:
                        requests[shot.request_id] = shot.describe()
                        yield shot

            tallies = asyncio.run(fire(port, interleaved(), args.connections, 2 * args.requests, server))
            slow = asyncio.run(slow_connections(port))
            settled = drained(url)
        finally:
            workers = children(server.pid)
            stopping = time.monotonic()
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            stop_s = time.monotonic() - stopping
            worker = outlived(workers)
            if args.keep_log:
                args.keep_log.write_bytes(log_path.read_bytes())
        log = scan_log(log_path, requests)
    stopped = f"stopped in {stop_s:.1f} s, exit code {server.returncode}, its worker {worker}"
    return report(args, tallies, slow, log, settled, stopped, time.monotonic() - started)


def report(args: argparse.Namespace, tallies: dict[str, Tally], slow: dict, log: dict, settled: dict, stopped: str,
           elapsed: float) -> int:
    failures = [f for t in tallies.values() for f in t.failures]
    unanswered = [u for t in tallies.values() for u in t.unanswered]
    kinds = log["kinds"]
    print(f"\nfuzz_serve {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, seed {args.seed}, {args.requests:,} requests per "
          f"endpoint over {args.connections} keep-alive connections")
    for name, path in (("webhook", "POST /webhooks/calls"), ("slack", "POST /slack/events")):
        t = tallies[name]
        lat = sorted(t.latencies) or [0.0]
        print(f"{path}: {sum(t.statuses.values()) + len(t.unanswered):,} sent, statuses "
              f"{dict(sorted(t.statuses.items()))}, p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 "
              f"{lat[int(len(lat) * 0.99)] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
    shapes = sum((t.failing for t in tallies.values()), Counter())
    print(f"answers >= 500 (or showing Python internals): {len(failures)} {dict(shapes.most_common())}; "
          f"unanswered: {len(unanswered)}")
    print(f"slow connections: {slow['partial']} half-sent requests closed after {slow['partial_min_s']:.1f}-"
          f"{slow['partial_max_s']:.1f} s, the idle socket after {slow['idle_s']:.1f} s, never closed (60 s cap): "
          f"{slow['never_closed']}; /healthz meanwhile: {slow['healthz']}")
    print(f"server log: {log['lines']:,} lines; " + ", ".join(f"{k} {len(v)}" for k, v in kinds.items())
          + f"; still pending at the stop: {settled}; server {stopped}")
    print(f"elapsed: {elapsed:.0f} s")
    for title, items in (("answers >= 500", failures), ("unanswered", unanswered),
                         *((f"log lines {k}", v) for k, v in kinds.items())):
        if items:
            print(f"\nfirst {min(5, len(items))} of {len(items)} {title}:\n" + "\n".join(f"  - {i}" for i in items[:5]))
    if log["distinct"]:
        print("\ndistinct error/exception lines, with the request behind the first one when known:")
        for line, (count, request) in sorted(log["distinct"].items(), key=lambda item: -item[1][0]):
            print(f"  {count:5d} x {line}" + (f"\n          {request}" if request else ""))
    failed = failures or unanswered or any(kinds.values()) or slow["never_closed"] or set(slow["healthz"]) != {200}
    print("\nresult:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
