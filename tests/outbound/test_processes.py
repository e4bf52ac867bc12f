"""Two `liveop serve` processes on one PostgreSQL database deliver replies through a local
SMTP server and a local Twilio-speaking SMS server; one of them is killed with SIGKILL
mid-way. Every reply arrives, in order within its conversation, and only what the killed
process had in flight can arrive twice.

Why twice at all: a worker claims a batch, sends it, then records the outcome. Killed between
the provider accepting a message and the record, it leaves a claim that lapses after the
lease; the survivor then claims the message and sends it again. That window is the batch in
flight at the kill (BATCH messages at most), and an email sent twice carries one Message-ID,
so the duplicate is recognisable. While both processes live, claims never overlap, so before
the kill nothing arrives twice.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.outbound import BATCH
from tests.outbound.servers import (
    SMS_FROM,
    SMS_SID,
    SMS_TOKEN,
    Received,
    SmsServer,
    SmtpServer,
    sms_server,
    smtp_server,
)
from tests.server.realtime_clients import free_port
from tests.system.processes import Node, cli, command, wait_healthy

SECRET_KEY = "outbound-test-secret-key-0123456789abcdef"
CONVERSATIONS = 12
REPLIES = 6
# Each provider takes this long per message, so the kill lands while deliveries are in
# flight: a conversation's replies go one after another, at least REPLIES * DELAY_S each.
PROVIDER_DELAY_S = 0.2
# Short, so the survivor takes the killed process's claims over soon; each delivery may take
# a third of it, ten times PROVIDER_DELAY_S, so that even a loaded machine does not time out
# (and retry) a delivery that was on its way.
LEASE_S = 6
# Arrivals before the kill: two rounds of the conversations, a third of the way through.
KILL_AFTER = CONVERSATIONS * 2
ALL_DELIVERED_WITHIN_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Site:
    env: dict[str, str]
    logs: Path
    account_id: str
    api_key: str
    operator_id: int
    smtp: SmtpServer
    sms: SmsServer
    nodes: list[Node] = field(default_factory=list)

    def start(self, *names: str, worker: bool = True) -> list[Node]:
        """Starts a process per name at once, and returns them once all are healthy."""
        env = {**self.env, "LIVEOP_OUTBOUND_WORKER": "1" if worker else "0"}
        started = []
        for name in names:
            port = free_port()
            with (self.logs / f"{name}.log").open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(port)],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            started.append(Node(f"127.0.0.1:{port}", process))
        self.nodes.extend(started)
        for name, node in zip(names, started, strict=True):
            wait_healthy(node, self.logs / f"{name}.log")
        return started


@pytest.fixture
def site(tmp_path: Path, postgres_url: str) -> Iterator[Site]:
    with smtp_server() as smtp, sms_server() as sms:
        smtp.mailbox.delay_s = sms.twilio.delay_s = PROVIDER_DELAY_S
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_") and k != "PORT"}
        env.update(
            LIVEOP_DATA_DIR=str(tmp_path / "data"),
            LIVEOP_DATABASE_URL=postgres_url,
            LIVEOP_SECRET_KEY=SECRET_KEY,
            LIVEOP_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
            LIVEOP_EMAIL_FROM="help@acme.test",
            LIVEOP_SMS_URL=sms.base,
            LIVEOP_SMS_ACCOUNT_SID=SMS_SID,
            LIVEOP_SMS_AUTH_TOKEN=SMS_TOKEN,
            LIVEOP_SMS_FROM=SMS_FROM,
            LIVEOP_OUTBOUND_LEASE_S=str(LEASE_S),
        )
        assert cli(env, "migrate") == {"database": "postgresql", "migrated": True}
        account = cli(env, "account", "create", "--name", "Acme")
        operator = cli(
            env, "operator", "create", "--account", account["accountID"], "--name", "Olga",
            "--email", "olga@acme.test", "--password", "outbound-pass-1",
        )  # fmt: skip
        site = Site(
            env, tmp_path, account["accountID"], account["apiKey"], operator["operatorID"],
            smtp, sms,
        )  # fmt: skip
        try:
            yield site
        finally:
            for node in site.nodes:
                node.process.terminate()
            for node in site.nodes:
                try:
                    node.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()


def _arrivals(site: Site) -> list[tuple[str, Received]]:
    """(text, arrival) for everything both providers received so far."""
    with site.smtp.mailbox.lock:
        mails = [
            (r.message.get_content().strip(), r) for r in site.smtp.mailbox.received if r.message
        ]
    with site.sms.twilio.lock:
        texts = [(r.form["Body"], r) for r in site.sms.twilio.received]
    return mails + texts


async def _taken_over(url: str) -> set[str]:
    """The texts of the messages claimed more than once."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT m.text FROM outbound o JOIN messages m USING (convo_id, seq)"
            " WHERE o.attempts > 1"
        )
    finally:
        await conn.close()
    return {row["text"] for row in rows}


async def test_two_processes_deliver_every_reply_and_a_killed_one_is_taken_over(
    site: Site, postgres_url: str
) -> None:
    async def run(node: Node, name: str, **fields: Any) -> dict[str, Any]:
        return await command(node, site.account_id, site.api_key, name, **fields)

    # Every reply is queued before any worker runs, so the kill lands mid-way for sure.
    (front,) = site.start("front", worker=False)
    convos: list[str] = []
    for i in range(CONVERSATIONS):
        sms = i % 2 == 0
        body = await run(
            front, "sendmessage", message=f"customer {i}",
            sourceApp="smsbroadcast" if sms else "emailbroadcast",
            userInfo={"phone": f"+1555000{i:04d}"} if sms else {"email": f"c{i}@customer.test"},
        )  # fmt: skip
        convos.append(str(body["convoID"]))
    expected: dict[str, list[str]] = {convo: [] for convo in convos}
    for r in range(REPLIES):  # a round at a time, so each conversation's order is known
        texts = [f"reply {r} to {i}" for i in range(CONVERSATIONS)]
        await asyncio.gather(*(
            run(front, "sendmessage", convoID=convo, operatorID=site.operator_id, message=text)
            for i, (convo, text) in enumerate(zip(convos, texts, strict=True))
        ))  # fmt: skip
        for convo, text in zip(convos, texts, strict=True):
            expected[convo].append(text)

    assert _arrivals(site) == []

    doomed, survivor = site.start("doomed", "survivor")
    while len(_arrivals(site)) < KILL_AFTER:  # noqa: ASYNC110 - the providers are threads
        await asyncio.sleep(0.01)
    doomed.process.kill()
    killed_at = time.monotonic()
    doomed.process.wait(STOP_TIMEOUT_S)

    every = {text for texts in expected.values() for text in texts}
    deadline = time.monotonic() + ALL_DELIVERED_WITHIN_S
    while {text for text, _ in _arrivals(site)} != every:
        assert time.monotonic() < deadline, "not every reply was delivered"
        await asyncio.sleep(0.05)

    # Each outcome is recorded just after its provider answered.
    for convo in convos:
        while True:
            history = await run(survivor, "gethistory", convoID=convo, numMessages=REPLIES + 1)
            deliveries = [m["delivery"] for m in history["messages"]]
            if deliveries == [None] + ["sent"] * REPLIES:
                break
            assert time.monotonic() < deadline, deliveries
            await asyncio.sleep(0.05)

    arrivals = sorted(_arrivals(site), key=lambda pair: pair[1].at)
    counts = Counter(text for text, _ in arrivals)
    # While both processes lived, nothing arrived twice: claims never overlap.
    before_kill = Counter(text for text, r in arrivals if r.at < killed_at)
    assert set(before_kill.values()) == {1}
    # After it, only what the killed process held can arrive again: the messages the
    # survivor took over once the lease had passed (their second claim), one batch at most.
    twice = {text for text, count in counts.items() if count > 1}
    assert max(counts.values()) <= 2
    taken_over = await _taken_over(postgres_url)
    assert twice <= taken_over
    assert len(taken_over) <= BATCH
    # A duplicate email is the same email: one Message-ID.
    ids: defaultdict[str, set[str]] = defaultdict(set)
    for text, r in arrivals:
        if r.message is not None:
            ids[text].add(str(r.message["Message-ID"]))
    assert all(len(found) == 1 for found in ids.values())
    # Each conversation's replies arrived in the order they were written.
    first_at = {text: r.at for text, r in reversed(arrivals)}
    for texts in expected.values():
        assert sorted(texts, key=first_at.__getitem__) == texts
