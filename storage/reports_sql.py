"""The reports' SQL (issue 19), shared by both dialects: only placeholders and the cast from a
real number down to a whole one differ.

Local days and hours come from the UTC offsets the caller computed for the period
(ReportQuery.offsets), written into the statement as integer literals: neither database needs
to know the zone, and SQLite, which knows none, counts exactly as PostgreSQL does. Percentiles
are nearest-rank, from row_number() over the sorted values, which both dialects have.
Business hours (issue 18) come the same way: each site's weekly open intervals and its zone's
offsets as literals, so open time is counted in SQL on both dialects alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.base import (
    RATING_COMMENTS_MAX,
    RESPONSE_BANDS_S,
    Durations,
    HandoverFigures,
    RatingComment,
    RatingFigures,
    ReportQuery,
    ResponseFigures,
    VolumeFigures,
)

T = TypeVar("T")
Statement = tuple[str, list[Any]]
# A report's row: aggregates, read by position in the statement's column order.
Row = Sequence[Any]

SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3_600
HOURS_PER_WEEK = 168
# 1970-01-01, where epoch hours start, was a Thursday: 72 hours after Monday 00:00.
EPOCH_HOUR_OF_WEEK = 72
SCORES = range(1, 6)
WEEK_S = 7 * SECONDS_PER_DAY
# Monday 1969-12-29 00:00 came three days before the epoch: business hours count from it.
EPOCH_SINCE_MONDAY_S = 3 * SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class Report(Generic[T]):
    """Statements a backend runs in one read snapshot, in order, and what makes the figures
    of their rows (one list of rows per statement)."""

    statements: tuple[Statement, ...]
    figures: Callable[[Sequence[Sequence[Row]]], T]


class _Params:
    """Numbered placeholders, so one value (the period's bounds) can appear many times."""

    def __init__(self, placeholder: Callable[[int], str]) -> None:
        self._placeholder = placeholder
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self._placeholder(len(self.values))


class ReportsSql:
    def __init__(self, placeholder: Callable[[int], str], whole: Callable[[str], str]) -> None:
        # ``whole`` rounds a non-negative real down to an integer: PostgreSQL's cast to bigint
        # rounds to nearest, SQLite's CAST truncates.
        self._placeholder = placeholder
        self._whole = whole

    def volume(self, account_id: str, q: ReportQuery) -> Report[VolumeFigures]:
        p = _Params(self._placeholder)
        scope = _scope(p, account_id, q, owner=True)
        start, end = p(q.start), p(q.end)
        branches = []
        for series, column in (("opened", "c.created"), ("resolved", "c.resolved_at")):
            period = f"{column} >= {start} AND {column} < {end}"
            for unit, bucket in (("day", self._day(q, column)), ("hour", self._hour(q, column))):
                branches.append(
                    f"SELECT '{series}_{unit}', {bucket}, count(*) FROM conversations c"
                    f" WHERE {scope} AND {period} GROUP BY 2"
                )
        return Report(((" UNION ALL ".join(branches), p.values),), _volume)

    def response_times(self, account_id: str, q: ReportQuery) -> Report[ResponseFigures]:
        first = _Params(self._placeholder)
        scope = _scope(first, account_id, q, owner=False)
        opened = f"c.created >= {first(q.start)} AND c.created < {first(q.end)}"
        who = ""
        if q.operator_id is not None:
            operator = first(q.operator_id)
            # The replier's figure; a conversation nobody answered is its owner's.
            who = (
                f" AND (c.replied_by = {operator}"
                f" OR (c.replied_at IS NULL AND c.operator_id = {operator}))"
            )
        bands = ", ".join(
            f"sum(CASE WHEN v >= {low} AND v < {high} THEN 1 ELSE 0 END)"
            for low, high in zip((0, *RESPONSE_BANDS_S), (*RESPONSE_BANDS_S, 2**62), strict=True)
        )
        # Conversations the bot still handles never waited for a person.
        waited = f"{scope} AND {opened} AND c.asked_at IS NOT NULL" + (
            f" AND NOT (c.mode = 'bot' AND c.bot_answered){who}"
        )
        first_sql = (
            f"WITH {self._vals(q, 'c.asked_at', 'c.replied_at', waited)},"
            f" {_RANKED}"
            f" SELECT {_PERCENTILES}, {bands},"
            " (SELECT count(*) FROM vals WHERE v IS NULL) FROM ranked"
        )
        second = _Params(self._placeholder)
        scope = _scope(second, account_id, q, owner=True)
        resolved = f"c.resolved_at >= {second(q.start)} AND c.resolved_at < {second(q.end)}"
        vals = self._vals(q, "c.created", "c.resolved_at", f"{scope} AND {resolved}")
        resolution_sql = f"WITH {vals}, {_RANKED} SELECT {_PERCENTILES} FROM ranked"
        return Report(((first_sql, first.values), (resolution_sql, second.values)), _responses)

    def handover(self, account_id: str, q: ReportQuery) -> Report[HandoverFigures]:
        p = _Params(self._placeholder)
        scope = _scope(p, account_id, q, owner=True)
        sql = (
            "SELECT count(*), sum(CASE WHEN c.bot_answered THEN 1 ELSE 0 END),"
            " sum(CASE WHEN c.bot_answered AND c.mode = 'operator' THEN 1 ELSE 0 END)"
            f" FROM conversations c WHERE {scope}"
            f" AND c.created >= {p(q.start)} AND c.created < {p(q.end)}"
        )
        return Report(((sql, p.values),), _handover)

    def ratings(self, account_id: str, q: ReportQuery) -> Report[RatingFigures]:
        statements = []
        for select, tail in (
            ("c.rating, count(*)", " GROUP BY c.rating"),
            (
                "c.id, c.rating, c.rating_comment, c.rated_resolved_at, c.operator_id",
                " AND c.rating_comment <> ''"
                " ORDER BY c.rated_resolved_at DESC, c.id DESC"
                f" LIMIT {RATING_COMMENTS_MAX}",
            ),
        ):
            p = _Params(self._placeholder)
            scope = _scope(p, account_id, q, owner=True)
            rated = (
                f"c.rating IS NOT NULL AND c.rated_resolved_at >= {p(q.start)}"
                f" AND c.rated_resolved_at < {p(q.end)}"
            )
            sql = f"SELECT {select} FROM conversations c WHERE {scope} AND {rated}{tail}"
            statements.append((sql, p.values))
        return Report(tuple(statements), _ratings)

    def _local(self, q: ReportQuery, column: str) -> str:
        """``column`` (epoch seconds) shifted by the zone's offset at that instant."""
        return f"({column} + {_offset(q.offsets, column)})"

    def _vals(self, q: ReportQuery, since: str, until: str, where: str) -> str:
        """The ``vals`` CTE (and what it reads): each matching conversation's duration ``v``
        from ``since`` to ``until`` (NULL while ``until`` is), in wall-clock time, except on
        the sites with business hours, where only open time counts.

        Open time is a difference of one running count: the open seconds of the site's
        weekly hours from a Monday 00:00 local up to the instant, i.e. whole weeks (``w``)
        times the week's open seconds plus the open seconds of the week so far (up to second
        ``x`` of the week). The instants in local time counted from a Monday (``u``) are
        materialized: inlined, each use would repeat the zone's offsets (measured: seconds
        per 100,000 conversations on PostgreSQL, most of it compiling the expression).
        """
        if not q.hours:
            return f"vals AS (SELECT {until} - {since} AS v FROM conversations c WHERE {where})"

        def shifted(column: str) -> str:
            zones = " ".join(f"WHEN {h.site_id} THEN {_offset(h.offsets, column)}" for h in q.hours)
            return f"{column} + CASE c.site_id {zones} ELSE 0 END + {EPOCH_SINCE_MONDAY_S}"

        def open_seconds(week: tuple[tuple[int, int], ...], end: str) -> str:
            x = f"x{end}"
            so_far = " + ".join(
                f"CASE WHEN {x} >= {close} THEN {close - opens}"
                f" WHEN {x} > {opens} THEN {x} - {opens} ELSE 0 END"
                for opens, close in week
            )
            return f"w{end} * {sum(close - opens for opens, close in week)} + {so_far}"

        w1, w2 = (self._whole(f"u{end} / {WEEK_S}") for end in "12")
        weeks = (
            f"SELECT s, t1, t2, {w1} AS w1, {w2} AS w2,"
            f" u1 - {w1} * {WEEK_S} AS x1, u2 - {w2} * {WEEK_S} AS x2 FROM instants"
        )
        durations = " ".join(
            f"WHEN {h.site_id} THEN ({open_seconds(h.week, '2')}) - ({open_seconds(h.week, '1')})"
            for h in q.hours
        )
        return (
            f"instants AS MATERIALIZED (SELECT c.site_id AS s, {since} AS t1, {until} AS t2,"
            f" {shifted(since)} AS u1, {shifted(until)} AS u2 FROM conversations c"
            f" WHERE {where}),"
            f" vals AS (SELECT CASE s {durations} ELSE t2 - t1 END AS v FROM ({weeks}) i)"
        )

    def _day(self, q: ReportQuery, column: str) -> str:
        return self._whole(f"{self._local(q, column)} / {SECONDS_PER_DAY}")

    def _hour(self, q: ReportQuery, column: str) -> str:
        hours = self._whole(f"{self._local(q, column)} / {SECONDS_PER_HOUR}")
        return f"(({hours} + {EPOCH_HOUR_OF_WEEK}) % {HOURS_PER_WEEK})"


def _offset(offsets: Sequence[tuple[int, int]], column: str) -> str:
    """The UTC offset at the instant ``column``, from (from_instant, offset) ascending: the
    first offset also holds before its instant."""
    (_, first), *later = offsets
    if not later:
        return str(int(first))
    cases = " ".join(
        f"WHEN {column} < {int(instant)} THEN {int(before)}"
        for (_, before), (instant, _) in zip(offsets[:-1], later, strict=True)
    )
    return f"CASE {cases} ELSE {int(offsets[-1][1])} END"


# Each value with its rank and the set's size, for nearest-rank percentiles: rank
# ceil(n * pct / 100), in integer arithmetic both dialects share.
_RANKED = (
    "ranked AS (SELECT v, row_number() OVER (ORDER BY v) AS r, count(*) OVER () AS n"
    " FROM vals WHERE v IS NOT NULL)"
)
_PERCENTILES = (
    "count(*), max(CASE WHEN r = (n * 50 + 99) / 100 THEN v END),"
    " max(CASE WHEN r = (n * 90 + 99) / 100 THEN v END)"
)


def _scope(p: _Params, account_id: str, q: ReportQuery, *, owner: bool) -> str:
    clauses = [f"c.account_id = {p(account_id)}"]
    if q.source_apps is not None:
        # `IN ()` would be SQLite's empty set but a syntax error in PostgreSQL.
        apps = ", ".join(p(a) for a in q.source_apps)
        clauses.append(f"c.source_app IN ({apps})" if apps else "1 = 0")
    if q.site_id is not None:
        clauses.append(f"c.site_id = {p(q.site_id)}")
    if q.team_id is not None:
        clauses.append(f"c.team_id = {p(q.team_id)}")
    if owner and q.operator_id is not None:
        clauses.append(f"c.operator_id = {p(q.operator_id)}")
    return " AND ".join(clauses)


def _durations(row: Row) -> Durations:
    return Durations(count=int(row[0]), median=row[1], p90=row[2])


def _volume(results: Sequence[Sequence[Row]]) -> VolumeFigures:
    series: dict[str, dict[int, int]] = {
        f"{s}_{u}": {} for s in ("opened", "resolved") for u in ("day", "hour")
    }
    for row in results[0]:
        series[row[0]][int(row[1])] = int(row[2])
    return VolumeFigures(
        opened_by_day=series["opened_day"],
        resolved_by_day=series["resolved_day"],
        opened_by_hour=series["opened_hour"],
        resolved_by_hour=series["resolved_hour"],
    )


def _responses(results: Sequence[Sequence[Row]]) -> ResponseFigures:
    first, resolution = results[0][0], results[1][0]
    bands = len(RESPONSE_BANDS_S) + 1
    return ResponseFigures(
        first_response=_durations(first),
        unanswered=int(first[3 + bands]),
        first_response_bands=tuple(int(first[3 + i] or 0) for i in range(bands)),
        resolution=_durations(resolution),
    )


def _handover(results: Sequence[Sequence[Row]]) -> HandoverFigures:
    row = results[0][0]
    # sum() over no rows is NULL.
    return HandoverFigures(int(row[0]), int(row[1] or 0), int(row[2] or 0))


def _ratings(results: Sequence[Sequence[Row]]) -> RatingFigures:
    counts = {int(r[0]): int(r[1]) for r in results[0]}
    total = sum(counts.values())
    return RatingFigures(
        count=total,
        average=sum(s * n for s, n in counts.items()) / total if total else None,
        distribution=tuple(counts.get(s, 0) for s in SCORES),
        comments=tuple(
            RatingComment(
                convo_id=r[0], score=int(r[1]), comment=r[2], resolved_at=r[3], operator_id=r[4]
            )
            for r in results[1]
        ),
    )
