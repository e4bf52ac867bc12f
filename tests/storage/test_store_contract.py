"""The guarantees in storage/base.py, checked on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import sqlite3
from dataclasses import replace

import asyncpg
import pytest

from server.events import announce
from storage import create_store
from storage.base import (
    TABLES,
    CannedPatch,
    DuplicateEmail,
    InboxQuery,
    OperatorPatch,
    SitePatch,
    Store,
    TeamPatch,
    UnknownReference,
)
from storage.models import (
    DEFAULT_SITE_ID,
    Attachment,
    Change,
    Conversation,
    Message,
    NewEvent,
    OperatorCredentials,
    UserInfo,
)
from tests.storage.conftest import SQLITE_FILE


def _conversation(account_id: str, now: float = 1000.0) -> Conversation:
    return Conversation(
        id=secrets.token_urlsafe(16), account_id=account_id, source_app="chatbot",
        status="open", mode="bot", operator_id=None, team_id=None, user_info=UserInfo(),
        created=now, last_activity=now, resolved_at=None,
    )  # fmt: skip


def _append(current: Conversation, text: str, client_msg_id: str | None = None) -> Change:
    """A visitor message, numbered as the engine numbers it (seq and visitor seq)."""
    seq, visitor_seq = current.last_seq + 1, current.visitor_last_seq + 1
    message = Message(
        id=secrets.token_urlsafe(8), convo_id=current.id, seq=seq, sender="visitor",
        operator_id=None, operator_name=None, text=text, created=current.last_activity + 1,
        client_msg_id=client_msg_id, visitor_seq=visitor_seq,
    )  # fmt: skip
    after = dataclasses.replace(
        current, last_seq=seq, visitor_last_seq=visitor_seq, last_activity=message.created
    )
    return announce(Change(current, after, (message,)))


async def _account(store: Store, name: str = "acme") -> str:
    account_id = secrets.token_hex(8)
    await store.create_account(account_id, name, secrets.token_hex(32))
    return account_id


async def _open(store: Store, account_id: str) -> Conversation:
    fresh = _conversation(account_id)
    committed = await store.write(account_id, None, lambda _: announce(Change(None, fresh)))
    return committed.conversation


async def test_create_appends_conversation_new_event(store: Store) -> None:
    account = await _account(store)
    fresh = _conversation(account)
    committed = await store.write(account, None, lambda current: announce(Change(current, fresh)))
    # The Store gives a new conversation its contact (a fresh one: no identity was proven).
    assert committed.conversation.contact_id is not None
    assert committed.conversation == replace(fresh, contact_id=committed.conversation.contact_id)
    assert [(e.seq, e.kind) for e in committed.events] == [(1, "conversation:new")]
    assert await store.get_conversation(account, fresh.id) == committed.conversation


async def test_an_update_stores_what_it_changed_and_keeps_the_rest(store: Store) -> None:
    # Updates set only the columns a change moved (storage/sql.py `_update_convo`): every
    # kind of column, each set, moved, and cleared again, must read back as written.
    account = await _account(store)
    convo = await _open(store, account)
    everything = replace(
        convo, status="resolved", mode="operator",
        user_info=UserInfo(fname="Ann", email="a@x.test", info="vip"), last_activity=1005.5,
        resolved_at=1005.5, unread=3, operator_read_seq=2, visitor_read_seq=1,
        session_id="session-1", block_type="ai", translate=True,
        visitor_lang="fr", preview="hi", rating=4, rating_comment="ok",
        rated_resolved_at=1005.5, asked_at=1001.0, bot_answered=True, control="human",
        bot_user_id="user-1", attributes='{"a": 1}', custom_data='{"c": 2}',
        qualified_at=1002.0, visitor_context='{"url": "https://x.test/"}',
        operator_read_visitor_seq=1, rating_asked_resolved_at=1005.5,
    )  # fmt: skip
    cleared = replace(
        everything, status="open", user_info=UserInfo(), resolved_at=None, session_id=None,
        block_type=None, rating=None, rated_resolved_at=None, bot_user_id=None,
        attributes="{}", qualified_at=None, last_activity=1006.0, translate=False,
        bot_answered=False,
    )  # fmt: skip
    for after in (everything, replace(everything, preview="moved"), cleared):
        committed = await store.write(
            account, convo.id, lambda current, after=after: announce(Change(current, after))
        )
        assert committed.conversation == after
        assert await store.get_conversation(account, convo.id) == after


async def test_concurrent_appends_get_gapless_seqs_in_commit_order(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)

    async def send(i: int) -> None:
        await store.write(account, convo.id, lambda current: _append(_req(current), f"m{i}"))

    await asyncio.gather(*(send(i) for i in range(200)))
    messages = await store.list_messages(account, convo.id, limit=1000)
    assert [m.seq for m in messages] == list(range(1, 201))
    events = await store.list_events(account, after_seq=0, limit=1000)
    assert [e.seq for e in events] == list(range(1, 202))
    assert [e.msg_seq for e in events if e.kind == "message:new"] == list(range(1, 201))
    stored = await store.get_conversation(account, convo.id)
    assert stored is not None and stored.last_seq == 200


async def test_a_decision_that_raises_writes_nothing(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)

    def fail(current: Conversation | None) -> Change:
        _append(_req(current), "half")
        raise RuntimeError("rule refused")

    others = [
        store.write(account, convo.id, lambda current: _append(_req(current), "before")),
        store.write(account, convo.id, fail),
        store.write(account, convo.id, lambda current: _append(_req(current), "after")),
    ]
    results = await asyncio.gather(*others, return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert [m.text for m in await store.list_messages(account, convo.id)] == ["before", "after"]
    assert len(await store.list_events(account, after_seq=0, limit=100)) == 3


async def test_no_change_writes_no_event(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    committed = await store.write(account, convo.id, lambda current: None)
    assert committed.conversation == convo and committed.events == ()
    assert len(await store.list_events(account, after_seq=0, limit=100)) == 1


async def test_event_payloads_are_one_conversations_of_a_kind_containing_a_literal(
    store: Store,
) -> None:
    account = await _account(store)
    convo, other = await _open(store, account), await _open(store, account)
    kept = ['{"line": "50%_off"}', '{"line": "50% off"}', '{"line": "5000off"}', '{"x": 1}']
    for payload in kept:
        await store.write(
            account,
            convo.id,
            lambda c, p=payload: Change(c, c, events=(NewEvent("conversation:updated", None, p),)),
        )
    await store.write(
        account,
        other.id,
        lambda c: Change(c, c, events=(NewEvent("conversation:updated", None, kept[0]),)),
    )

    async def found(containing: str, limit: int = 10) -> list[str]:
        return await store.event_payloads(
            account, convo.id, kind="conversation:updated", containing=containing, limit=limit
        )

    # % and _ are the text itself, not a pattern; the newest ``limit``, oldest first.
    assert await found("50%_") == [kept[0]]
    assert await found("50%") == kept[:2]
    assert await found("50%", limit=1) == [kept[1]]
    assert await found('"line"') == kept[:3]
    assert (
        await store.event_payloads(account, convo.id, kind="message:new", containing="{", limit=10)
        == []
    )


async def test_client_msg_id_makes_a_retry_return_the_original(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    first = await store.write(
        account, convo.id, lambda c: _append(_req(c), "once", "cid-1"), client_msg_id="cid-1"
    )
    again = await store.write(
        account, convo.id, lambda c: _append(_req(c), "twice", "cid-1"), client_msg_id="cid-1"
    )
    assert again.duplicate and again.messages == first.messages and again.events == ()
    assert [m.text for m in await store.list_messages(account, convo.id)] == ["once"]


async def test_concurrent_retries_with_one_client_msg_id_store_one_message(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    results = await asyncio.gather(
        *(
            store.write(
                account, convo.id, lambda c: _append(_req(c), "x", "cid"), client_msg_id="cid"
            )
            for _ in range(20)
        )
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len(await store.list_messages(account, convo.id)) == 1


async def test_client_msg_ids_are_scoped_by_account(store: Store) -> None:
    first, second = await _account(store), await _account(store, "globex")
    for account in (first, second):
        convo = await _open(store, account)
        committed = await store.write(
            account, convo.id, lambda c: _append(_req(c), "hi", "same"), client_msg_id="same"
        )
        assert not committed.duplicate


async def test_conversations_are_invisible_to_other_accounts(store: Store) -> None:
    mine, theirs = await _account(store), await _account(store, "globex")
    convo = await _open(store, mine)
    assert await store.get_conversation(theirs, convo.id) is None
    seen: list[Conversation | None] = []

    def look(current: Conversation | None) -> Change:
        seen.append(current)
        raise LookupError("not found")

    with pytest.raises(LookupError):
        await store.write(theirs, convo.id, look)
    assert seen == [None]
    assert await store.list_events(theirs, after_seq=0, limit=10) == []


async def test_list_messages_windows(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    for i in range(10):
        await store.write(account, convo.id, lambda c, i=i: _append(_req(c), f"m{i}"))
    seqs = lambda ms: [m.seq for m in ms]  # noqa: E731
    assert seqs(await store.list_messages(account, convo.id, limit=3)) == [1, 2, 3]
    assert seqs(await store.list_messages(account, convo.id, limit=3, newest=True)) == [8, 9, 10]
    assert seqs(await store.list_messages(account, convo.id, after_seq=8)) == [9, 10]
    created_5 = (await store.list_messages(account, convo.id, after_seq=4, limit=1))[0].created
    assert seqs(await store.list_messages(account, convo.id, after_created=created_5)) == [
        6,
        7,
        8,
        9,
        10,
    ]


async def test_a_messages_attachments_come_back_as_written(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    files = (
        Attachment("box.png", "image/png", 70, "https://chat.example.test/uploads/a/b.png"),
        Attachment("huge.zip", "application/zip", 11_000_000, None),
    )

    def mailed(current: Conversation | None) -> Change:
        change = _append(_req(current), "see attached")
        (message,) = change.messages
        return dataclasses.replace(
            change, messages=(dataclasses.replace(message, attachments=files),)
        )

    await store.write(account, convo.id, mailed)
    await store.write(account, convo.id, lambda c: _append(_req(c), "no files"))
    found = await store.list_messages(account, convo.id)
    assert [m.attachments for m in found] == [files, ()]


async def test_events_page_by_seq(store: Store) -> None:
    account = await _account(store)
    for _ in range(5):
        await _open(store, account)
    page = await store.list_events(account, after_seq=2, limit=2)
    assert [e.seq for e in page] == [3, 4]


async def test_api_keys_resolve_to_their_account(store: Store) -> None:
    account_id = secrets.token_hex(8)
    await store.create_account(account_id, "acme", "hash-1")
    assert await store.account_for_api_key("hash-1") == account_id
    assert await store.account_for_api_key("hash-2") is None


async def test_operator_ids_are_per_account_and_never_reused(store: Store) -> None:
    a, b = await _account(store), await _account(store, "globex")
    first = await store.create_operator(a, "One", "one@a.test", "h", False)
    second = await store.create_operator(a, "Two", "two@a.test", "h", True)
    other = await store.create_operator(b, "Uno", "uno@b.test", "h", False)
    assert (first.id, second.id, other.id) == (1, 2, 1)
    assert await store.delete_operator(a, second.id)
    third = await store.create_operator(a, "Three", "three@a.test", "h", False)
    assert third.id == 3
    assert await store.get_operator(b, first.id) == other
    assert [o.id for o in await store.list_operators(a)] == [1, 3]


async def test_operator_emails_are_unique_per_account_not_across_accounts(store: Store) -> None:
    """Issue 21 item 9 changed the rule (they were unique across accounts, which told an
    admin who else uses the product): another account may use the same email."""
    a, b = await _account(store), await _account(store, "globex")
    await store.create_operator(a, "One", "same@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.create_operator(a, "Two", "same@x.test", "h", False)
    two = await store.create_operator(a, "Two", "two@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.update_operator(a, two.id, OperatorPatch(email="same@x.test"))
    assert [o.email for o in await store.list_operators(a)] == ["same@x.test", "two@x.test"]
    elsewhere = await store.create_operator(b, "Uno", "same@x.test", "h", False)
    assert [o.email for o in await store.list_operators(b)] == [elsewhere.email]


async def test_credentials_carry_the_hash(store: Store) -> None:
    account = await _account(store)
    operator = await store.create_operator(account, "One", "one@x.test", "scrypt$hash", True)
    (found,) = await store.get_credentials("one@x.test", limit=2)
    assert found.operator == operator
    assert found.password_hash == "scrypt$hash"
    assert await store.get_credentials("nobody@x.test", limit=2) == []
    assert await store.get_credentials("one@x.test", account, limit=2) == [found]
    other = await _account(store, "globex")
    assert await store.get_credentials("one@x.test", other, limit=2) == []
    same = await store.create_operator(other, "Uno", "ONE@x.test", "scrypt$other", False)
    both = await store.get_credentials("one@X.test", limit=2)
    assert [c.operator for c in both] == sorted([operator, same], key=lambda o: o.account_id)
    assert await store.get_credentials("one@x.test", limit=1) == both[:1]
    assert [c.operator for c in await store.get_credentials("one@x.test", other, limit=2)] == [same]


async def test_updates_are_partial_and_scoped(store: Store) -> None:
    a, b = await _account(store), await _account(store, "globex")
    op = await store.create_operator(a, "One", "one@x.test", "h", False)
    updated = await store.update_operator(a, op.id, OperatorPatch(is_admin=True))
    assert updated == dataclasses.replace(op, is_admin=True)
    assert await store.update_operator(b, op.id, OperatorPatch(name="Hijack")) is None
    canned = await store.create_canned(a, "Hi", "greet", "Hello {fname}")
    patched = await store.update_canned(a, canned.id, CannedPatch(message="Hey {fname}"))
    assert patched == dataclasses.replace(canned, message="Hey {fname}")
    assert await store.update_canned(b, canned.id, CannedPatch(name="x")) is None
    assert not await store.delete_canned(b, canned.id)
    assert await store.get_canned(a, canned.id) == patched


async def test_teams_keep_members_and_lose_deleted_operators(store: Store) -> None:
    account = await _account(store)
    one = await store.create_operator(account, "One", "one@x.test", "h", False)
    two = await store.create_operator(account, "Two", "two@x.test", "h", False)
    team = await store.create_team(account, "Support", [two.id, one.id, one.id])
    assert team.member_ids == (one.id, two.id)
    renamed = await store.update_team(account, team.id, TeamPatch(name="Help"))
    assert renamed is not None and renamed.member_ids == (one.id, two.id)
    await store.delete_operator(account, one.id)
    (listed,) = await store.list_teams(account)
    assert listed.name == "Help" and listed.member_ids == (two.id,)
    assert await store.delete_team(account, team.id)
    assert await store.list_teams(account) == []


def _req(current: Conversation | None) -> Conversation:
    assert current is not None
    return current


async def test_replay_joins_events_with_their_rows(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    await store.write(account, convo.id, lambda c: _append(_req(c), "hello"))
    assert await store.head_event_seq(account) == 2
    details = await store.replay_events(account, after_seq=0, limit=10)
    assert [(d.event.kind, d.message.text if d.message else None) for d in details] == [
        ("conversation:new", None),
        ("message:new", "hello"),
    ]
    assert all(d.conversation.id == convo.id and d.conversation.last_seq == 1 for d in details)
    assert await store.replay_events(account, after_seq=2, limit=10) == []
    assert await store.head_event_seq("no-such-account") == 0


async def test_a_team_member_that_does_not_exist_is_refused_whole(store: Store) -> None:
    account = await _account(store)
    one = await store.create_operator(account, "One", "one@x.test", "h", False)
    with pytest.raises(UnknownReference):
        await store.create_team(account, "Support", [one.id, 99])
    assert await store.list_teams(account) == []


async def test_read_conversation_returns_the_row_and_its_messages_in_one_call(
    store: Store,
) -> None:
    account, other = await _account(store), await _account(store, "globex")
    convo = await _open(store, account)
    for i in range(5):
        await store.write(account, convo.id, lambda c, i=i: _append(_req(c), f"m{i}"))
    found = await store.read_conversation(account, convo.id, after_seq=3)
    assert found is not None
    conversation, messages = found
    assert conversation.last_seq == 5
    assert [m.seq for m in messages] == [4, 5]
    newest = await store.read_conversation(account, convo.id, limit=2, newest=True)
    assert newest is not None
    assert [m.seq for m in newest[1]] == [4, 5]
    assert await store.read_conversation(other, convo.id) is None


async def test_operator_emails_are_unique_case_insensitively(store: Store) -> None:
    """Within an account (issue 21 item 9: no longer across accounts)."""
    a = await _account(store)
    same = await store.create_operator(a, "One", "same@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.create_operator(a, "Two", "SAME@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.create_operator(a, "Two", "Same@X.Test", "h", False)
    two = await store.create_operator(a, "Two", "two@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.update_operator(a, two.id, OperatorPatch(email="sAmE@x.test"))
    # An operator may change the case of their own email.
    renamed = await store.update_operator(a, same.id, OperatorPatch(email="Same@x.test"))
    assert renamed is not None and renamed.email == "Same@x.test"
    assert await store.get_credentials("SAME@X.TEST", limit=2) == [
        OperatorCredentials(renamed, "h")
    ]
    assert [o.email for o in await store.list_operators(a)] == ["Same@x.test", "two@x.test"]


async def test_every_read_is_scoped_by_account(store: Store) -> None:
    """A second account asking with the first one's ids gets nothing of the first's, from
    every read, and changes nothing of it with any write."""
    mine, theirs = await _account(store), await _account(store, "globex")
    operator = await store.create_operator(mine, "One", "one@mine.test", "h", True)
    team = await store.create_team(mine, "Support", [operator.id])
    canned = await store.create_canned(mine, "Hi", "greet", "Hello")
    site = await store.create_site(mine, "Shop", "#000000", "left", "Hi", team.id)
    await store.add_push_token(mine, operator.id, "device-1")
    convo = await _open(store, mine)
    await store.write(mine, convo.id, lambda c: _append(_req(c), "secret", "cid-mine"))
    everyone = InboxQuery(viewer=operator.id, every_team=True)

    assert await store.get_operator(theirs, operator.id) is None
    assert await store.list_operators(theirs) == []
    assert await store.list_teams(theirs) == []
    assert await store.get_canned(theirs, canned.id) is None
    assert await store.list_canned(theirs) == []
    assert await store.get_site(theirs, site.id) is None
    assert [s.id for s in await store.list_sites(theirs)] == [DEFAULT_SITE_ID]
    assert await store.push_tokens(theirs, [operator.id]) == {}
    assert await store.list_conversations(theirs, everyone) == []
    assert await store.list_conversations(theirs, replace(everyone, search="secret")) == []
    assert await store.count_conversations(theirs, everyone) == {}
    assert await store.get_conversation(theirs, convo.id) is None
    assert await store.list_messages(theirs, convo.id) == []
    assert await store.list_messages(theirs, convo.id, newest=True, visitor_view=True) == []
    assert await store.read_conversation(theirs, convo.id) is None
    assert await store.list_events(theirs, after_seq=0, limit=10) == []
    assert await store.replay_events(theirs, after_seq=0, limit=10) == []
    assert await store.head_event_seq(theirs) == 0
    assert await store.search_contacts(theirs, "", limit=10) == []
    assert convo.contact_id is not None
    assert await store.get_contact(theirs, convo.contact_id) is None
    assert await store.contact_conversations(theirs, convo.contact_id, limit=10) == []
    assert await store.possible_matches(theirs, convo.contact_id, limit=10) == []
    assert await store.merge_contacts(theirs, convo.contact_id, convo.contact_id + 1, 1) is None

    # Writes with the first account's ids find nothing to change.
    assert await store.update_operator(theirs, operator.id, OperatorPatch(name="x")) is None
    assert not await store.delete_operator(theirs, operator.id)
    assert await store.update_team(theirs, team.id, TeamPatch(name="x")) is None
    assert not await store.delete_team(theirs, team.id)
    assert await store.update_site(theirs, site.id, SitePatch(name="x")) is None
    assert not await store.delete_site(theirs, site.id)
    assert await store.remove_push_tokens(theirs, operator.id) == 0
    fresh = _conversation(theirs)
    committed = await store.write(
        theirs, None, lambda _: Change(None, fresh), client_msg_id="cid-mine"
    )
    assert not committed.duplicate and committed.conversation.id == fresh.id

    # ...and the first account's rows are all still there.
    assert await store.get_operator(mine, operator.id) == operator
    assert await store.list_teams(mine) == [team]
    assert await store.get_site(mine, site.id) == site
    assert await store.push_tokens(mine, [operator.id]) == {operator.id: ["device-1"]}
    assert [m.text for m in await store.list_messages(mine, convo.id)] == ["secret"]


async def _migrated_columns(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Each table's columns as the migrations made them (opening the store applied them all),
    read from the catalog of the database behind this test's ``store``."""
    if request.node.callspec.params["store"] == "sqlite":
        path = request.getfixturevalue("tmp_path") / SQLITE_FILE
        with contextlib.closing(sqlite3.connect(path)) as db:
            names = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_schema WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
            return {n: [c[1] for c in db.execute(f"PRAGMA table_info({n})")] for n in names}
    conn = await asyncpg.connect(request.getfixturevalue("postgres_url"))
    try:
        found: dict[str, list[str]] = {}
        for row in await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ):
            found.setdefault(row["table_name"], []).append(row["column_name"])
        return found
    finally:
        await conn.close()


async def test_migrated_columns_are_the_one_column_list(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """What the code selects, inserts, exports and imports (storage.base.TABLES) is exactly
    what the migrations built: a column added to one and not the other fails here, not in a
    `liveop export` that silently drops it."""
    migrated = await _migrated_columns(request)
    assert migrated.pop("schema_migrations") == ["version"]
    assert {name: sorted(cols) for name, cols in migrated.items()} == {
        t.name: sorted(t.column_names) for t in TABLES
    }


async def test_a_site_routed_to_a_missing_team_is_refused(store: Store) -> None:
    """sites.team_id has no foreign key: PostgreSQL used to store a team id that named
    nothing, where SQLite refused it."""
    account = await _account(store)
    with pytest.raises(UnknownReference):
        await store.create_site(account, "Shop", "#000000", "right", "", 99)
    site = await store.create_site(account, "Shop", "#000000", "right", "", None)
    with pytest.raises(UnknownReference):
        await store.update_site(account, site.id, SitePatch(team_id=99))
    assert await store.get_site(account, site.id) == site


def _same_database(request: pytest.FixtureRequest) -> Store:
    """A second Store on the database behind this test's ``store``: another process's view."""
    if request.node.callspec.params["store"] == "sqlite":
        path = request.getfixturevalue("tmp_path") / SQLITE_FILE
        return create_store(f"sqlite:///{path}")
    return create_store(request.getfixturevalue("postgres_url"))


async def test_a_webhook_made_by_another_process_hears_the_next_change(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """Whether a change queues webhook deliveries is read in the change's own transaction,
    never from what a process remembers: a webhook created or disabled elsewhere counts from
    the next change on."""
    account = await _account(store)
    convo = await _open(store, account)
    await store.write(account, convo.id, lambda c: _append(_req(c), "before the webhook"))
    other = _same_database(request)
    await other.open()
    try:
        hook = await other.create_webhook(
            account, "https://hooks.example/in", ["message.created"], "sealed"
        )
        await store.write(account, convo.id, lambda c: _append(_req(c), "heard"))
        [heard] = await store.webhook_deliveries(account, hook.id, 10)
        assert heard.event == "message.created"
        await other.update_webhook(
            account, hook.id, url=None, events=None, enabled=False, disabled_reason="off"
        )
    finally:
        await other.close()
    await store.write(account, convo.id, lambda c: _append(_req(c), "after disabling"))
    assert [d.id for d in await store.webhook_deliveries(account, hook.id, 10)] == [heard.id]
