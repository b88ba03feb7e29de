"""A Slack Web API stand-in served on loopback, for the offline demo and the tests.

Point the real client at it: ``WebClient(token=s.bot_token, base_url=s.base_url)``. It answers the handful of
methods Rehearse uses the way Slack does (``{"ok": true, ...}``, HTTP 200 even for API errors, 429 with
``Retry-After``), records every call, and keeps the posted messages so tests can assert on them. Stdlib only.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from bot.slack.pacing import METHOD_TIERS, TIER_CALLS_PER_MINUTE

_JSON_FIELDS = ("blocks", "metadata", "view", "files", "attachments")
_Reply = tuple[int, dict[str, Any], dict[str, str]]  # status, body, extra headers


@dataclass
class Call:
    """One request the stand-in received (``method`` is the API method, or ``"upload"`` for file bytes)."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 0  # the HTTP status answered (429: rate limited)


@dataclass
class RateLimited:
    """One 429 the stand-in served: what it limited (``key``: the channel for posts, else the method) and why.

    ``reason``: ``"random"`` (the injected share), ``"channel"`` (over 1 post/s in a channel), ``"tier"`` (over the
    method's tier) or ``"early"`` (called again before an earlier Retry-After had passed).
    """

    method: str
    key: str
    at: float
    retry_after: int
    reason: str


class SlackApiFailure(Exception):
    """Raised inside a method handler to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


class SlackStandIn:
    """In-process fake of the Slack Web API on ``127.0.0.1`` (thread-safe; one daemon server thread)."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-standin",
        users: list[dict] | None = None,
        team_id: str = "T0REHEARSE",
        enforce_channel_pacing: bool = False,
        enforce_tiers: bool = False,
        random_429_rate: float = 0.0,
        random_retry_after: tuple[int, int] = (1, 3),
        seed: int | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.socket_mode_url: str | None = None  # what `apps.connections.open` answers an app token (xapp-)
        self.enforce_channel_pacing = enforce_channel_pacing
        # Slack's per-method tiers (bot/slack/pacing.py METHOD_TIERS), as a token bucket per method holding one
        # minute's allowance, refilled evenly; a 429 names the seconds until the next token as Retry-After.
        self.enforce_tiers = enforce_tiers
        # A share of the calls that would otherwise succeed answer 429 with a Retry-After drawn from
        # `random_retry_after` (inclusive); until it has passed, that channel (posts) or method is shut ("early").
        self.random_429_rate = random_429_rate
        self.random_retry_after = random_retry_after
        self._random = random.Random(seed)
        self.rate_limited: list[RateLimited] = []
        self._tiers: dict[str, tuple[float, float]] = {}  # method -> (tokens, last refill)
        self._shut_until: dict[str, float] = {}  # channel or method -> monotonic time its Retry-After ends
        self.calls: list[Call] = []
        self.messages: list[dict] = []
        self.deleted: list[dict] = []  # messages removed with chat.delete
        self.views: dict[str, dict] = {}
        self.modals: list[dict] = []  # every modal opened with views.open, in order
        # file_id -> {"id", "name", "title", "length", "content": bytes | None (until uploaded)}
        self.files: dict[str, dict] = {}
        self._users: dict[str, dict] = {}
        self._faults: dict[str, list[dict]] = {}
        self._pacing: dict[str, tuple[float, float]] = {}  # channel -> (tokens, last refill)
        self._seq = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        for user in users or []:
            self.add_user(user)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> SlackStandIn:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/api/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="slack-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- test helpers
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def messages_in(self, channel: str, *, thread_ts: str | None = None) -> list[dict]:
        """Messages (oldest first) in ``channel`` (a user id means that user's DM); ``thread_ts`` filters."""
        channel = self.dm_channel_for(channel) if channel[:1] in "UW" else channel
        with self._lock:
            return [
                m
                for m in self.messages
                if m["channel"] == channel and (thread_ts is None or m["thread_ts"] == thread_ts)
            ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll ``predicate()`` until truthy and return its value; on timeout raise AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                with self._lock:
                    recent = "\n".join(
                        f"  {c.method} {json.dumps(c.params, default=str)[:200]}" for c in self.calls[-10:]
                    )
                raise AssertionError(
                    f"condition not met within {timeout}s; {len(self.calls)} calls, "
                    f"{len(self.messages)} messages; last calls:\n{recent or '  (none)'}"
                )
            time.sleep(0.01)

    def add_user(self, user: dict) -> None:
        with self._lock:
            self._users[user["id"]] = dict(user)

    def dm_channel_for(self, user_id: str) -> str:
        return "D" + user_id[1:]

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        429 answers ``Retry-After`` and ``ratelimited``; 5xx answers ``internal_error``; 200 answers
        ``{"ok": false, "error": error}``. ``error`` overrides the default error string.
        """
        default = "ratelimited" if status == 429 else "internal_error" if status >= 500 else "fatal_error"
        fault = {"status": status, "retry_after": retry_after, "error": error or default}
        with self._lock:
            self._faults.setdefault(method, []).extend(dict(fault) for _ in range(times))

    # ---------------------------------------------------------------- dispatch
    def _handle(self, method: str, params: dict[str, Any], token: str | None) -> _Reply:
        with self._lock:
            call = Call(method, params)
            self.calls.append(call)
            reply = self._answer(method, params, token)
            call.status = reply[0]
            return reply

    def _answer(self, method: str, params: dict[str, Any], token: str | None) -> _Reply:
        with self._lock:
            if not token:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if method == "apps.connections.open" and self.socket_mode_url and token.startswith("xapp-"):
                return 200, {"ok": True, "url": self.socket_mode_url}, {}  # Socket Mode: where to connect
            if token != self.bot_token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            if self._faults.get(method):
                f = self._faults[method].pop(0)
                headers = {"Retry-After": str(f["retry_after"])} if f["status"] == 429 else {}
                return f["status"], {"ok": False, "error": f["error"]}, headers
            handler = getattr(self, "_api_" + method.replace(".", "_"), None)
            if handler is None:
                return 200, {"ok": False, "error": "unknown_method"}, {}
            try:
                limited = self._rate_limit(method, params)
                if limited is not None:
                    return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(limited)}
                return 200, {"ok": True, **handler(params)}, {}
            except SlackApiFailure as failure:
                return 200, {"ok": False, "error": failure.error}, {}

    def _rate_limit(self, method: str, params: dict[str, Any]) -> int | None:
        """Retry-After seconds if this call is refused with a 429, else None (and the call's token is spent)."""
        now = time.monotonic()
        post = method == "chat.postMessage"
        key = self._resolve_channel(params.get("channel")) if post else method
        refused: tuple[int, str] | None = None
        if self._shut_until.get(key, 0.0) > now:
            refused = (math.ceil(self._shut_until[key] - now), "early")
        elif post and self.enforce_channel_pacing and not self._pace(params):
            refused = (1, "channel")
        elif not post and self.enforce_tiers and method in METHOD_TIERS:
            wait = self._tier_wait(method, now)
            refused = (max(1, math.ceil(wait)), "tier") if wait else None
        if refused is None and self.random_429_rate and self._random.random() < self.random_429_rate:
            refused = (self._random.randint(*self.random_retry_after), "random")
            self._shut_until[key] = now + refused[0]
            if post and key in self._pacing:  # the post did not happen: give its channel token back
                tokens, last = self._pacing[key]
                self._pacing[key] = (tokens + 1.0, last)
            elif not post and method in self._tiers:
                tokens, last = self._tiers[method]
                self._tiers[method] = (tokens + 1.0, last)
        if refused is None:
            return None
        self.rate_limited.append(RateLimited(method, key, now, *refused))
        return refused[0]

    def _tier_wait(self, method: str, now: float) -> float:
        """Seconds until the method's tier allows a call; 0 means allowed, and its token is taken."""
        per_minute = TIER_CALLS_PER_MINUTE[METHOD_TIERS[method]]
        tokens, last = self._tiers.get(method, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - last) * per_minute / 60)
        if tokens < 1.0:
            self._tiers[method] = (tokens, now)
            return (1.0 - tokens) * 60 / per_minute
        self._tiers[method] = (tokens - 1.0, now)
        return 0.0

    def _pace(self, params: dict[str, Any]) -> bool:
        """Token bucket per channel: bursts of 3, then 1 message per second."""
        channel = self._resolve_channel(params.get("channel"))
        now = time.monotonic()
        tokens, last = self._pacing.get(channel, (3.0, now))
        tokens = min(3.0, tokens + (now - last))
        allowed = tokens >= 1.0
        self._pacing[channel] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def _next_ts(self) -> str:
        self._seq += 1
        micros = 1_700_000_000_000_000 + self._seq * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_channel(self, channel: Any) -> str:
        if not channel or not isinstance(channel, str) or channel[0] not in "CGDUW":
            raise SlackApiFailure("channel_not_found")
        return self.dm_channel_for(channel) if channel[0] in "UW" else channel

    def _user(self, user_id: Any) -> dict:
        if user_id not in self._users:
            raise SlackApiFailure("user_not_found")
        u = self._users[user_id]
        tz = u.get("tz", "UTC")
        try:
            offset = int(datetime.now(ZoneInfo(tz)).utcoffset().total_seconds())  # type: ignore[union-attr]
        except Exception:
            offset = 0
        profile = {
            "email": u.get("email"),
            "real_name": u.get("real_name") or u.get("name") or u["id"],
            "display_name": u.get("name", ""),
        }
        return {
            "id": u["id"],
            "team_id": self.team_id,
            "name": u.get("name", u["id"]),
            "real_name": profile["real_name"],
            "tz": tz,
            "tz_offset": offset,
            "is_bot": False,
            "deleted": False,
            "profile": profile,
        }

    def _record(self, channel: str, params: dict[str, Any], **extra: Any) -> dict:
        if not params.get("text") and not params.get("blocks") and not extra.get("files"):
            raise SlackApiFailure("no_text")
        msg = {
            "channel": channel,
            "ts": self._next_ts(),
            "text": params.get("text") or "",
            "blocks": params.get("blocks"),
            "thread_ts": params.get("thread_ts"),
            "user": None,
            "ephemeral": False,
            "metadata": params.get("metadata"),
            "updated": False,
            "files": [],
            **extra,
        }
        self.messages.append(msg)
        return msg

    @staticmethod
    def _as_slack(msg: dict, *, with_metadata: bool = True) -> dict:
        out = {"type": "message", "user": "U0BOT", "bot_id": "B0BOT", "ts": msg["ts"], "text": msg["text"]}
        for key in ("blocks", "thread_ts", "files"):
            if msg.get(key):
                out[key] = msg[key]
        if with_metadata and msg.get("metadata"):
            out["metadata"] = msg["metadata"]
        return out

    # ---------------------------------------------------------------- API methods
    def _api_auth_test(self, p: dict) -> dict:
        return {
            "url": "https://rehearse-standin.slack.com/",
            "team": "Rehearse Stand-in",
            "user": "rehearse",
            "team_id": self.team_id,
            "user_id": "U0BOT",
            "bot_id": "B0BOT",
            "app_id": "A0REHEARSE",
        }

    def _api_chat_postMessage(self, p: dict) -> dict:
        msg = self._record(self._resolve_channel(p.get("channel")), p)
        return {"channel": msg["channel"], "ts": msg["ts"], "message": self._as_slack(msg)}

    def _api_chat_delete(self, p: dict) -> dict:
        found = [m for m in self.messages if m["channel"] == p.get("channel") and m["ts"] == p.get("ts")
                 and not m["ephemeral"]]
        if not found:
            raise SlackApiFailure("message_not_found")
        self.messages.remove(found[0])
        self.deleted.append(found[0])
        return {"channel": found[0]["channel"], "ts": found[0]["ts"]}

    def _api_chat_update(self, p: dict) -> dict:
        found = [
            m
            for m in self.messages
            if m["channel"] == p.get("channel") and m["ts"] == p.get("ts") and not m["ephemeral"]
        ]
        if not found:
            raise SlackApiFailure("message_not_found")
        msg = found[0]
        if "text" in p or "blocks" in p:
            msg["text"], msg["blocks"] = p.get("text") or "", p.get("blocks")
        if "metadata" in p:
            msg["metadata"] = p["metadata"]
        msg["updated"] = True
        return {
            "channel": msg["channel"],
            "ts": msg["ts"],
            "text": msg["text"],
            "message": self._as_slack(msg),
        }

    def _api_chat_postEphemeral(self, p: dict) -> dict:
        if not p.get("user"):
            raise SlackApiFailure("user_not_found")
        msg = self._record(self._resolve_channel(p.get("channel")), p, user=p["user"], ephemeral=True)
        return {"message_ts": msg["ts"]}

    def _api_conversations_open(self, p: dict) -> dict:
        users = [u for u in str(p.get("users") or "").split(",") if u]
        if len(users) != 1 or users[0][0] not in "UW":
            raise SlackApiFailure("user_not_found" if not users else "invalid_arguments")
        return {"channel": {"id": self.dm_channel_for(users[0]), "is_im": True, "user": users[0]}}

    def _api_conversations_history(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"))
        with_meta = _truthy(p.get("include_all_metadata"))
        top = [
            m
            for m in self.messages
            if m["channel"] == channel and not m["ephemeral"] and m["thread_ts"] in (None, m["ts"])
        ]
        limit = int(p.get("limit") or 100)
        newest_first = [self._as_slack(m, with_metadata=with_meta) for m in reversed(top)]
        return {"messages": newest_first[:limit], "has_more": len(newest_first) > limit}

    def _api_conversations_replies(self, p: dict) -> dict:
        channel = self._resolve_channel(p.get("channel"))
        with_meta = _truthy(p.get("include_all_metadata"))
        thread = [m for m in self.messages if m["channel"] == channel and not m["ephemeral"]
                  and p.get("ts") in (m["ts"], m["thread_ts"])]
        limit = int(p.get("limit") or 100)
        return {"messages": [self._as_slack(m, with_metadata=with_meta) for m in thread[:limit]],
                "has_more": len(thread) > limit}

    def _api_users_lookupByEmail(self, p: dict) -> dict:
        email = str(p.get("email") or "").lower()
        for uid, u in self._users.items():
            if str(u.get("email") or "").lower() == email and email:
                return {"user": self._user(uid)}
        raise SlackApiFailure("users_not_found")

    def _api_users_info(self, p: dict) -> dict:
        return {"user": self._user(p.get("user"))}

    def _api_views_publish(self, p: dict) -> dict:
        view = p.get("view")
        if not p.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            raise SlackApiFailure("invalid_arguments")
        self.views[p["user_id"]] = view
        return {"view": {"id": "V" + p["user_id"][1:], "team_id": self.team_id, **view}}

    def _api_views_open(self, p: dict) -> dict:
        view = p.get("view")
        if not p.get("trigger_id") or not isinstance(view, dict) or view.get("type") != "modal":
            raise SlackApiFailure("invalid_arguments")
        if len(str((view.get("title") or {}).get("text", ""))) > 24:
            raise SlackApiFailure("invalid_arguments")  # Slack caps modal titles at 24 characters
        opened = {"id": f"V{len(self.modals) + 1:08d}", "team_id": self.team_id, **view}
        self.modals.append(opened)
        return {"view": opened}

    def _api_files_getUploadURLExternal(self, p: dict) -> dict:
        if not p.get("filename") or not str(p.get("length") or "").isdigit():
            raise SlackApiFailure("invalid_arguments")
        file_id = f"F{len(self.files) + 1:07d}"
        self.files[file_id] = {
            "id": file_id,
            "name": p["filename"],
            "title": p["filename"],
            "length": int(p["length"]),
            "content": None,
        }
        return {"upload_url": self.base_url.replace("/api/", f"/upload/{file_id}"), "file_id": file_id}

    def _api_files_completeUploadExternal(self, p: dict) -> dict:
        entries = p.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackApiFailure("invalid_arguments")
        done = []
        for entry in entries:
            f = self.files.get(entry.get("id"))
            if f is None or f["content"] is None:
                raise SlackApiFailure("file_not_found")
            f["title"] = entry.get("title") or f["name"]
            done.append({k: v for k, v in f.items() if k != "content"})
        channel = p.get("channel_id") or (str(p.get("channels") or "").split(",")[0] or None)
        if channel:
            params = {"text": p.get("initial_comment"), "thread_ts": p.get("thread_ts")}
            self._record(self._resolve_channel(channel), params, files=done)
        return {"files": done}

    def _upload(self, file_id: str, content: bytes) -> bool:
        with self._lock:
            self.calls.append(Call("upload", {"file_id": file_id, "length": len(content)}))
            if file_id not in self.files:
                return False
            self.files[file_id]["content"] = content
            return True


def _decode_fields(params: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FIELDS:
        value = params.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                params[key] = json.loads(value)
            except ValueError:
                pass
    return params


def _make_handler(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet by design
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str], ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path.startswith("/upload/"):
                ok = standin._upload(url.path.rsplit("/", 1)[-1], raw)
                self._send(200 if ok else 404, f"OK - {len(raw)}".encode(), {}, "text/plain")
                return
            if not url.path.startswith("/api/"):
                self._send(404, b"not found", {}, "text/plain")
                return
            params: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
            if "json" in (self.headers.get("Content-Type") or "") and raw:
                body = json.loads(raw)
                params.update(body if isinstance(body, dict) else {})
            elif raw:
                params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            auth = self.headers.get("Authorization") or ""
            token = params.pop("token", None) or (auth[7:] if auth.startswith("Bearer ") else None)
            status, answer, headers = standin._handle(url.path[len("/api/") :], _decode_fields(params), token)
            self._send(status, json.dumps(answer).encode(), headers, "application/json; charset=utf-8")

        do_GET = do_POST = _serve

    return Handler
