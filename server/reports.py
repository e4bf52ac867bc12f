"""Reports (issue 19): who may see which figures, over which period, in which time zone.

The figures themselves are computed by the Store, in SQL; this module turns a request's
period, zone and filters into a ReportQuery, checks that every id it names exists in the
account, and keeps an operator who is not an admin to their own figures.

Durations (first response, resolution) count only open time on sites with business hours
(issue 18); the store counts it in SQL from each site's weekly hours and its zone's offsets,
which this module works out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from server.business_hours import time_zone, week_seconds
from server.errors import Forbidden, Invalid, NotFound
from storage.base import (
    HandoverFigures,
    RatingFigures,
    ReportQuery,
    ResponseFigures,
    SiteHours,
    Store,
    VolumeFigures,
)
from storage.models import Operator, SourceApp

ReportKind = Literal["volume", "response-times", "handover", "ratings"]
REPORT_KINDS: tuple[ReportKind, ...] = ("volume", "response-times", "handover", "ratings")
Figures = VolumeFigures | ResponseFigures | HandoverFigures | RatingFigures
# A year of days (a leap year's included): past that, a report is a data export.
PERIOD_MAX_DAYS = 366
# ASCII digits only: `\d` would take other scripts' digits, which date() then refuses.
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Offsets change only at zone transitions, hours or more apart; a scan at this step finds
# each one, then bisection finds its exact second.
_SCAN_STEP_S = 3600
# A duration a report counts starts or ends within this much of its period (a reply a year
# late, a conversation resolved a year after it opened); past it, the zone's offset at that
# edge stands in, off by at most a daylight-saving hour.
HOURS_MARGIN_S = 366 * 86_400
# The channel tags the inbox and API show, to the source apps they stand for.
CHANNELS: dict[str, SourceApp] = {
    "chatbot": "chatbot",
    "sms": "smsbroadcast",
    "email": "emailbroadcast",
    "chat": "liveoperator",
}


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """A report as a client asked for it, not yet checked."""

    start: str
    end: str
    tz: str = "UTC"
    channels: tuple[str, ...] | None = None
    site_id: int | None = None
    team_id: int | None = None
    operator_id: int | None = None


@dataclass(frozen=True, slots=True)
class Period:
    first_day: date
    last_day: date
    zone: ZoneInfo
    query: ReportQuery


def _day(value: str, name: str) -> date:
    if not _DATE.fullmatch(value):
        raise Invalid("invalid_date", f"{name} must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_date", f"{name} is not a calendar date") from None


def offsets(zone: ZoneInfo, start: float, end: float) -> tuple[tuple[int, int], ...]:
    """The zone's UTC offset at ``start`` and at every change before ``end``."""

    def offset(instant: float) -> int:
        delta = datetime.fromtimestamp(instant, zone).utcoffset()
        assert delta is not None
        return int(delta.total_seconds())

    found = [(int(start), offset(start))]
    here = int(start)
    while here < end:
        step = min(here + _SCAN_STEP_S, int(end))
        if offset(step) != found[-1][1]:
            low, high = here, step  # offset(low) is the old one, offset(high) the new
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == found[-1][1] else (low, middle)
            found.append((high, offset(high)))
        here = step
    return tuple(found)


def period(request: ReportRequest) -> Period:
    first, last = _day(request.start, "from"), _day(request.end, "to")
    if first > last:
        raise Invalid("invalid_period", "from must not be after to")
    if (last - first).days + 1 > PERIOD_MAX_DAYS:
        raise Invalid("period_too_long", f"a report covers at most {PERIOD_MAX_DAYS} days")
    zone = time_zone(request.tz)
    start = datetime.combine(first, time(), zone).timestamp()
    end = datetime.combine(last + timedelta(days=1), time(), zone).timestamp()
    apps = None
    if request.channels is not None:
        unknown = [c for c in request.channels if c not in CHANNELS]
        if unknown:
            raise Invalid(
                "invalid_channel", f"unknown channel {unknown[0]!r}: one of {', '.join(CHANNELS)}"
            )
        apps = tuple(CHANNELS[c] for c in request.channels)
    query = ReportQuery(
        start=start,
        end=end,
        offsets=offsets(zone, start, end),
        source_apps=apps,
        site_id=request.site_id,
        team_id=request.team_id,
        operator_id=request.operator_id,
    )
    return Period(first, last, zone, query)


class Reports:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def figures(
        self, account_id: str, viewer: Operator | None, kind: str, request: ReportRequest
    ) -> tuple[Period, Figures]:
        """One figure set for ``viewer`` (None: the account's API key, as an admin). An
        operator who is not an admin sees only their own figures: without operator_id they
        get them, with another operator's id a 403."""
        run = self._runs().get(kind)
        if run is None:
            raise NotFound("report_not_found", f"no report {kind!r}: one of {REPORT_KINDS}")
        if viewer is not None and not viewer.is_admin:
            if request.operator_id not in (None, viewer.id):
                raise Forbidden("own_figures_only", "operators see only their own figures")
            request = dataclasses.replace(request, operator_id=viewer.id)
        chosen = period(request)
        await self._check_ids(account_id, request)
        if kind == "response-times":
            hours = await self._hours(account_id, chosen.query)
            chosen = dataclasses.replace(
                chosen, query=dataclasses.replace(chosen.query, hours=hours)
            )
        return chosen, await run(account_id, chosen.query)

    async def _hours(self, account_id: str, q: ReportQuery) -> tuple[SiteHours, ...]:
        """The business hours of the sites the report covers, with their zones' offsets
        (worked out once per zone) around the period."""
        zones: dict[str, tuple[tuple[int, int], ...]] = {}
        found = []
        for site in await self._store.list_sites(account_id):
            if not site.business_hours or q.site_id not in (None, site.id):
                continue
            if site.time_zone not in zones:
                zones[site.time_zone] = offsets(
                    ZoneInfo(site.time_zone), q.start - HOURS_MARGIN_S, q.end + HOURS_MARGIN_S
                )
            found.append(
                SiteHours(site.id, week_seconds(site.business_hours), zones[site.time_zone])
            )
        return tuple(found)

    def _runs(self) -> dict[str, Callable[[str, ReportQuery], Awaitable[Figures]]]:
        return {
            "volume": self._store.report_volume,
            "response-times": self._store.report_response_times,
            "handover": self._store.report_handover,
            "ratings": self._store.report_ratings,
        }

    async def _check_ids(self, account_id: str, request: ReportRequest) -> None:
        """Unknown ids are a 404 rather than an empty report, which would look like a quiet
        week. A deleted team or site is unknown too, though its conversations remain."""
        if request.site_id is not None and not await self._store.get_site(
            account_id, request.site_id
        ):
            raise NotFound("site_not_found", f"no site {request.site_id}")
        if request.team_id is not None and not any(
            t.id == request.team_id for t in await self._store.list_teams(account_id)
        ):
            raise NotFound("team_not_found", f"no team {request.team_id}")
        if request.operator_id is not None and not await self._store.get_operator(
            account_id, request.operator_id
        ):
            raise NotFound("operator_not_found", f"no operator {request.operator_id}")
