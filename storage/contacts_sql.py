"""Contacts' SQL (issue 14), written once for both databases: finding or creating a
conversation's contact inside the write that creates it, typed identities, reads, search and
merges. Every function is an operation step on a ``Conn`` (see storage/sql.py).

Lock order, on PostgreSQL: a write locks its conversation, then its contact (KEY SHARE, when
it creates a conversation or adds an identity), then the account row. A merge locks the
absorbed contact's conversations first, then both contacts (FOR UPDATE, which waits for every
KEY SHARE holder, so a conversation being created for the absorbed contact commits before the
merge moves its contact's conversations), so merges and writes wait for each other instead of
deadlocking. SQLite's single writer needs none of this and the clauses are empty there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from storage import rows
from storage.base import MergedContact
from storage.inbox_sql import escape_like
from storage.models import Contact, ContactIdentity, Conversation, Identity
from storage.rows import Row

if TYPE_CHECKING:
    from storage.sql import Conn

# Next id of a kind in an account (storage/sql.py's counter), awaited inside the operation.
NextId = Callable[["Conn", str, str], Awaitable[int]]

# How often a proven identity's contact is looked up again because a concurrent transaction
# moved it (a merge) or claimed it first (another first message) while this one looked.
# Each retry means another transaction committed; more than a few in a row does not happen.
FIND_ATTEMPTS = 8

_CONTACT_COLUMNS = rows.select_list(rows.CONTACTS)
_IDENTITY_COLUMNS = rows.select_list(rows.CONTACT_IDENTITIES)
_INSERT_CONTACT = rows.insert_sql(rows.CONTACTS)
_PROVEN = (
    "SELECT contact_id FROM contact_identities"
    " WHERE account_id = $1 AND kind = $2 AND value = $3 AND verified"
)
# The partial unique index on proven identities refuses a second owner: nothing is returned.
_CLAIM_PROVEN = (
    rows.insert_sql(rows.CONTACT_IDENTITIES) + " ON CONFLICT DO NOTHING RETURNING contact_id"
)
_ADD_TYPED = rows.insert_sql(rows.CONTACT_IDENTITIES) + " ON CONFLICT DO NOTHING"
# An identity moved by a merge onto a contact that holds it already stays once, proven when
# either was.
_MOVE_IDENTITY = (
    rows.insert_sql(rows.CONTACT_IDENTITIES) + " ON CONFLICT (account_id, contact_id, kind, value)"
    " DO UPDATE SET verified = contact_identities.verified OR excluded.verified"
)
_NAME_IF_NONE = "UPDATE contacts SET name = $3 WHERE account_id = $1 AND id = $2 AND name = ''"
_DELETE_CONTACT = "DELETE FROM contacts WHERE account_id = $1 AND id = $2"
_CONVERSATIONS = (
    f"SELECT {rows.select_list(rows.CONVERSATIONS)} FROM conversations"
    " WHERE account_id = $1 AND contact_id = $2 ORDER BY last_activity DESC, id DESC LIMIT $3"
)
_MATCHES = (
    "SELECT DISTINCT other.contact_id FROM contact_identities mine"
    " JOIN contact_identities other ON other.account_id = mine.account_id"
    " AND other.kind = mine.kind AND other.value = mine.value"
    " AND other.contact_id <> mine.contact_id"
    " WHERE mine.account_id = $1 AND mine.contact_id = $2 ORDER BY other.contact_id LIMIT $3"
)
_MERGED_INTO = "SELECT into_id FROM contact_merges WHERE account_id = $1 AND from_id = $2"
_INSERT_MERGE = rows.insert_sql(rows.CONTACT_MERGES)


def _identity_row(
    account_id: str, contact_id: int, identity: Identity, verified: bool, created: float
) -> tuple[Any, ...]:
    row = {
        "account_id": account_id, "contact_id": contact_id, "kind": identity.kind,
        "value": identity.value, "verified": verified, "created": created,
    }  # fmt: skip
    return rows.values(rows.CONTACT_IDENTITIES, row)


async def _new_contact(
    conn: Conn, next_id: NextId, account_id: str, name: str, created: float
) -> int:
    contact_id = await next_id(conn, account_id, "contact")
    row = {"account_id": account_id, "id": contact_id, "name": name, "created": created}
    await conn.execute(_INSERT_CONTACT, *rows.values(rows.CONTACTS, row))
    return contact_id


async def contact_for(
    conn: Conn,
    next_id: NextId,
    lock_key_share: str,
    account_id: str,
    identity: Identity | None,
    name: str,
    created: float,
) -> int:
    """The contact a new conversation belongs to: the one that proved ``identity``, else a new
    contact holding it (proven); a new contact of its own without one. The contact stays
    locked against a merge until commit."""
    if identity is None:
        return await _new_contact(conn, next_id, account_id, name, created)
    lock = f"SELECT id FROM contacts WHERE account_id = $1 AND id = $2{lock_key_share}"
    for _ in range(FIND_ATTEMPTS):
        found = await conn.fetchrow(_PROVEN, account_id, identity.kind, identity.value)
        if found is not None:
            # Gone when a merge absorbed it meanwhile: the identity has moved, look again.
            if await conn.fetchrow(lock, account_id, found["contact_id"]) is not None:
                return int(found["contact_id"])
            continue
        contact_id = await _new_contact(conn, next_id, account_id, name, created)
        claimed = await conn.fetchrow(
            _CLAIM_PROVEN, *_identity_row(account_id, contact_id, identity, True, created)
        )
        if claimed is not None:
            return contact_id
        # A concurrent first message of the same person committed its contact first (on
        # PostgreSQL the insert waited for it): this one joins it.
        await conn.execute(_DELETE_CONTACT, account_id, contact_id)
    raise RuntimeError(f"the contact of a {identity.kind} identity kept moving; try again")


async def record_typed(
    conn: Conn,
    account_id: str,
    contact_id: int,
    typed: Sequence[Identity],
    name: str,
    created: float,
) -> None:
    """Typed identities, unverified, on the contact (each once), and its name if it has none."""
    if typed:
        await conn.executemany(
            _ADD_TYPED, [_identity_row(account_id, contact_id, i, False, created) for i in typed]
        )
    if name:
        await conn.execute(_NAME_IF_NONE, account_id, contact_id, name)


async def contacts(conn: Conn, account_id: str, ids: Sequence[int]) -> list[Contact]:
    """The contacts with these ids, in that order, each with its identities (proven first)."""
    if not ids:
        return []
    marks = ", ".join(f"${i}" for i in range(2, len(ids) + 2))
    found = await conn.fetch(
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 AND id IN ({marks})",
        account_id,
        *ids,
    )
    held: dict[int, list[ContactIdentity]] = {}
    for r in await conn.fetch(
        f"SELECT {_IDENTITY_COLUMNS} FROM contact_identities"
        f" WHERE account_id = $1 AND contact_id IN ({marks})"
        " ORDER BY verified DESC, kind, value",
        account_id,
        *ids,
    ):
        held.setdefault(r["contact_id"], []).append(rows.contact_identity(r))
    by_id = {r["id"]: rows.contact(r, held.get(r["id"], ())) for r in found}
    return [by_id[i] for i in ids if i in by_id]


async def contact_conversations(
    conn: Conn, account_id: str, contact_id: int, limit: int
) -> list[Conversation]:
    return [rows.convo(r) for r in await conn.fetch(_CONVERSATIONS, account_id, contact_id, limit)]


async def possible_matches(
    conn: Conn, account_id: str, contact_id: int, limit: int
) -> list[Contact]:
    found = await conn.fetch(_MATCHES, account_id, contact_id, limit)
    return await contacts(conn, account_id, [r["contact_id"] for r in found])


async def search(conn: Conn, ilike: str, account_id: str, words: str, limit: int) -> list[Contact]:
    pattern = f"%{escape_like(words)}%"
    found = await conn.fetch(
        f"SELECT c.id FROM contacts c WHERE c.account_id = $1 AND (c.name {ilike} $2 ESCAPE '\\'"
        " OR EXISTS (SELECT 1 FROM contact_identities i WHERE i.account_id = c.account_id"
        f" AND i.contact_id = c.id AND i.value {ilike} $2 ESCAPE '\\'))"
        " ORDER BY c.id DESC LIMIT $3",
        account_id,
        pattern,
        limit,
    )
    return await contacts(conn, account_id, [r["id"] for r in found])


async def _survivor(conn: Conn, account_id: str, contact_id: int) -> int | None:
    """Where a merged-away contact's conversations are now (following later merges), or None
    when it was never merged. Ids are never reused, so the chain has no cycle."""
    into: int | None = None
    while (row := await conn.fetchrow(_MERGED_INTO, account_id, contact_id)) is not None:
        into = contact_id = int(row["into_id"])
    return into


async def merge(
    conn: Conn,
    lock_for_update: str,
    lock_exclusive: str,
    account_id: str,
    into_id: int,
    from_id: int,
    operator_id: int,
    now: float,
) -> tuple[Contact, int] | None:
    """Store.merge_contacts (see its guarantees and the lock order above)."""
    await conn.fetch(
        "SELECT id FROM conversations WHERE account_id = $1 AND contact_id = $2"
        f" ORDER BY id{lock_for_update}",
        account_id,
        from_id,
    )
    locked = await conn.fetch(
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 AND id IN ($2, $3)"
        f" ORDER BY id{lock_exclusive}",
        account_id,
        into_id,
        from_id,
    )
    present: dict[int, Row] = {r["id"]: r for r in locked}
    if into_id not in present:
        into_now = await _survivor(conn, account_id, into_id)
        if into_now is None:
            return None
        raise MergedContact(into_now)
    if from_id not in present:
        from_now = await _survivor(conn, account_id, from_id)
        if from_now is None:
            return None
        if from_now != into_id:
            raise MergedContact(from_now)
        (survivor,) = await contacts(conn, account_id, [into_id])
        return survivor, 0
    moved = await conn.fetch(
        "UPDATE conversations SET contact_id = $3 WHERE account_id = $1 AND contact_id = $2"
        " RETURNING id",
        account_id,
        from_id,
        into_id,
    )
    identities = await conn.fetch(
        f"DELETE FROM contact_identities WHERE account_id = $1 AND contact_id = $2"
        f" RETURNING {_IDENTITY_COLUMNS}",
        account_id,
        from_id,
    )
    if identities:
        await conn.executemany(
            _MOVE_IDENTITY,
            [
                _identity_row(
                    account_id,
                    into_id,
                    Identity(r["kind"], r["value"]),
                    bool(r["verified"]),
                    r["created"],
                )
                for r in identities
            ],
        )
    absorbed = present[from_id]
    await conn.execute(_DELETE_CONTACT, account_id, from_id)
    if absorbed["name"]:
        await conn.execute(_NAME_IF_NONE, account_id, into_id, absorbed["name"])
    record = {
        "account_id": account_id, "from_id": from_id, "into_id": into_id,
        "from_name": absorbed["name"], "operator_id": operator_id, "created": now,
    }  # fmt: skip
    await conn.execute(_INSERT_MERGE, *rows.values(rows.CONTACT_MERGES, record))
    (survivor,) = await contacts(conn, account_id, [into_id])
    return survivor, len(moved)
