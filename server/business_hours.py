"""A site's business hours (issue 18): when its team answers, in the site's own time zone.

Hours are weekly intervals of local wall-clock time, at most a day each and never across
midnight (a night shift is two intervals). A site without any is always open. The widget
asks whether a site is open now and when it opens next; the reports (issue 19) count only
open time in a site's durations, from the weekly intervals and the zone's UTC offsets.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.errors import Invalid
from server.text import has_control_characters
from storage.models import OpenHours, Site

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 1440
# Four intervals a day (a split shift and then some); more is a client bug.
INTERVALS_MAX = 4 * len(WEEKDAYS)
AWAY_MESSAGE_MAX = 500
REPLY_TIME_MAX = 120
# IANA names are at most ~30 characters ("America/Argentina/ComodRivadavia"); longer is junk.
TIME_ZONE_MAX_CHARS = 64
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
# ASCII digits only: `\d` would take other scripts' digits.
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")


def time_zone(name: str, field: str = "tz") -> ZoneInfo:
    """An IANA zone by name; anything else (a path, a POSIX TZ string) is refused."""
    if len(name) > TIME_ZONE_MAX_CHARS or not _ZONE.fullmatch(name):
        raise Invalid(
            "invalid_time_zone", f"{field} must be an IANA time zone such as Europe/Berlin"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("invalid_time_zone", f"unknown time zone {name!r}") from None


def parse_hours(items: Sequence[Mapping[str, Any]]) -> tuple[OpenHours, ...]:
    """``[{"day": "mon", "open": "09:00", "close": "17:00"}, …]`` as sorted intervals;
    Invalid names the first item that is not a weekday with an open time before its close
    time, or that overlaps another of its day."""
    if len(items) > INTERVALS_MAX:
        raise Invalid("invalid_field", f"business_hours holds at most {INTERVALS_MAX} intervals")
    found = []
    for n, item in enumerate(items):
        day, opens, closes = item.get("day"), item.get("open"), item.get("close")
        if not isinstance(day, str) or day.lower() not in WEEKDAYS:
            raise Invalid(
                "invalid_field", f"business_hours[{n}].day must be one of {', '.join(WEEKDAYS)}"
            )
        interval = OpenHours(WEEKDAYS.index(day.lower()), _minute(opens, n), _minute(closes, n))
        if interval.open >= interval.close or interval.open == MINUTES_PER_DAY:
            raise Invalid(
                "invalid_field", f"business_hours[{n}] must open before it closes, on one day"
            )
        found.append(interval)
    found.sort(key=lambda h: (h.weekday, h.open))
    for before, after in itertools.pairwise(found):
        if before.weekday == after.weekday and after.open < before.close:
            raise Invalid(
                "invalid_field",
                f"business_hours overlap on {WEEKDAYS[after.weekday]} at {_clock(after.open)}",
            )
    return tuple(found)


def _minute(value: object, n: int) -> int:
    if not isinstance(value, str) or not _CLOCK.fullmatch(value):
        raise Invalid("invalid_field", f"business_hours[{n}] times must be HH:MM, 00:00-24:00")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def hours_json(hours: Sequence[OpenHours]) -> list[dict[str, str]]:
    return [
        {"day": WEEKDAYS[h.weekday], "open": _clock(h.open), "close": _clock(h.close)}
        for h in hours
    ]


def text_setting(value: str, name: str, max_chars: int) -> str:
    """An away message or reply-time text: trimmed, bounded, lines of printable text."""
    value = value.strip()
    if len(value) > max_chars:
        raise Invalid("invalid_field", f"{name} is longer than {max_chars} characters")
    if any(has_control_characters(line) for line in value.split("\n")):
        raise Invalid("invalid_field", f"{name} must not contain control characters")
    return value


def is_open(site: Site, now: float) -> bool:
    if not site.business_hours:
        return True
    local = datetime.fromtimestamp(now, ZoneInfo(site.time_zone))
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    return any(h.weekday == weekday and h.open <= minute < h.close for h in site.business_hours)


def next_opening(site: Site, now: float) -> float | None:
    """When a closed site opens next (epoch seconds); None when it is open now or always."""
    if is_open(site, now):
        return None
    zone = ZoneInfo(site.time_zone)
    today = datetime.fromtimestamp(now, zone).date()
    # Within a week and a day every weekday comes round, today's later hours included.
    for day in (today + timedelta(days=d) for d in range(len(WEEKDAYS) + 1)):
        for h in site.business_hours:
            opens = _instant(day, h.open, zone)
            if h.weekday == day.weekday() and opens > now:
                return opens
    return None


def _instant(day: date, minute: int, zone: ZoneInfo) -> float:
    return datetime.combine(day, time(minute // 60, minute % 60), zone).timestamp()


def week_seconds(hours: Sequence[OpenHours]) -> tuple[tuple[int, int], ...]:
    """The open intervals as seconds from Monday 00:00 local, for the reports' SQL."""
    return tuple(
        ((h.weekday * MINUTES_PER_DAY + h.open) * 60, (h.weekday * MINUTES_PER_DAY + h.close) * 60)
        for h in hours
    )
