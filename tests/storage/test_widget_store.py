"""Widgets, widget tokens and assistants in the Store (issue 17), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from server.events import announce
from storage.base import (
    NO_ASSISTANT,
    AssistantPatch,
    Decide,
    SitePatch,
    Store,
    UnknownReference,
)
from storage.models import DEFAULT_SITE_ID, Change, Conversation, Message
from tests.storage.test_store_contract import _account, _open, _req


async def test_sites_have_unguessable_unique_widget_ids(store: Store) -> None:
    one, two = await _account(store), await _account(store, "globex")
    default = await store.get_site(one, DEFAULT_SITE_ID)
    assert default is not None and len(default.widget_id) >= 22
    shop = await store.create_site(one, "Shop", "#000000", "right", "", None)
    other = await store.get_site(two, DEFAULT_SITE_ID)
    assert other is not None
    assert len({default.widget_id, shop.widget_id, other.widget_id}) == 3
    assert await store.site_by_widget_id(shop.widget_id) == shop
    assert await store.site_by_widget_id("nope") is None


async def test_site_widget_settings_and_their_assistant(store: Store) -> None:
    account = await _account(store)
    assistant = await store.create_assistant(
        account, "Helper", "http://m.test/v1", "m", "sealed", "Be kind.", 100, 5000
    )
    patch = SitePatch(
        logo_url="https://x.test/l.png",
        assistant_id=assistant.id,
        allowed_origins='["https://a.test", "http://localhost:8080"]',
        voice_number="+14165559999",
    )
    site = await store.update_site(account, DEFAULT_SITE_ID, patch)
    assert site is not None
    assert (site.logo_url, site.assistant_id, site.voice_number) == (
        "https://x.test/l.png", assistant.id, "+14165559999",
    )  # fmt: skip
    assert site.allowed_origins == ("https://a.test", "http://localhost:8080")
    with pytest.raises(UnknownReference):
        await store.update_site(account, DEFAULT_SITE_ID, SitePatch(assistant_id=99))
    cleared = await store.update_site(
        account, DEFAULT_SITE_ID, SitePatch(assistant_id=NO_ASSISTANT)
    )
    assert cleared is not None and cleared.assistant_id is None
    await store.update_site(account, DEFAULT_SITE_ID, SitePatch(assistant_id=assistant.id))
    assert await store.delete_assistant(account, assistant.id)
    after = await store.get_site(account, DEFAULT_SITE_ID)
    assert after is not None and after.assistant_id is None


async def test_widget_tokens_are_per_site_and_revoked_by_deleting(store: Store) -> None:
    account, other = await _account(store), await _account(store, "globex")
    first = await store.create_widget_token(account, DEFAULT_SITE_ID, "hash-1")
    second = await store.create_widget_token(account, DEFAULT_SITE_ID, "hash-2")
    assert first is not None and second is not None
    assert await store.create_widget_token(account, 99, "hash-3") is None
    assert await store.list_widget_tokens(account, DEFAULT_SITE_ID) == [first, second]
    assert await store.list_widget_tokens(other, DEFAULT_SITE_ID) == []
    assert await store.widget_token("hash-2") == second
    assert not await store.delete_widget_token(other, DEFAULT_SITE_ID, first.id)
    assert await store.delete_widget_token(account, DEFAULT_SITE_ID, first.id)
    assert await store.widget_token("hash-1") is None
    # A deleted site takes its tokens along.
    site = await store.create_site(account, "Shop", "#000000", "right", "", None)
    await store.create_widget_token(account, site.id, "hash-4")
    assert await store.delete_site(account, site.id)
    assert await store.widget_token("hash-4") is None


async def test_assistants_are_scoped_and_their_spend_is_their_replies(store: Store) -> None:
    account, other = await _account(store), await _account(store, "globex")
    mine = await store.create_assistant(account, "A", "http://m.test/v1", "m", "s", "", 10, 99)
    theirs = await store.create_assistant(other, "B", "http://m.test/v1", "m", "s", "", 10, 99)
    assert mine.id == theirs.id == 1
    assert await store.get_assistant(other, mine.id) == theirs
    changed = await store.update_assistant(account, mine.id, AssistantPatch(max_tokens=20))
    assert changed is not None and changed.max_tokens == 20
    assert await store.list_assistants(account) == [changed]

    convo = await _open(store, account)

    def reply(tokens: int, created: float) -> Decide:
        def decide(found: Conversation | None) -> Change:
            current = _req(found)
            seq = current.last_seq + 1
            message = Message(
                id=secrets.token_urlsafe(8), convo_id=current.id, seq=seq, sender="bot",
                operator_id=None, operator_name=None, text="Hello", created=created,
                client_msg_id=None, visitor_seq=seq, assistant_id=mine.id, model="gpt-test",
                tokens=tokens,
            )  # fmt: skip
            after = dataclasses.replace(
                current, last_seq=seq, visitor_last_seq=seq, last_activity=created
            )
            return announce(Change(current, after, (message,)))

        return decide

    await store.write(account, convo.id, reply(30, 2000.0))
    await store.write(account, convo.id, reply(12, 3000.0))
    assert await store.assistant_tokens_since(account, mine.id, 0) == 42
    assert await store.assistant_tokens_since(account, mine.id, 2500.0) == 12
    assert await store.assistant_tokens_since(other, theirs.id, 0) == 0
    messages = await store.list_messages(account, convo.id)
    assert [(m.assistant_id, m.model, m.tokens) for m in messages] == [
        (mine.id, "gpt-test", 30), (mine.id, "gpt-test", 12),
    ]  # fmt: skip
