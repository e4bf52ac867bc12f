"""The Store keeps the events it is given: numbered, with their payloads, replayed as kept.
It decides nothing about which events a change produces (that is the engine's)."""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from pathlib import Path

import asyncpg
import pytest

import storage.postgres
import storage.sqlite
from storage import create_store
from storage.base import Store
from storage.migrations import load_migrations
from storage.models import Change, Conversation, Message, NewEvent
from tests.storage.conftest import BACKENDS
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


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'upgrade.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def _insert_old_events(database_url: str, rows: list[tuple[object, ...]]) -> None:
    """Event rows as the code before migration 0006 wrote them: no payload columns."""
    columns = "account_id, seq, kind, convo_id, msg_seq, created"
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            db.executemany(f"INSERT INTO events ({columns}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        return
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            f"INSERT INTO events ({columns}) VALUES ($1, $2, $3, $4, $5, $6)", rows
        )
    finally:
        await conn.close()


async def test_events_from_before_0006_survive_the_upgrade_and_replay(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = storage.sqlite if database_url.startswith("sqlite") else storage.postgres
    with monkeypatch.context() as before_0006:
        before_0006.setattr(
            backend, "load_migrations", lambda d: [m for m in load_migrations(d) if m[0] < 6]
        )
        old = create_store(database_url)
        await old.open()
        try:
            account = await _account(old)
        finally:
            await old.close()
    store = create_store(database_url)
    await store.open()
    try:
        # The conversation is written by today's code (its row has columns added after 0006);
        # only the events are as the code before 0006 wrote them.
        fresh = _conversation(account)
        convo = (await store.write(account, None, lambda _: Change(None, fresh))).conversation

        def decide(current: Conversation | None) -> Change:
            assert current is not None
            return _with(current, _message(current, "old"))

        convo = (await store.write(account, convo.id, decide)).conversation
        await _insert_old_events(
            database_url,
            [
                (account, 1, "conversation:new", convo.id, None, 1000.0),
                (account, 2, "message:new", convo.id, 1, 1001.0),
            ],
        )
        details = await store.replay_events(account, after_seq=0, limit=10)
        assert [(d.event.seq, d.event.kind, d.event.data) for d in details] == [
            (1, "conversation:new", None),
            (2, "message:new", None),
        ]
        assert details[1].message is not None and details[1].message.text == "old"
        replays = await store.replay_messages(account, convo.id, after_seq=0, limit=10)
        assert [(r.message.text, r.data) for r in replays] == [("old", None)]
    finally:
        await store.close()
