"""Per-channel pacing for chat.postMessage: about one message a second, with short bursts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class ChannelPacer:
    """A token bucket per channel; `wait(channel, now)` says how long until a post is allowed."""

    per_second: float = 1.0
    burst: int = 3
    _buckets: dict[str, tuple[float, datetime]] = field(default_factory=dict)
    _empty: dict[str, datetime] = field(default_factory=dict)  # channel -> when its next token comes

    def _tokens(self, channel: str, now: datetime) -> float:
        tokens, at = self._buckets.get(channel, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at).total_seconds() * self.per_second)

    def wait(self, channel: str, now: datetime) -> timedelta:
        tokens = self._tokens(channel, now)
        if tokens >= 1:
            return timedelta(0)
        return timedelta(seconds=(1 - tokens) / self.per_second)

    def spend(self, channel: str, now: datetime) -> None:
        tokens = self._tokens(channel, now) - 1
        self._buckets[channel] = (tokens, now)
        if tokens < 1:
            self._empty[channel] = now + timedelta(seconds=(1 - tokens) / self.per_second)

    def paced(self, now: datetime) -> set[str]:
        """Channels that may not post yet: the sender leaves their queues unclaimed instead of deferring them."""
        for channel in [c for c, ready in self._empty.items() if ready <= now]:
            del self._empty[channel]
        return set(self._empty)

    def next_ready(self) -> datetime | None:
        """When the first paced channel may post again (None: none is paced)."""
        return min(self._empty.values(), default=None)


# Slack's Web API rate-limit tiers: calls per minute, per method, per workspace.
TIER_CALLS_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
# The tier of each Web API method Rehearse calls (chat.postMessage is special: paced per channel, above).
METHOD_TIERS = {
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "conversations.open": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "users.info": 4,
    "users.lookupByEmail": 3,
    "views.publish": 4,
    "views.open": 4,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
}


@dataclass
class MethodPacer:
    """A token bucket per tiered Web API method (a minute's allowance as the burst, refilled evenly), plus holds.

    `reserve(method, now)` takes a call's token and answers zero, or answers how long to wait without taking
    one; `hold(method, until)` keeps a method shut after a 429 until its Retry-After has passed. Methods
    without a tier (chat.postMessage, file bytes) are never held up here.
    """

    tiers: dict[str, int] = field(default_factory=lambda: dict(METHOD_TIERS))
    _buckets: dict[str, tuple[float, datetime]] = field(default_factory=dict)
    _holds: dict[str, datetime] = field(default_factory=dict)

    def per_minute(self, method: str) -> int | None:
        tier = self.tiers.get(method)
        return TIER_CALLS_PER_MINUTE[tier] if tier else None

    def reserve(self, method: str, now: datetime) -> timedelta:
        held = self._holds.get(method)
        if held is not None and held > now:
            return held - now
        limit = self.per_minute(method)
        if limit is None:
            return timedelta(0)
        tokens, at = self._buckets.get(method, (float(limit), now))
        tokens = min(float(limit), tokens + (now - at).total_seconds() * limit / 60)
        if tokens < 1:
            return timedelta(seconds=(1 - tokens) * 60 / limit)
        self._buckets[method] = (tokens - 1, now)
        return timedelta(0)

    def hold(self, method: str, until: datetime) -> None:
        """Shut a tiered method until `until`; a 429 on chat.postMessage concerns one channel, not the method."""
        if self.per_minute(method) is not None:
            self._holds[method] = max(until, self._holds.get(method, until))
