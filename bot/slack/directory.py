"""Who is who in Slack: emails to user ids and back, cached (users.lookupByEmail is Tier 3)."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger(__name__)

NOT_FOUND = {"users_not_found", "user_not_found"}
FORGET_MISSES_AFTER_S = 3600.0  # someone not in Slack yet may join: ask again after an hour
REFRESH_AFTER_S = 86400.0       # people move and change time zones: refresh what we know daily


class SlackDirectory:
    """Resolves people through the Web API; remembers answers for a day, and 'not found' for an hour.

    When Slack cannot answer (rate limited, unreachable), the person is unresolved for now and nothing is
    cached, so the caller keeps the call as unmatched instead of failing the request.
    """

    def __init__(self, client: WebClient, *, clock=time.monotonic):  # noqa: ANN001
        self.client = client
        self.clock = clock
        self._known: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: str) -> tuple[bool, str | None]:
        with self._lock:
            value, at = self._known.get(key, (None, -1.0))
        fresh = at >= 0 and self.clock() - at < (REFRESH_AFTER_S if value is not None else FORGET_MISSES_AFTER_S)
        return fresh, value

    def _remember(self, key: str, value: str | None, reverse_key: str | None = None) -> None:
        with self._lock:
            self._known[key] = (value, self.clock())
            if value and reverse_key:  # the answer also tells the other direction
                self._known[reverse_key] = (key.split(":", 1)[1], self.clock())

    def _ask(self, method: str, **params: str) -> dict | None:
        """Slack's `user` object; None when Slack says there is no such user. Raises LookupError when unsure."""
        try:
            return self.client.api_call(method, params=params).get("user")
        except SlackApiError as exc:
            if exc.response.get("error") in NOT_FOUND:
                return None
            raise LookupError(f"{method}: {exc.response.get('error')}") from exc
        except (SlackClientError, OSError) as exc:
            raise LookupError(f"{method}: {exc}") from exc

    def user_id_for_email(self, email: str, *, cached_only: bool = False) -> str | None:
        key = f"email:{email.lower()}"
        fresh, value = self._cached(key)
        if fresh or cached_only:
            return value
        try:
            user = self._ask("users.lookupByEmail", email=email.lower())
        except LookupError as exc:
            log.warning("could not resolve %s now (%s); will try again", email, exc)
            return None
        found = user["id"] if user else None
        self._remember(key, found, reverse_key=f"user:{found}" if found else None)
        return found

    def _profile(self, user_id: str) -> tuple[str | None, str | None]:
        """(email, IANA time zone) from users.info, cached like every other answer."""
        fresh, email = self._cached(f"user:{user_id}")
        tz_fresh, zone = self._cached(f"tz:{user_id}")
        if fresh and tz_fresh:
            return email, zone
        try:
            user = self._ask("users.info", user=user_id) or {}
        except LookupError as exc:
            log.warning("could not look up %s now (%s); will try again", user_id, exc)
            return (email if fresh else None), (zone if tz_fresh else None)
        email = ((user.get("profile") or {}).get("email") or "").lower() or None
        self._remember(f"user:{user_id}", email, reverse_key=f"email:{email}" if email else None)
        self._remember(f"tz:{user_id}", user.get("tz"))
        return email, user.get("tz")

    def email_for_user(self, user_id: str) -> str | None:
        return self._profile(user_id)[0]

    def timezone_for(self, user_id: str, *, cached_only: bool = False) -> str | None:
        """The user's time zone as Slack knows it (their profile setting), or None.

        `cached_only` never calls Slack (for use inside a database transaction)."""
        if cached_only:
            return self._cached(f"tz:{user_id}")[1]
        return self._profile(user_id)[1]

    def is_one_of(self, user_id: str, people: list[str]) -> bool:
        """True when `user_id` is listed in `people` (Slack ids or emails)."""
        if user_id in people:
            return True
        emails = [p for p in people if "@" in p]
        return bool(emails) and self.email_for_user(user_id) in emails
