"""Contacts in the Store (issue 14), on SQLite and PostgreSQL alike: a conversation's contact
is found or created inside the write that creates it, typed identities only suggest matches,
and a merge moves everything once."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from storage.base import MergedContact, Store
from storage.models import Change, Conversation, Identity, UserInfo

PHONE = Identity("phone", "+15550100001")


def _conversation(account_id: str) -> Conversation:
    return Conversation(
        id=secrets.token_urlsafe(16), account_id=account_id, source_app="smsbroadcast",
        status="open", mode="bot", operator_id=None, team_id=None, user_info=UserInfo(),
        created=1000.0, last_activity=1000.0, resolved_at=None,
    )  # fmt: skip


async def _account(store: Store) -> str:
    account_id = secrets.token_hex(8)
    await store.create_account(account_id, "Acme", secrets.token_hex(32))
    return account_id


async def _open(
    store: Store,
    account_id: str,
    identity: Identity | None = None,
    typed: tuple[Identity, ...] = (),
    name: str = "",
) -> Conversation:
    fresh = _conversation(account_id)
    change = Change(None, fresh, identity=identity, typed=typed, contact_name=name)
    return (await store.write(account_id, None, lambda _: change)).conversation


def _contact_id(conversation: Conversation) -> int:
    assert conversation.contact_id is not None
    return conversation.contact_id


async def test_a_proven_identity_finds_its_contact_and_none_makes_a_fresh_one(
    store: Store,
) -> None:
    account = await _account(store)
    first = await _open(store, account, PHONE, name="Ada Lovelace")
    again = await _open(store, account, PHONE, name="Somebody Else")
    other = await _open(store, account, Identity("phone", "+15550100002"))
    anonymous = [await _open(store, account) for _ in range(2)]

    assert _contact_id(first) == _contact_id(again)
    ids = {_contact_id(c) for c in (first, other, *anonymous)}
    assert len(ids) == 4
    contact = await store.get_contact(account, _contact_id(first))
    assert contact is not None
    # The first name given stays: a later conversation fills it only while it is empty.
    assert contact.name == "Ada Lovelace"
    assert [(i.identity, i.verified) for i in contact.identities] == [(PHONE, True)]
    listed = await store.contact_conversations(account, _contact_id(first), limit=10)
    assert {c.id for c in listed} == {first.id, again.id}


async def test_concurrent_first_messages_from_one_phone_make_one_contact(store: Store) -> None:
    account = await _account(store)
    opened = await asyncio.gather(*(_open(store, account, PHONE) for _ in range(12)))
    assert len({_contact_id(c) for c in opened}) == 1
    matches = await store.search_contacts(account, PHONE.value, limit=100)
    assert [c.id for c in matches] == [_contact_id(opened[0])]


async def test_typed_identities_are_possible_matches_never_links(store: Store) -> None:
    account = await _account(store)
    sms = await _open(store, account, PHONE)
    web = await _open(
        store,
        account,
        Identity("session", "session-one-1234"),
        typed=(PHONE, Identity("email", "ada@example.com")),
    )
    another_web = await _open(store, account, typed=(Identity("email", "ada@example.com"),))

    assert len({_contact_id(c) for c in (sms, web, another_web)}) == 3
    web_contact = await store.get_contact(account, _contact_id(web))
    assert web_contact is not None
    assert [(i.identity.kind, i.verified) for i in web_contact.identities] == [
        ("session", True),
        ("email", False),
        ("phone", False),
    ]
    found = await store.possible_matches(account, _contact_id(web), limit=10)
    assert sorted(c.id for c in found) == sorted([_contact_id(sms), _contact_id(another_web)])
    back = await store.possible_matches(account, _contact_id(sms), limit=10)
    assert [c.id for c in back] == [_contact_id(web)]


async def test_a_later_write_records_typed_identities_once(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    email = Identity("email", "ada@example.com")
    for _ in range(2):
        await store.write(
            account,
            convo.id,
            lambda c: Change(c, c, typed=(email,), contact_name="Ada") if c else None,
        )
    contact = await store.get_contact(account, _contact_id(convo))
    assert contact is not None and contact.name == "Ada"
    assert [(i.identity, i.verified) for i in contact.identities] == [(email, False)]


async def test_merge_moves_everything_once_and_is_recorded(store: Store) -> None:
    account = await _account(store)
    sms = await _open(store, account, PHONE, name="Ada")
    web = await _open(
        store,
        account,
        Identity("session", "session-one-1234"),
        typed=(PHONE, Identity("email", "ada@example.com")),
    )
    into, absorbed = _contact_id(sms), _contact_id(web)

    merged = await store.merge_contacts(account, into, absorbed, 1)
    assert merged is not None
    contact, moved = merged
    assert moved == 1
    # The phone both held stays once, proven; nothing of the absorbed contact is lost.
    assert [(i.identity.kind, i.identity.value, i.verified) for i in contact.identities] == [
        ("phone", PHONE.value, True),
        ("session", "session-one-1234", True),
        ("email", "ada@example.com", False),
    ]
    assert await store.get_contact(account, absorbed) is None
    listed = await store.contact_conversations(account, into, limit=10)
    assert {c.id for c in listed} == {sms.id, web.id}
    assert await store.possible_matches(account, into, limit=10) == []

    # Repeating it changes nothing; the absorbed id is remembered, not reused.
    assert await store.merge_contacts(account, into, absorbed, 1) == (contact, 0)
    with pytest.raises(MergedContact) as refused:
        await store.merge_contacts(account, absorbed, into, 1)
    assert refused.value.into_id == into
    # A new conversation from the absorbed session joins the survivor.
    returning = await _open(store, account, Identity("session", "session-one-1234"))
    assert returning.contact_id == into
    assert await store.merge_contacts(account, into, 10**12, 1) is None


async def test_concurrent_merges_and_first_messages_lose_nothing(store: Store) -> None:
    account = await _account(store)
    survivor = await _open(store, account, Identity("phone", "+15550100009"))
    absorbed = await _open(store, account, PHONE)
    into, gone = _contact_id(survivor), _contact_id(absorbed)

    results = await asyncio.gather(
        store.merge_contacts(account, into, gone, 1),
        *(_open(store, account, PHONE) for _ in range(6)),
    )
    opened = [r for r in results[1:] if isinstance(r, Conversation)]
    # Each new conversation joined the absorbed contact before the merge moved it, or the
    # survivor after: either way, all of them end under the survivor.
    listed = await store.contact_conversations(account, into, limit=50)
    assert {c.id for c in listed} == {survivor.id, absorbed.id, *(c.id for c in opened)}
    assert await store.get_contact(account, gone) is None


async def test_search_takes_words_literally(store: Store) -> None:
    account = await _account(store)
    literal = await _open(store, account, name="100% Ada")
    await _open(store, account, name="1000 Bob")
    await _open(store, account, typed=(Identity("email", "a_b@example.com"),))
    await _open(store, account, typed=(Identity("email", "axb@example.com"),))

    assert [c.id for c in await store.search_contacts(account, "100%", limit=10)] == [
        _contact_id(literal)
    ]
    found = await store.search_contacts(account, "A_B@EXAMPLE", limit=10)
    assert [c.identities[0].identity.value for c in found] == ["a_b@example.com"]
    assert len(await store.search_contacts(account, "example.com", limit=1)) == 1
