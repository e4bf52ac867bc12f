"""Claims of outbound deliveries on every backend: never two holders, a dead holder's claims
taken over after the lease, a stale holder fenced off, and the message's delivery field
following the outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import create_store
from storage.base import Store
from storage.models import Delivery, SourceApp
from storage.outbound import OutboundJob
from tests.outbound.conftest import (
    AGO_S,
    CUSTOMER,
    NOW,
    append_reply,
    new_account,
    new_conversation,
)

LEASE_S = 30.0
BOTH = ("sms", "email")


async def _claim(
    store: Store, worker: str, now: float = NOW, limit: int = 100, channels: tuple[str, ...] = BOTH
) -> list[OutboundJob]:
    return await store.claim_outbound(
        worker,
        channels=channels,
        now=now,
        lease_s=LEASE_S,
        limit=limit,  # type: ignore[arg-type]
    )


async def _delivery(store: Store, account: str, convo_id: str, seq: int) -> Delivery | None:
    (message,) = [m for m in await store.list_messages(account, convo_id) if m.seq == seq]
    return message.delivery


async def _outbound_rows(store: Store) -> dict[tuple[str, int], dict[str, object]]:
    return {
        (row["convo_id"], row["seq"]): row
        async for table, row in store.export_rows()
        if table == "outbound"
    }


async def test_a_queued_reply_is_claimed_with_everything_needed_to_deliver_it(
    store: Store,
) -> None:
    account = await new_account(store, "Acme Ltd")
    convo = await new_conversation(store, account, "smsbroadcast")
    await append_reply(store, convo, "Hi, it's Vera", delivery=None)  # the customer's own
    reply = await append_reply(store, convo, "Hello Vera!")
    (job,) = await _claim(store, "w1")
    assert job == OutboundJob(
        account_id=account, account_name="Acme Ltd", convo_id=convo.id, seq=2,
        message_id=reply.id, channel="sms", text="Hello Vera!", sender="operator",
        operator_name="Alex", contact=CUSTOMER, created=reply.created, attempt=1,
    )  # fmt: skip
    assert await _claim(store, "w2") == []  # held by w1
    row = (await _outbound_rows(store))[(convo.id, 2)]
    assert (row["state"], row["claimed_by"], row["lease_until"]) == ("queued", "w1", NOW + LEASE_S)


async def test_concurrent_workers_claim_each_message_exactly_once(store: Store) -> None:
    account = await new_account(store)
    expected = set()
    for i in range(40):
        channel: SourceApp = "smsbroadcast" if i % 2 else "emailbroadcast"
        convo = await new_conversation(store, account, channel)
        await append_reply(store, convo, f"reply {i}")
        expected.add(convo.id)
    claimed: dict[str, list[str]] = {"a": [], "b": [], "c": []}

    async def worker(name: str) -> None:
        while jobs := await _claim(store, name, limit=3):
            claimed[name].extend(j.convo_id for j in jobs)
            for job in jobs:
                assert await store.finish_outbound(job, name, sent=True, error=None, retry_at=None)

    await asyncio.gather(*(worker(name) for name in claimed))
    everything = [convo for ids in claimed.values() for convo in ids]
    assert sorted(everything) == sorted(expected)  # each once, none twice
    rows = await _outbound_rows(store)
    assert {row["state"] for row in rows.values()} == {"sent"}
    assert {row["attempts"] for row in rows.values()} == {1}


async def test_a_crashed_workers_claim_is_taken_over_once_the_lease_has_passed(
    store: Store,
) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    await append_reply(store, convo, "reply")
    (crashed,) = await _claim(store, "crashed")  # ...and never finishes
    assert await _claim(store, "healthy", now=NOW + LEASE_S - 1) == []
    (taken,) = await _claim(store, "healthy", now=NOW + LEASE_S)
    assert (taken.seq, taken.attempt) == (crashed.seq, 2)
    assert await store.finish_outbound(taken, "healthy", sent=True, error=None, retry_at=None)
    assert await _delivery(store, account, convo.id, 1) == "sent"


async def test_a_stale_worker_cannot_record_an_outcome(store: Store) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    await append_reply(store, convo, "reply")
    (stale,) = await _claim(store, "slow")
    (fresh,) = await _claim(store, "fast", now=NOW + LEASE_S + 1)
    # The slow worker comes back while the new holder is still at it, and after it is done.
    assert not await store.finish_outbound(stale, "slow", sent=False, error="x", retry_at=None)
    assert await _delivery(store, account, convo.id, 1) == "queued"
    assert await store.finish_outbound(fresh, "fast", sent=True, error=None, retry_at=None)
    assert not await store.finish_outbound(stale, "slow", sent=False, error="x", retry_at=None)
    assert not await store.finish_outbound(fresh, "fast", sent=True, error=None, retry_at=None)
    assert await _delivery(store, account, convo.id, 1) == "sent"
    row = (await _outbound_rows(store))[(convo.id, 1)]
    assert (row["state"], row["attempts"], row["claimed_by"]) == ("sent", 2, None)


async def test_the_same_worker_reclaiming_its_lapsed_row_is_still_fenced(store: Store) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    await append_reply(store, convo, "reply")
    (first,) = await _claim(store, "w")
    (second,) = await _claim(store, "w", now=NOW + LEASE_S)
    assert not await store.finish_outbound(first, "w", sent=True, error=None, retry_at=None)
    assert await store.finish_outbound(second, "w", sent=True, error=None, retry_at=None)


async def test_a_retry_waits_for_its_time_and_the_message_stays_queued(store: Store) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    await append_reply(store, convo, "reply")
    (job,) = await _claim(store, "w")
    retry_at = NOW + 60
    assert await store.finish_outbound(job, "w", sent=False, error="451 later", retry_at=retry_at)
    assert await _delivery(store, account, convo.id, 1) == "queued"
    row = (await _outbound_rows(store))[(convo.id, 1)]
    assert (row["state"], row["last_error"], row["next_attempt_at"]) == (
        "queued", "451 later", retry_at,
    )  # fmt: skip
    assert row["claimed_by"] is None and row["lease_until"] is None
    assert await _claim(store, "w", now=retry_at - 1) == []
    (again,) = await _claim(store, "w", now=retry_at)
    assert again.attempt == 2
    assert await store.finish_outbound(again, "w", sent=True, error=None, retry_at=None)
    assert await _delivery(store, account, convo.id, 1) == "sent"


async def test_a_failure_is_final_and_keeps_its_reason(store: Store) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    await append_reply(store, convo, "reply")
    (job,) = await _claim(store, "w")
    assert await store.finish_outbound(job, "w", sent=False, error="550 no user", retry_at=None)
    assert await _delivery(store, account, convo.id, 1) == "failed"
    assert (await _outbound_rows(store))[(convo.id, 1)]["last_error"] == "550 no user"
    assert await _claim(store, "w", now=NOW + 10 * LEASE_S) == []


async def test_a_conversation_has_one_message_in_flight_and_they_go_in_order(
    store: Store,
) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    for text in ("first", "second", "third"):
        await append_reply(store, convo, text)
    (first,) = await _claim(store, "a")
    assert await _claim(store, "b") == []  # "second" waits for "first"
    await store.finish_outbound(first, "a", sent=False, error="busy", retry_at=NOW + 5)
    assert await _claim(store, "b", now=NOW + 4) == []  # ...also while "first" backs off
    (retried,) = await _claim(store, "b", now=NOW + 5)
    assert retried.text == "first"
    await store.finish_outbound(retried, "b", sent=False, error="gone", retry_at=None)
    (second,) = await _claim(store, "b", now=NOW + 5)  # a failure unblocks the next one
    assert second.text == "second"
    await store.finish_outbound(second, "b", sent=True, error=None, retry_at=None)
    assert [j.text for j in await _claim(store, "b", now=NOW + 5)] == ["third"]


async def test_a_worker_claims_only_the_channels_it_can_deliver(store: Store) -> None:
    account = await new_account(store)
    sms = await new_conversation(store, account, "smsbroadcast")
    email = await new_conversation(store, account, "emailbroadcast")
    await append_reply(store, sms, "by sms")
    await append_reply(store, email, "by email")
    (mail,) = await _claim(store, "mailer", channels=("email",))
    assert mail.channel == "email"
    await store.finish_outbound(mail, "mailer", sent=True, error=None, retry_at=None)
    # With no SMS provider anywhere the SMS reply waits, queued, for one.
    assert await _claim(store, "mailer", channels=("email",), now=NOW + 10 * LEASE_S) == []
    assert await _delivery(store, account, sms.id, 1) == "queued"
    assert [j.text for j in await _claim(store, "texter", channels=("sms",))] == ["by sms"]


async def test_the_oldest_due_message_goes_first_and_limit_bounds_a_batch(store: Store) -> None:
    account = await new_account(store)
    # Written newest first, so the claim's order is not the order of insertion.
    for age in range(5):
        convo = await new_conversation(store, account, at=NOW - AGO_S - 10 * age)
        await append_reply(store, convo, f"{age * 10} s old")
    assert [j.text for j in await _claim(store, "w", limit=2)] == ["40 s old", "30 s old"]


async def test_sent_with_a_retry_time_is_refused(store: Store) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account)
    await append_reply(store, convo, "reply")
    (job,) = await _claim(store, "w")
    with pytest.raises(ValueError, match="not retried"):
        await store.finish_outbound(job, "w", sent=True, error=None, retry_at=NOW)


async def test_outbound_rows_survive_an_export_and_import(store: Store, tmp_path: Path) -> None:
    account = await new_account(store)
    convo = await new_conversation(store, account, "smsbroadcast")
    await append_reply(store, convo, "sent one")
    await append_reply(store, convo, "queued one")
    (job,) = await _claim(store, "w")
    await store.finish_outbound(job, "w", sent=True, error=None, retry_at=None)
    rows = [(table, row) async for table, row in store.export_rows()]
    assert [t for t, _ in rows].count("outbound") == 2
    target = create_store(f"sqlite:///{tmp_path / 'moved.db'}")
    await target.open()
    try:
        assert await target.import_rows(rows) == len(rows)
        assert sorted(map(repr, [(t, r) async for t, r in target.export_rows()])) == sorted(
            map(repr, rows)
        )
        (moved,) = await _claim(target, "w2")  # the queued one goes on from the new store
        assert moved.text == "queued one"
    finally:
        await target.close()
