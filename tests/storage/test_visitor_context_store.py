"""Issue 18: the conversation's visitor context survives a write and a read on both
backends, as the engine's appends change it."""

from __future__ import annotations

import dataclasses

from server.visitor_context import VisitorContext, merged
from storage.base import Change, Store
from storage.models import Conversation
from tests.storage.test_store_contract import _account, _append, _open, _req


async def test_an_append_keeps_the_visitor_context_it_carries(store: Store) -> None:
    account = await _account(store)
    convo = await _open(store, account)
    context = merged(convo.visitor_context, VisitorContext(url="https://a.example/", title="A"))

    def with_context(current: Conversation | None) -> Change:
        return _append(dataclasses.replace(_req(current), visitor_context=context), "Hi")

    await store.write(account, convo.id, with_context)
    found = await store.get_conversation(account, convo.id)
    assert found is not None and found.visitor_context == context
    assert convo.visitor_context == "{}"
