"""One writer process for test_postgres_concurrency: its own PostgresStore on a shared database.

``python -m tests.storage.postgres_worker DATABASE_URL`` opens the store (applying migrations
as a server starting up would), prints ``ready``, then reads one job line from stdin so that
every worker starts writing at once. An empty stdin closes the store and exits. The job runs
all of its writes concurrently and prints what each write returned, as one JSON line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import sys
import time
from typing import Any, TypedDict

from server.events import announce
from storage import create_store
from storage.base import Decide, Store
from storage.models import Change, Committed, Conversation, Message, UserInfo


class Job(TypedDict):
    account: str
    # Every worker appends ``appends`` messages here, racing the others for each seq.
    convo: str
    appends: int
    # Conversations this worker creates in the account, racing the others for event seqs.
    creates: int
    # Every worker sends each of these into ``retry_convo``: one message per id must result.
    retry_convo: str
    retry_ids: list[str]
    # Every worker opens a new conversation with a first message carrying each of these ids:
    # one conversation per id must result.
    create_ids: list[str]
    tag: str


def fresh_conversation(account_id: str) -> Conversation:
    now = time.time()
    return Conversation(
        id=secrets.token_urlsafe(16), account_id=account_id, source_app="chatbot",
        status="open", mode="bot", operator_id=None, team_id=None, user_info=UserInfo(),
        created=now, last_activity=now, resolved_at=None,
    )  # fmt: skip


def _append(current: Conversation, text: str, client_msg_id: str | None) -> Change:
    seq = current.last_seq + 1
    message = Message(
        id=secrets.token_urlsafe(8), convo_id=current.id, seq=seq, sender="visitor",
        operator_id=None, operator_name=None, text=text, created=time.time(),
        client_msg_id=client_msg_id,
    )  # fmt: skip
    after = dataclasses.replace(current, last_seq=seq, last_activity=message.created)
    return announce(Change(current, after, (message,)))


def append(text: str, client_msg_id: str | None = None) -> Decide:
    def decide(current: Conversation | None) -> Change:
        assert current is not None, "the conversation exists"
        return _append(current, text, client_msg_id)

    return decide


def open_with(account_id: str, text: str, client_msg_id: str | None = None) -> Decide:
    def decide(current: Conversation | None) -> Change:
        opened = fresh_conversation(account_id)
        change = _append(opened, text, client_msg_id)
        return announce(Change(None, change.after, change.messages))

    return decide


def report(committed: Committed) -> dict[str, Any]:
    return {
        "duplicate": committed.duplicate,
        "messages": [[m.id, m.convo_id, m.seq, m.client_msg_id] for m in committed.messages],
        "events": [[e.seq, e.kind, e.convo_id, e.msg_seq] for e in committed.events],
    }


async def run(store: Store, job: Job) -> list[dict[str, Any]]:
    account, tag = job["account"], job["tag"]
    # The client id races first: every worker reaches them in the same instant, so retries
    # of one id really do meet in the database rather than arriving one after another.
    writes = [
        *(
            store.write(account, None, open_with(account, tag, cid), client_msg_id=cid)
            for cid in job["create_ids"]
        ),
        *(
            store.write(account, job["retry_convo"], append(tag, cid), client_msg_id=cid)
            for cid in job["retry_ids"]
        ),
        *(store.write(account, job["convo"], append(f"{tag}-{i}")) for i in range(job["appends"])),
        *(store.write(account, None, open_with(account, "hi")) for _ in range(job["creates"])),
    ]
    return [report(committed) for committed in await asyncio.gather(*writes)]


async def main(url: str) -> None:
    store = create_store(url)
    await store.open()
    try:
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip():
            print(json.dumps(await run(store, json.loads(line))), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
