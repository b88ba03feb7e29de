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

    def _tokens(self, channel: str, now: datetime) -> float:
        tokens, at = self._buckets.get(channel, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at).total_seconds() * self.per_second)

    def wait(self, channel: str, now: datetime) -> timedelta:
        tokens = self._tokens(channel, now)
        if tokens >= 1:
            return timedelta(0)
        return timedelta(seconds=(1 - tokens) / self.per_second)

    def spend(self, channel: str, now: datetime) -> None:
        self._buckets[channel] = (self._tokens(channel, now) - 1, now)
