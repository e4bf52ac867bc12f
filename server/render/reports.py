"""How /api/v1/reports renders figures: JSON for the Reports page, and CSV with the same rows
for spreadsheets. Every figure set is first flattened into one table (``table``); the JSON
adds the structure a chart wants, the CSV is that table as it is."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

from server.reports import Figures, Period
from storage.base import (
    RESPONSE_BANDS_S,
    Durations,
    HandoverFigures,
    RatingFigures,
    ResponseFigures,
    VolumeFigures,
)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EPOCH = date(1970, 1, 1)

Table = tuple[tuple[str, ...], list[tuple[Any, ...]]]


def period_json(p: Period) -> dict[str, Any]:
    q = p.query
    return {
        "from": p.first_day.isoformat(),
        "to": p.last_day.isoformat(),
        "tz": p.zone.key,
        "start": q.start,
        "end": q.end,
        "filters": {
            "channels": list(q.source_apps) if q.source_apps is not None else None,
            "site_id": q.site_id,
            "team_id": q.team_id,
            "operator_id": q.operator_id,
        },
        # Whether durations count only open time on some site (issue 18).
        "business_hours": bool(q.hours),
    }


def report_json(p: Period, figures: Figures) -> dict[str, Any]:
    header, rows = table(p, figures)
    data: dict[str, Any] = {"period": period_json(p)}
    if isinstance(figures, ResponseFigures):
        data["first_response"] = _durations(figures.first_response)
        data["unanswered"] = figures.unanswered
        data["resolution"] = _durations(figures.resolution)
    elif isinstance(figures, HandoverFigures):
        data["share"] = _share(figures)
    elif isinstance(figures, RatingFigures):
        data["average"] = figures.average
        data["count"] = figures.count
    data["rows"] = [dict(zip(header, row, strict=True)) for row in rows]
    return data


def report_csv(p: Period, figures: Figures) -> str:
    header, rows = table(p, figures)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def table(p: Period, figures: Figures) -> Table:
    """The figure set as one table: what the CSV holds and the JSON's ``rows``."""
    if isinstance(figures, VolumeFigures):
        return _volume(p, figures)
    if isinstance(figures, ResponseFigures):
        return _responses(figures)
    if isinstance(figures, HandoverFigures):
        return (
            ("opened", "with_bot", "handed_over", "share"),
            [(figures.opened, figures.with_bot, figures.handed_over, _share(figures))],
        )
    return _ratings(figures)


def _volume(p: Period, v: VolumeFigures) -> Table:
    """Every day of the period and every hour of the week, zeros included, so a chart's
    axis is the row order."""
    rows: list[tuple[Any, ...]] = []
    day = p.first_day
    while day <= p.last_day:
        n = (day - _EPOCH).days
        rows.append(("day", day.isoformat(), None, v.opened_by_day.get(n, 0),
                     v.resolved_by_day.get(n, 0)))  # fmt: skip
        day += timedelta(days=1)
    for hour in range(7 * 24):
        rows.append((
            "hour_of_week", WEEKDAYS[hour // 24], hour % 24, v.opened_by_hour.get(hour, 0),
            v.resolved_by_hour.get(hour, 0),
        ))  # fmt: skip
    return ("series", "when", "hour", "opened", "resolved"), rows


def _responses(r: ResponseFigures) -> Table:
    rows: list[tuple[Any, ...]] = [
        ("first_response", None, None, r.first_response.count, r.first_response.median,
         r.first_response.p90),
        ("resolution", None, None, r.resolution.count, r.resolution.median, r.resolution.p90),
        ("unanswered", None, None, r.unanswered, None, None),
    ]  # fmt: skip
    lows = (0, *RESPONSE_BANDS_S)
    highs: tuple[int | None, ...] = (*RESPONSE_BANDS_S, None)
    for low, high, count in zip(lows, highs, r.first_response_bands, strict=True):
        rows.append(("first_response_band", low, high, count, None, None))
    return ("figure", "from_s", "to_s", "count", "median_s", "p90_s"), rows


def _ratings(r: RatingFigures) -> Table:
    rows: list[tuple[Any, ...]] = [
        ("score", score, count, None, None, None)
        for score, count in enumerate(r.distribution, start=1)
    ]
    rows.extend(
        ("comment", c.score, None, c.comment, c.convo_id, c.resolved_at) for c in r.comments
    )
    return ("kind", "score", "count", "comment", "conversation_id", "resolved_at"), rows


def _durations(d: Durations) -> dict[str, Any]:
    return {"count": d.count, "median_s": d.median, "p90_s": d.p90}


def _share(h: HandoverFigures) -> float | None:
    """Of the conversations the bot answered, the part an operator took over."""
    return h.handed_over / h.with_bot if h.with_bot else None
