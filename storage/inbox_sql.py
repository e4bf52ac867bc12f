"""The inbox listing's SQL, shared by both dialects: only the case-insensitive LIKE operator
differs (placeholders are PostgreSQL's ``$1``, which the SQLite driver renumbers)."""

from __future__ import annotations

from typing import Any

from storage.base import InboxQuery

# Words of a search; more is a client bug (each one adds a scan of the conversation's messages).
SEARCH_WORDS_MAX = 8


def escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class InboxSql:
    """Builds listing statements with numbered placeholders, so one value can appear twice."""

    def __init__(self, ilike: str) -> None:
        self._ilike = ilike

    def select(self, columns: str, account_id: str, q: InboxQuery) -> tuple[str, list[Any]]:
        where, params = self._where(account_id, q, paged=True)
        params.append(q.limit)
        return (
            f"SELECT {columns} FROM conversations c WHERE {where}"
            f" ORDER BY c.last_activity DESC, c.id DESC LIMIT ${len(params)}",
            params,
        )

    def count(self, account_id: str, q: InboxQuery) -> tuple[str, list[Any]]:
        where, params = self._where(account_id, q, paged=False)
        return (
            f"SELECT c.status, count(*) AS n FROM conversations c WHERE {where} GROUP BY c.status",
            params,
        )

    def _where(self, account_id: str, q: InboxQuery, *, paged: bool) -> tuple[str, list[Any]]:
        params: list[Any] = []

        def p(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        def among(column: str, values: tuple[str, ...]) -> str:
            # `IN ()` would be SQLite's empty set but a syntax error in PostgreSQL.
            return f"{column} IN ({', '.join(p(v) for v in values)})" if values else "1 = 0"

        clauses = [f"c.account_id = {p(account_id)}"]
        if not q.every_team:
            teams = ", ".join(p(t) for t in q.viewer_teams)
            routed = f" OR c.team_id IN ({teams})" if teams else ""
            # A deleted team's conversations would otherwise be in nobody's queue.
            gone = (
                " OR NOT EXISTS (SELECT 1 FROM teams t"
                " WHERE t.account_id = c.account_id AND t.id = c.team_id)"
            )
            clauses.append(f"(c.team_id IS NULL{routed}{gone} OR c.operator_id = {p(q.viewer)})")
        if q.blocked:
            clauses.append("c.block_type IS NOT NULL")
        else:
            clauses.append("(c.block_type IS NULL OR c.block_type <> 'operator')")
        if q.statuses is not None:
            clauses.append(among("c.status", q.statuses))
        if q.source_apps is not None:
            clauses.append(among("c.source_app", q.source_apps))
        if q.owner == "mine":
            clauses.append(f"c.operator_id = {p(q.viewer)}")
        elif q.owner == "unassigned":
            clauses.append("c.operator_id IS NULL")
        if q.team_id is not None:
            clauses.append(f"c.team_id = {p(q.team_id)}")
        if q.site_id is not None:
            clauses.append(f"c.site_id = {p(q.site_id)}")
        if q.session_id is not None:
            clauses.append(f"c.session_id = {p(q.session_id)}")
        for word in (q.search or "").split()[:SEARCH_WORDS_MAX]:
            pattern = p(f"%{escape_like(word)}%")
            details = (
                "c.fname || ' ' || c.lname || ' ' || c.email || ' ' || c.phone || ' ' || c.info"
            )
            clauses.append(
                f"({details} {self._ilike} {pattern} ESCAPE '\\'"
                f" OR EXISTS (SELECT 1 FROM messages m WHERE m.convo_id = c.id"
                f" AND m.text {self._ilike} {pattern} ESCAPE '\\'))"
            )
        if paged and q.after is not None:
            activity, convo_id = q.after
            a = p(activity)
            clauses.append(
                f"(c.last_activity < {a} OR (c.last_activity = {a} AND c.id < {p(convo_id)}))"
            )
        return " AND ".join(clauses), params
