"""Who is who in Slack: emails to user ids and back, cached (users.lookupByEmail is Tier 3)."""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class SlackDirectory:
    """Resolves people through the Web API; remembers answers, including 'not found'."""

    def __init__(self, client: WebClient):
        self.client = client
        self._by_email: dict[str, str | None] = {}
        self._by_user: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def user_id_for_email(self, email: str) -> str | None:
        email = email.lower()
        with self._lock:
            if email in self._by_email:
                return self._by_email[email]
        try:
            user = self.client.users_lookupByEmail(email=email)["user"]
            found = user["id"]
        except SlackApiError as exc:
            if exc.response.get("error") not in ("users_not_found", "user_not_found"):
                raise
            log.warning("Slack knows no user with email %s", email)
            found = None
        with self._lock:
            self._by_email[email] = found
            if found:
                self._by_user[found] = email
        return found

    def email_for_user(self, user_id: str) -> str | None:
        with self._lock:
            if user_id in self._by_user:
                return self._by_user[user_id]
        try:
            user = self.client.users_info(user=user_id)["user"]
            email = (user.get("profile") or {}).get("email")
        except SlackApiError as exc:
            if exc.response.get("error") != "user_not_found":
                raise
            email = None
        email = email.lower() if email else None
        with self._lock:
            self._by_user[user_id] = email
            if email:
                self._by_email[email] = user_id
        return email

    def is_one_of(self, user_id: str, people: list[str]) -> bool:
        """True when `user_id` is listed in `people` (Slack ids or emails)."""
        if user_id in people:
            return True
        emails = [p for p in people if "@" in p]
        return bool(emails) and self.email_for_user(user_id) in emails
