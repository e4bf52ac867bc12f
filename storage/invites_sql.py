"""The SQL of invitations (issue 18), on SQLite and PostgreSQL alike.

An invitation is used in the one transaction that creates its operator and their team
memberships: a link works once, and a used link never leaves half an operator behind.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from storage import rows
from storage.base import DuplicateEmail, UnknownReference
from storage.models import Invite, Operator

if TYPE_CHECKING:
    # Only types: storage.sql imports this module.
    from storage.sql import Conn, Op

T = TypeVar("T")

_SELECT = f"SELECT {rows.select_list(rows.INVITES)} FROM invites"
_INSERT = rows.insert_sql(rows.INVITES)
# Pending: not used yet, expired or not (an admin sees the expired ones to clean them up).
_PENDING = f"{_SELECT} WHERE account_id = $1 AND used_at IS NULL ORDER BY id"
_BY_HASH = f"{_SELECT} WHERE token_hash = $1"
_DELETE = "DELETE FROM invites WHERE account_id = $1 AND id = $2 AND used_at IS NULL RETURNING id"
# Taking the invitation is the guard: of two uses at once, one updates the row and the other
# finds it used (PostgreSQL re-checks the WHERE after the first commits).
_USE = (
    f"UPDATE invites SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires > $2"
    f" RETURNING {rows.select_list(rows.INVITES)}"
)
_USED_BY = "UPDATE invites SET operator_id = $3 WHERE account_id = $1 AND id = $2"
_EMAIL_TAKEN = "SELECT id FROM operators WHERE account_id = $1 AND lower(email) = lower($2)"
_TEAM = "SELECT id FROM teams WHERE account_id = $1 AND id = $2"
# Teams deleted since the invitation are skipped: the invitee joins those that remain.
_JOIN_TEAM = (
    "INSERT INTO team_members (account_id, team_id, operator_id)"
    " SELECT account_id, id, $3 FROM teams WHERE account_id = $1 AND id = $2"
)


class InvitesSql:
    """SqlStore's invitation methods (see Store), kept apart from storage/sql.py."""

    async def _read(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def _write(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def _numbered(self, conn: Conn, account_id: str, kind: str) -> int:
        """The account's next number of ``kind`` (storage/sql.py's counters)."""
        raise NotImplementedError

    async def _add_operator(
        self, conn: Conn, account_id: str, name: str, email: str, password_hash: str,
        is_admin: bool, lang: str, avatar_url: str,
    ) -> Operator:  # fmt: skip
        """Numbers and inserts an operator (storage/sql.py); DuplicateEmail when taken."""
        raise NotImplementedError

    async def create_invite(
        self,
        account_id: str,
        token_hash: str,
        *,
        email: str,
        name: str,
        is_admin: bool,
        team_ids: Sequence[int],
        invited_by: int | None,
        expires: float,
    ) -> Invite:
        async def op(conn: Conn) -> Invite:
            if await conn.fetchrow(_EMAIL_TAKEN, account_id, email):
                raise DuplicateEmail(email)
            for team_id in team_ids:
                if not await conn.fetchrow(_TEAM, account_id, team_id):
                    raise UnknownReference(f"no team {team_id}")
            invite = Invite(
                account_id, await self._numbered(conn, account_id, "invite"), email, name,
                is_admin, tuple(sorted(set(team_ids))), invited_by, time.time(), expires,
            )  # fmt: skip
            await conn.execute(
                _INSERT, *rows.values(rows.INVITES, rows.invite_row(invite, token_hash))
            )
            return invite

        return await self._write(op)

    async def list_invites(self, account_id: str) -> list[Invite]:
        async def op(conn: Conn) -> list[Invite]:
            return [rows.invite(r) for r in await conn.fetch(_PENDING, account_id)]

        return await self._read(op)

    async def delete_invite(self, account_id: str, invite_id: int) -> bool:
        async def op(conn: Conn) -> bool:
            return await conn.fetchrow(_DELETE, account_id, invite_id) is not None

        return await self._write(op)

    async def invite_by_hash(self, token_hash: str) -> Invite | None:
        async def op(conn: Conn) -> Invite | None:
            found = await conn.fetchrow(_BY_HASH, token_hash)
            return rows.invite(found) if found else None

        return await self._read(op)

    async def accept_invite(
        self, token_hash: str, password_hash: str, now: float
    ) -> tuple[Invite, Operator] | None:
        async def op(conn: Conn) -> tuple[Invite, Operator] | None:
            found = await conn.fetchrow(_USE, token_hash, now)
            if found is None:
                return None
            invite = rows.invite(found)
            operator = await self._add_operator(
                conn, invite.account_id, invite.name, invite.email, password_hash,
                invite.is_admin, "en", "",
            )  # fmt: skip
            for team_id in invite.team_ids:
                await conn.execute(_JOIN_TEAM, invite.account_id, team_id, operator.id)
            await conn.execute(_USED_BY, invite.account_id, invite.id, operator.id)
            return invite, operator

        return await self._write(op)
