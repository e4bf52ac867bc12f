"""storage/inbox_sql.py's listing and count SQL, checked on every backend: the order and its
keyset cursor, search (LIKE in SQLite, ILIKE in PostgreSQL), team visibility, blocks, counts."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest

from server.events import announce
from storage.base import InboxQuery, Store
from storage.models import Change, Conversation, Message, UserInfo

EVERYONE = InboxQuery(viewer=1, every_team=True, limit=100)


async def _account(store: Store) -> str:
    account_id = secrets.token_hex(8)
    await store.create_account(account_id, "acme", secrets.token_hex(32))
    return account_id


async def _put(
    store: Store,
    account_id: str,
    convo_id: str,
    activity: float,
    *texts: str,
    private: bool = False,
    **fields: Any,
) -> Conversation:
    """A conversation with ``texts`` as its messages, last active at ``activity``."""
    convo = Conversation(
        id=convo_id, account_id=account_id, source_app="chatbot", status="open", mode="bot",
        operator_id=None, team_id=None, user_info=UserInfo(), created=activity,
        last_activity=activity, resolved_at=None, last_seq=len(texts),
    )  # fmt: skip
    convo = dataclasses.replace(convo, **fields)
    messages = tuple(
        Message(
            id=secrets.token_urlsafe(8),
            convo_id=convo_id,
            seq=seq,
            sender="visitor",
            operator_id=None,
            operator_name=None,
            text=text,
            created=activity,
            client_msg_id=None,
            private=private,
        )
        for seq, text in enumerate(texts, start=1)
    )
    committed = await store.write(
        account_id, None, lambda _: announce(Change(None, convo, messages))
    )
    return committed.conversation


def _query(**fields: Any) -> InboxQuery:
    return dataclasses.replace(EVERYONE, **fields)


async def _ids(store: Store, account_id: str, **query: Any) -> list[str]:
    return [c.id for c in await store.list_conversations(account_id, _query(**query))]


async def test_newest_activity_first_ties_by_id_and_the_cursor_continues_exactly(
    store: Store,
) -> None:
    account = await _account(store)
    for convo_id, activity in [("aa", 10.5), ("bb", 20.25), ("cc", 20.25), ("dd", 5.0),
                               ("ee", 20.25), ("ff", 30.0)]:  # fmt: skip
        await _put(store, account, convo_id, activity)
    order = ["ff", "ee", "cc", "bb", "aa", "dd"]
    assert await _ids(store, account) == order
    walked: list[str] = []
    after: tuple[float, str] | None = None
    while True:
        page = await store.list_conversations(account, _query(after=after, limit=2))
        if not page:
            break
        walked += [c.id for c in page]
        after = (page[-1].last_activity, page[-1].id)
    assert walked == order
    # A cursor in the middle of a tie continues inside it.
    assert await _ids(store, account, after=(20.25, "cc")) == ["bb", "aa", "dd"]
    assert await _ids(store, account, after=(20.25, "zz")) == ["ee", "cc", "bb", "aa", "dd"]
    assert await _ids(store, account, after=(1.0, "zz")) == []


async def test_other_accounts_are_never_listed_or_counted(store: Store) -> None:
    mine, theirs = await _account(store), await _account(store)
    await _put(store, mine, "mine", 1.0, "hello")
    await _put(store, theirs, "theirs", 2.0, "hello")
    assert await _ids(store, mine, search="hello") == ["mine"]
    assert await store.count_conversations(mine, EVERYONE) == {"open": 1}


@pytest.fixture
async def searchable(store: Store) -> str:
    account = await _account(store)
    await _put(
        store, account, "jane", 3.0, "My ORDER is late", "thanks",
        user_info=UserInfo(fname="Jane", lname="Doe", email="jane@example.com", phone="+1 555",
                           info="VIP 100%_off"),
    )  # fmt: skip
    await _put(store, account, "win", 2.0, r"saved in C:\temp", "100 xoff")
    await _put(store, account, "note", 1.0, "escalated", private=True)
    return account


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("order", ["jane"]),
        ("Order LATE", ["jane"]),
        ("jane thanks", ["jane"]),  # one word in the details, one in a message
        ("jane temp", []),
        ("JANE@EXAMPLE.COM", ["jane"]),
        ("555", ["jane"]),
        ("vip", ["jane"]),
        ("100", ["jane", "win"]),
        ("100%", ["jane"]),
        ("%_off", ["jane"]),
        ("_", ["jane"]),
        ("%", ["jane"]),
        (r"C:\temp", ["win"]),
        ("\\", ["win"]),
        ("escalated", ["note"]),
        ("nowhere", []),
    ],
)
async def test_search_words_all_match_literally_and_ignore_ascii_case(
    store: Store, searchable: str, search: str, expected: list[str]
) -> None:
    assert await _ids(store, searchable, search=search) == expected


async def test_search_combines_with_the_cursor(store: Store) -> None:
    account = await _account(store)
    for i in range(5):
        await _put(store, account, f"c{i}", float(i), "parcel" if i % 2 else "other")
    assert await _ids(store, account, search="parcel") == ["c3", "c1"]
    assert await _ids(store, account, search="PARCEL", after=(3.0, "c3")) == ["c1"]


@pytest.fixture
async def teams(store: Store) -> tuple[str, dict[str, int]]:
    """Operators 1 (admin), 2 (in Sales), 3 (in no team); conversations routed to no team,
    to Sales, to Support, and one to Support owned by operator 3."""
    account = await _account(store)
    ids = {}
    for name in ("ada", "alex", "bea"):
        made = await store.create_operator(
            account, name, f"{name}-{account}@x.test", "h", name == "ada"
        )
        ids[name] = made.id
    sales = await store.create_team(account, "Sales", [ids["alex"]])
    support = await store.create_team(account, "Support", [])
    ids |= {"sales": sales.id, "support": support.id}
    await _put(store, account, "free", 4.0)
    await _put(store, account, "sales", 3.0, team_id=sales.id)
    await _put(store, account, "support", 2.0, team_id=support.id, status="active")
    await _put(
        store, account, "owned", 1.0, team_id=support.id, operator_id=ids["bea"], status="active"
    )
    return account, ids


async def test_operators_see_no_team_their_teams_and_their_own(
    store: Store, teams: tuple[str, dict[str, int]]
) -> None:
    account, ids = teams
    alex: dict[str, Any] = {
        "viewer": ids["alex"], "every_team": False, "viewer_teams": (ids["sales"],)
    }  # fmt: skip
    bea: dict[str, Any] = {"viewer": ids["bea"], "every_team": False}
    assert await _ids(store, account, viewer=ids["ada"]) == ["free", "sales", "support", "owned"]
    assert await _ids(store, account, **alex) == ["free", "sales"]
    assert await _ids(store, account, **bea) == ["free", "owned"]
    assert await _ids(store, account, **bea, owner="mine") == ["owned"]
    assert await _ids(store, account, **alex, owner="unassigned") == ["free", "sales"]
    assert await _ids(store, account, **alex, team_id=ids["support"]) == []
    assert await _ids(store, account, team_id=ids["support"]) == ["support", "owned"]

    counts = store.count_conversations
    assert await counts(account, _query(**alex)) == {"open": 2}
    assert await counts(account, _query(**bea)) == {"open": 1, "active": 1}
    assert await counts(account, EVERYONE) == {"open": 2, "active": 2}
    assert await counts(account, _query(statuses=("active",))) == {"active": 2}

    # A deleted team's conversations go back to everyone's queue.
    assert await store.delete_team(account, ids["support"])
    assert await _ids(store, account, **alex) == ["free", "sales", "support", "owned"]
    assert await counts(account, _query(**alex)) == {"open": 2, "active": 2}


async def test_deleting_a_team_unroutes_its_sites(store: Store) -> None:
    account = await _account(store)
    sales = await store.create_team(account, "Sales", [])
    shop = await store.create_site(account, "Shop", "#000000", "left", "", sales.id)
    assert await store.delete_team(account, sales.id)
    found = await store.get_site(account, shop.id)
    assert found is not None and found.team_id is None


async def test_blocks_and_the_other_filters(store: Store) -> None:
    account = await _account(store)
    await _put(store, account, "sms", 6.0, source_app="smsbroadcast", site_id=2)
    await _put(store, account, "hidden", 5.0, block_type="operator")
    await _put(store, account, "muted", 4.0, block_type="ai", status="waiting")
    await _put(store, account, "session", 3.0, session_id="sess-1234", site_id=2)
    await _put(store, account, "done", 2.0, status="resolved")
    assert await _ids(store, account) == ["sms", "muted", "session", "done"]
    assert await _ids(store, account, blocked=True) == ["hidden", "muted"]
    assert await _ids(store, account, source_apps=("smsbroadcast", "emailbroadcast")) == ["sms"]
    assert await _ids(store, account, statuses=("waiting", "resolved")) == ["muted", "done"]
    assert await _ids(store, account, statuses=()) == []
    assert await _ids(store, account, site_id=2) == ["sms", "session"]
    assert await _ids(store, account, site_id=2, session_id="sess-1234") == ["session"]
    assert await _ids(store, account, limit=2) == ["sms", "muted"]
    assert await store.count_conversations(account, EVERYONE) == {
        "open": 2,
        "waiting": 1,
        "resolved": 1,
    }
