"""An IMAP connection (``aioimaplib``) for an email channel's mailbox: its URL, logging in,
selecting, and failing at once when the server goes away.

``imap[s]://user:pass@host[:port]/MAILBOX``: ``imaps://`` is TLS from the first byte (port 993
unless given), ``imap://`` plain text (port 143, for a server on a trusted network).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aioimaplib

from server.text import has_control_characters

T = TypeVar("T")
# An IMAP mailbox name: INBOX, or a folder path a person typed.
MAILBOX_MAX = 200
# Each IMAP command's timeout.
COMMAND_TIMEOUT_S = 30.0


class ImapFailed(Exception):
    """The server refused a command, answered something unusable, or went away."""


def parse_imap_url(url: str) -> tuple[str, int, bool, str | None, str | None, str]:
    """(host, port, TLS from the first byte, user, password, mailbox) of an
    ``imap[s]://user:pass@host[:port]/MAILBOX`` URL; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps"):
        raise ValueError("an IMAP URL starts with imap:// or imaps://")
    if not parts.hostname:
        raise ValueError("the IMAP URL names no host")
    if parts.query or parts.fragment:
        raise ValueError("the IMAP URL takes no query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the IMAP URL's port is not a number between 0 and 65535") from None
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    if len(mailbox) > MAILBOX_MAX or has_control_characters(mailbox):
        raise ValueError(f"the mailbox is 1 to {MAILBOX_MAX} visible characters")
    tls = parts.scheme == "imaps"
    return (
        parts.hostname,
        port or (993 if tls else 143),
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
        mailbox,
    )


def ok(response: Any, what: str) -> Any:
    """``response`` when the server said OK; ImapFailed with its words otherwise."""
    if response.result != "OK":
        detail = b" ".join(bytes(line) for line in response.lines)[:200]
        raise ImapFailed(f"{what}: {response.result} {detail.decode('utf-8', 'replace')}")
    return response


class ImapConnection:
    """One logged-in connection to the mailbox ``url`` names."""

    def __init__(self, url: str, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._host, self._port, self._tls, user, password, self.mailbox = parse_imap_url(url)
        self._user, self._password = user or "", password or ""
        self._timeout_s = timeout_s
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()

    async def connect(self) -> None:
        kind = aioimaplib.IMAP4_SSL if self._tls else aioimaplib.IMAP4
        client = kind(host=self._host, port=self._port, timeout=self._timeout_s)
        # aioimaplib leaves a command waiting for its timeout when the connection drops: the
        # callback ends it at once (see call).
        client.protocol.conn_lost_cb = lambda _exc: self._lost.set()
        self._client = client
        await self.call(client.wait_hello_from_server())
        ok(await self.call(client.login(self._user, self._password)), "LOGIN")

    async def select(self) -> Any:
        return ok(await self.call(self.client().select(self.mailbox)), "SELECT")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):  # a dead connection has nothing to log out of
            await self.call(asyncio.wait_for(client.logout(), self._timeout_s))
        # aioimaplib leaves its socket to the server's hang-up; a refused login gets none.
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()

    def client(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise ImapFailed("not connected")
        return self._client

    async def call(self, command: Awaitable[T]) -> T:
        """``command``'s outcome, or ImapFailed as soon as the connection is lost."""
        running = asyncio.ensure_future(command)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({running, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not running.done():
            running.cancel()
            raise ImapFailed("the server closed the connection")
        return running.result()


async def check_mailbox(url: str, timeout_s: float) -> None:
    """Logs in and selects the mailbox, as following it would; ImapFailed, OSError or
    TimeoutError say why not."""
    connection = ImapConnection(url, timeout_s=timeout_s)
    try:
        await connection.connect()
        await connection.select()
    except aioimaplib.AioImapException as exc:
        raise ImapFailed(str(exc) or type(exc).__name__) from exc
    finally:
        await connection.close()
