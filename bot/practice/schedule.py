"""The follow-up ladder, as a pure function of the completion time and the configured gaps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta


def followup_dates(completed_at: datetime, ladder_days: Sequence[int]) -> list[datetime]:
    """When each follow-up falls due, counted from the moment the nudge's practice completed."""
    return [completed_at + timedelta(days=d) for d in ladder_days]
