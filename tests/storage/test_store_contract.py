"""The guarantees in storage/base.py, checked on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import pytest

from server.events import announce
from storage.base import (
    CannedPatch,
    DuplicateEmail,
    OperatorPatch,
    Store,
    TeamPatch,
    UnknownReference,
)
from storage.models import Change, Conversation, Message, UserInfo


def _conversation(account_id: str, now: float = 1000.0) -> Conversation:
    return Conversation(
        id=secrets.token_urlsafe(16), account_id=account_id, source_app="chatbot",
        status="open", mode="bot", operator_id=None, team_id=None, user_info=UserInfo(),
        created=now, last_activity=now, resolved_at=None,
    )  # fmt: skip


def _append(current: Conversation, text: str, client_msg_id: str | None = None) -> Change:
    seq = current.last_seq + 1
    message = Message(
        id=secrets.token_urlsafe(8), convo_id=current.id, seq=seq, sender="visitor",
        operator_id=None, operator_name=None, text=text, created=current.last_activity + 1,
        client_msg_id=client_msg_id,
    )  # fmt: skip
    after = dataclasses.replace(current, last_seq=seq, last_activity=message.created)
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
    assert committed.conversation == fresh
    assert [(e.seq, e.kind) for e in committed.events] == [(1, "conversation:new")]
    assert await store.get_conversation(account, fresh.id) == fresh


async def test_concurrent_appends_get_gapless_seqs_in_commit_order(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)

    async def send(i: int) -> None:
        await store.write(account, convo.id, lambda current: _append(_req(current), f"m{i}"))

    await asyncio.gather(*(send(i) for i in range(200)))
    messages = await store.list_messages(convo.id, limit=1000)
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
    assert [m.text for m in await store.list_messages(convo.id)] == ["before", "after"]
    assert len(await store.list_events(account, after_seq=0, limit=100)) == 3


async def test_no_change_writes_no_event(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    committed = await store.write(account, convo.id, lambda current: None)
    assert committed.conversation == convo and committed.events == ()
    assert len(await store.list_events(account, after_seq=0, limit=100)) == 1


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
    assert [m.text for m in await store.list_messages(convo.id)] == ["once"]


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
    assert len(await store.list_messages(convo.id)) == 1


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
    assert seqs(await store.list_messages(convo.id, limit=3)) == [1, 2, 3]
    assert seqs(await store.list_messages(convo.id, limit=3, newest=True)) == [8, 9, 10]
    assert seqs(await store.list_messages(convo.id, after_seq=8)) == [9, 10]
    created_5 = (await store.list_messages(convo.id, after_seq=4, limit=1))[0].created
    assert seqs(await store.list_messages(convo.id, after_created=created_5)) == [6, 7, 8, 9, 10]


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


async def test_operator_emails_are_unique_across_accounts(store: Store) -> None:
    a, b = await _account(store), await _account(store, "globex")
    await store.create_operator(a, "One", "same@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.create_operator(b, "Two", "same@x.test", "h", False)
    two = await store.create_operator(b, "Two", "two@x.test", "h", False)
    with pytest.raises(DuplicateEmail):
        await store.update_operator(b, two.id, OperatorPatch(email="same@x.test"))
    assert [o.email for o in await store.list_operators(b)] == ["two@x.test"]


async def test_credentials_carry_the_hash(store: Store) -> None:
    account = await _account(store)
    operator = await store.create_operator(account, "One", "one@x.test", "scrypt$hash", True)
    found = await store.get_credentials("one@x.test")
    assert found is not None and found.operator == operator
    assert found.password_hash == "scrypt$hash"
    assert await store.get_credentials("nobody@x.test") is None


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
