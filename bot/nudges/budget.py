"""The notification budget: whether a rep may get a nudge now, and when a message may reach them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Completed:
    """A nudge the rep completed on this criterion: when, and how they were scoring then."""

    at: datetime
    mean_then: float


@dataclass(frozen=True)
class RepBudget:
    """What the budget needs to know about a rep, read from the database."""

    open_nudge: bool
    nudges_last_7_days: int
    completed: dict[str, Completed]


def budget_verdict(
    *, criterion: str, mean_now: float, worse_is_lower: bool, rep: RepBudget, weekly_cap: int,
    cooldown_days: int, now: datetime,
) -> str | None:
    """None when a nudge may be made now; otherwise the reason it waits (shown to whoever asks)."""
    if rep.open_nudge:
        return "the rep already has an open nudge"
    if rep.nudges_last_7_days >= weekly_cap:
        return f"weekly cap of {weekly_cap} nudges reached"
    done = rep.completed.get(criterion)
    if done is not None and now - done.at < timedelta(days=cooldown_days):
        worse = mean_now < done.mean_then if worse_is_lower else mean_now > done.mean_then
        if not worse:
            until = done.at + timedelta(days=cooldown_days)
            return f"cooling down after the last nudge on this skill until {until:%Y-%m-%d}"
    return None


def next_working_time(
    now: datetime, *, timezone: str, working_days: list[str], hours: tuple[time, time] | None
) -> datetime:
    """`now` if it falls in the working hours of a working day in `timezone`, else the next working start.

    `hours` None means any time of a working day.

    Local wall-clock times are resolved through zoneinfo, so a daylight-saving change moves the answer with
    the clock on the wall, not by a fixed offset.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start, end = hours or (time(0), time.max)
    for days_ahead in range(8):
        day = local.date() + timedelta(days=days_ahead)
        if WEEKDAYS[day.weekday()] not in working_days:
            continue
        opens = datetime.combine(day, start, tzinfo=zone)
        closes = datetime.combine(day, end, tzinfo=zone)
        if days_ahead == 0 and opens <= local < closes:
            return now
        if local < opens:
            return opens.astimezone(now.tzinfo)
    raise ValueError("no working day in the week; check budget.working_days")


def working_hours_between(start: datetime, end: datetime, *, timezone: str, working_days: list[str]) -> float:
    """Hours from `start` to `end` that fall on working days in `timezone`: nights count, a weekend does not."""
    zone = ZoneInfo(timezone)
    total, cursor = 0.0, start.astimezone(zone)
    end = end.astimezone(zone)
    while cursor < end:
        next_midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), tzinfo=zone)
        stop = min(next_midnight, end)
        if WEEKDAYS[cursor.weekday()] in working_days:  # real elapsed time, across a daylight-saving change too
            total += (stop.astimezone(UTC) - cursor.astimezone(UTC)).total_seconds() / 3600
        cursor = stop
    return total


def add_working_days(start: datetime, days: int, *, timezone: str, working_days: list[str]) -> datetime:
    """The same wall-clock time `days` working days after `start` in `timezone` (weekends skipped)."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    day, left = local.date(), days
    while left > 0:
        day += timedelta(days=1)
        if WEEKDAYS[day.weekday()] in working_days:
            left -= 1
    return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=zone).astimezone(start.tzinfo)
