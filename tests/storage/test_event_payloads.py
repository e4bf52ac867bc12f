"""The Store keeps the events it is given: numbered, with their payloads, replayed as kept.
It decides nothing about which events a change produces (that is the engine's)."""

from __future__ import annotations

import dataclasses
import secrets

from storage.base import Store
from storage.models import Change, Conversation, Message, NewEvent
from tests.storage.test_store_contract import _account, _conversation


def _message(current: Conversation, text: str, *, private: bool = False) -> Message:
    return Message(
        id=secrets.token_urlsafe(8), convo_id=current.id, seq=current.last_seq + 1,
        sender="operator", operator_id=None, operator_name=None, text=text,
        created=current.last_activity + 1, client_msg_id=None, private=private,
    )  # fmt: skip


def _with(current: Conversation, message: Message, *events: NewEvent) -> Change:
    after = dataclasses.replace(current, last_seq=message.seq, last_activity=message.created)
    return Change(current, after, (message,), events)


async def test_events_are_numbered_and_kept_as_given(store: Store) -> None:
    account = await _account(store)
    fresh = _conversation(account)
    given = (NewEvent("first", None, '{"a":1}'), NewEvent("second", None, '{"b":"é"}', "v"))
    committed = await store.write(account, None, lambda _: Change(None, fresh, events=given))
    kept = [(e.seq, e.kind, e.msg_seq, e.data, e.visitor_data) for e in committed.events]
    assert kept == [(1, "first", None, '{"a":1}', None), (2, "second", None, '{"b":"é"}', "v")]
    listed = await store.list_events(account, after_seq=0, limit=10)
    assert list(committed.events) == listed
    replayed = await store.replay_events(account, after_seq=0, limit=10)
    assert [d.event for d in replayed] == listed


async def test_a_change_without_events_appends_none(store: Store) -> None:
    account = await _account(store)
    committed = await store.write(account, None, lambda _: Change(None, _conversation(account)))
    assert committed.events == ()
    assert await store.head_event_seq(account) == 0
    assert await store.list_events(account, after_seq=0, limit=10) == []


async def test_replay_messages_gives_each_visible_message_its_visitor_payload(
    store: Store,
) -> None:
    account = await _account(store)
    fresh = _conversation(account)
    convo = (await store.write(account, None, lambda _: Change(None, fresh))).conversation
    for text, private in (("one", False), ("note", True), ("two", False)):

        def decide(
            current: Conversation | None, text: str = text, private: bool = private
        ) -> Change:
            assert current is not None
            message = _message(current, text, private=private)
            event = NewEvent("message:new", message.seq, "{}", None if private else f'"{text}"')
            return _with(current, message, event)

        convo = (await store.write(account, convo.id, decide)).conversation
    replays = await store.replay_messages(account, convo.id, after_seq=0, limit=10)
    assert [(r.message.text, r.data) for r in replays] == [("one", '"one"'), ("two", '"two"')]
    later = await store.replay_messages(account, convo.id, after_seq=1, limit=10)
    assert [r.message.seq for r in later] == [3]
    other = await _account(store, "globex")
    assert await store.replay_messages(other, convo.id, after_seq=0, limit=10) == []


async def test_replay_messages_without_a_kept_payload_gives_none(store: Store) -> None:
    """Messages whose event kept no payload (written before migration 0006) come back with
    None, for the caller to render."""
    account = await _account(store)
    fresh = _conversation(account)
    convo = (await store.write(account, None, lambda _: Change(None, fresh))).conversation

    def decide(current: Conversation | None) -> Change:
        assert current is not None
        return _with(current, _message(current, "old"))

    await store.write(account, convo.id, decide)
    replays = await store.replay_messages(account, convo.id, after_seq=0, limit=10)
    assert [(r.message.text, r.data) for r in replays] == [("old", None)]
