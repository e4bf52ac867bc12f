"""IMAP, the default inbound source of an email channel (issue 15): any mailbox, no DNS change.

Every process runs ``ImapSources``: each round it looks at the email channels with an
``imap_url`` and follows, in a task of its own, each mailbox whose lease it can take
(``Store.claim_mailbox``), so one process follows a mailbox at a time however many run; a
process that dies leaves its lease to run out, and another takes the mailbox over.

Following a mailbox: log in, SELECT, import what is new, then IDLE until the server announces
mail (or ``poll_s`` passes, or the server has no IDLE) and import again, renewing the lease
each time. Bookkeeping is by (UIDVALIDITY, UID): each message is fetched with
``BODY.PEEK[]`` (which leaves it unread for people), taken in through the ingest pipeline,
flagged ``$LiveOpProcessed`` (never deleted or moved), and only then is the cursor moved past
it. A connection that drops mid-fetch leaves the cursor before the message, which is fetched
again and known again by the pipeline (Message-ID or digest): nothing lost, nothing twice.
The first connection imports only mail from then on, unless the channel has a backfill window;
a changed UIDVALIDITY voids every UID, so the backfill window (at least ``RESCAN_DAYS``) is
fetched again and the pipeline drops what it already has.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aioimaplib

from server.adapters.imap import COMMAND_TIMEOUT_S, ImapConnection, ImapFailed, ok
from server.channels import Channels, settings_of
from server.crypto import UnreadableSecret
from server.email_ingest import EmailIngest
from storage.base import Store
from storage.models import Channel, ImapCursor

log = logging.getLogger(__name__)
T = TypeVar("T")

# The keyword on every message taken in: people see what the inbox has, nothing is deleted.
PROCESSED_FLAG = "$LiveOpProcessed"
# How long a process holds a mailbox without renewing: a few polls, so a dead one's
# mailboxes wait this long at most.
LEASE_S = 180.0
# RFC 2177: an IDLE is ended before 29 minutes. The poll bounds it anyway.
IDLE_MAX_S = 25 * 60.0
# After a UIDVALIDITY change, at least this many days are fetched again.
RESCAN_DAYS = 7
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCHED_UID = re.compile(rb"\bUID (\d+)\b")


def _number(pattern: re.Pattern[bytes], lines: list[Any]) -> int | None:
    for line in lines:
        found = pattern.search(bytes(line))
        if found:
            return int(found.group(1))
    return None


class Mailbox(ImapConnection):
    """One channel's mailbox, followed over one connection by one holder."""

    def __init__(
        self,
        store: Store,
        ingest: EmailIngest,
        channel: Channel,
        url: str,
        holder: str,
        *,
        backfill_days: int,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        super().__init__(url, timeout_s=timeout_s)
        self._store = store
        self._ingest = ingest
        self._channel = channel
        self._holder = holder
        self._backfill_days = backfill_days

    async def sync(self, cursor: ImapCursor) -> ImapCursor | None:
        """Imports what is new since ``cursor``; returns the new cursor, or None once the
        lease is lost (another process follows the mailbox now)."""
        selected = await self.select()
        validity = _number(_UIDVALIDITY, selected.lines)
        uidnext = _number(_UIDNEXT, selected.lines)
        if validity is None:
            raise ImapFailed("SELECT named no UIDVALIDITY")
        if cursor.uidvalidity is None and not self._backfill_days:
            # The first connection: what is already there is the past, unless asked for.
            start = ImapCursor(validity, max((uidnext or 1) - 1, 0))
            return start if await self._advance(start) else None
        if cursor.uidvalidity != validity:
            days = max(self._backfill_days, RESCAN_DAYS if cursor.uidvalidity else 0)
            since = (datetime.now(UTC) - timedelta(days=days)).strftime("%d-%b-%Y")
            uids = await self._search("SINCE", since)
            cursor = ImapCursor(validity, 0)
        else:
            uids = await self._search("UID", f"{cursor.last_uid + 1}:*")
        for uid in sorted(u for u in uids if u > cursor.last_uid):
            raw = await self._fetch(uid)
            if raw is not None:
                await self._ingest.ingest(self._channel, raw)
                flag = f"+FLAGS.SILENT ({PROCESSED_FLAG})"
                ok(await self.call(self.client().uid("store", str(uid), flag)), "STORE")
            cursor = ImapCursor(validity, uid)
            if not await self._advance(cursor):
                return None
        return cursor

    async def wait(self, poll_s: float) -> None:
        """Until the server announces a change (IDLE), or ``poll_s`` passes."""
        client = self.client()
        if not client.has_capability("IDLE"):
            await asyncio.sleep(poll_s)
            return
        idle = await self.call(client.idle_start(timeout=IDLE_MAX_S))
        try:
            await self.call(client.wait_server_push(timeout=poll_s))
        except TimeoutError:
            pass
        finally:
            client.idle_done()
        ok(await self.call(asyncio.wait_for(idle, self._timeout_s)), "IDLE")

    async def _search(self, *criteria: str) -> list[int]:
        found = ok(await self.call(self.client().uid_search(*criteria, charset=None)), "SEARCH")
        uids: list[int] = []
        for line in found.lines[:-1]:
            uids += [int(n) for n in bytes(line).split() if n.isdigit()]
        return uids

    async def _fetch(self, uid: int) -> bytes | None:
        """The message, unread as people see it; None when it was expunged meanwhile."""
        fetching = self.client().uid("fetch", str(uid), "(UID BODY.PEEK[])")
        lines = ok(await self.call(fetching), "FETCH").lines
        for i, line in enumerate(lines[:-1]):
            named = _FETCHED_UID.search(bytes(line)) if isinstance(line, bytes) else None
            if named and int(named.group(1)) == uid and isinstance(lines[i + 1], bytearray):
                return bytes(lines[i + 1])
        return None

    async def _advance(self, cursor: ImapCursor) -> bool:
        return await self._store.advance_mailbox(
            self._channel.account_id, self._channel.id, self._holder, cursor
        )


class ImapSources:
    """Follows every email channel's mailbox that this process holds the lease of."""

    def __init__(
        self, store: Store, channels: Channels, ingest: EmailIngest, *, poll_s: float
    ) -> None:
        self._store = store
        self._channels = channels
        self._ingest = ingest
        self._poll_s = poll_s
        self.holder = secrets.token_hex(8)
        self._followed: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._followed.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for account_id, channel_id in list(self._followed):
            await self._store.release_mailbox(account_id, channel_id, self.holder)
        self._followed.clear()

    async def round(self) -> None:
        """Starts following each mailbox nobody follows; what another process holds is left."""
        for channel in await self._store.list_channels_of_kind("email"):
            ident = (channel.account_id, channel.id)
            running = self._followed.get(ident)
            if settings_of(channel).get("imap_url") and (running is None or running.done()):
                self._followed[ident] = asyncio.create_task(self.follow(channel))

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # the store may be down for a while: the next round tries again
                log.exception("listing the mailboxes to follow failed")
            await asyncio.sleep(self._poll_s)

    async def follow(self, channel: Channel) -> None:
        """Follows one mailbox until its lease is lost or its connection fails; the next
        round starts again (and a failure is on the channel's health line)."""
        account_id, channel_id = channel.account_id, channel.id
        cursor = await self._claim(account_id, channel_id)
        if cursor is None:
            return
        try:
            url = self._channels.email_credentials(channel).imap_url
        except UnreadableSecret:
            await self._failed(channel, "the channel's credentials cannot be opened")
            return
        if url is None:
            return
        backfill = int(settings_of(channel).get("imap_backfill_days") or 0)
        mailbox = Mailbox(
            self._store, self._ingest, channel, url, self.holder, backfill_days=backfill
        )
        try:
            await mailbox.connect()
            while cursor is not None:
                cursor = await mailbox.sync(cursor)
                if cursor is None:
                    break
                await mailbox.wait(self._poll_s)
                cursor = await self._claim(account_id, channel_id)
        except (OSError, TimeoutError, ImapFailed, aioimaplib.AioImapException) as exc:
            await self._failed(channel, f"IMAP {mailbox.mailbox}: {exc or type(exc).__name__}")
        finally:
            await mailbox.close()

    async def _claim(self, account_id: str, channel_id: int) -> ImapCursor | None:
        now = time.time()
        return await self._store.claim_mailbox(
            account_id, channel_id, self.holder, now, now + LEASE_S
        )

    async def _failed(self, channel: Channel, reason: str) -> None:
        log.warning("channel %s/%s: %s", channel.account_id, channel.id, reason)
        await self._store.record_channel_outbound(
            channel.account_id, channel.id, time.time(), reason[:300]
        )
