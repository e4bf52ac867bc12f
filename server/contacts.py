"""Contacts (issue 14): the person behind conversations, per account.

A contact is recognised by identities, each normalised here so that one person's spellings
meet: a phone number in E.164 (Google's libphonenumber rules, through ``phonenumbers``), an
email address (trimmed, its domain lowercased: the local part is the mailbox owner's and may
be case-sensitive, RFC 5321 section 2.4), a widget session id, a bot platform's user id
(``"<channel_id>:<user>"``, so two bot channels never share a user).

An identity a channel proves links a new conversation to its contact inside the write that
creates it (Store.write); one somebody typed is recorded unverified and only suggests a
possible match, which an operator may merge.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from server.errors import Conflict, Invalid, NotFound
from server.text import has_control_characters, is_email
from storage.base import MergedContact, Store
from storage.models import Contact, Conversation, Identity, Operator, UserInfo

# A contact's conversations one view lists; its oldest ones are still searchable in the inbox.
CONVERSATIONS_MAX = 100
# Possible matches one view lists: more than this is a pattern, not a person.
MATCHES_MAX = 20
SEARCH_DEFAULT, SEARCH_MAX = 20, 100
# Search words: longer than any name or identity value is a client bug.
SEARCH_MAX_CHARS = 200
# A bot platform's user ids are short; the bound keeps junk out of the unique index.
BOT_USER_MAX_CHARS = 256
SESSION_ID_MAX_CHARS = 128


@dataclass(frozen=True, slots=True)
class ContactView:
    """A contact as an operator sees it: who, where they wrote, who else it might be."""

    contact: Contact
    conversations: list[Conversation]
    matches: list[Contact]


def normalize_phone(value: str) -> str:
    """``value`` in E.164; Invalid when it is not a phone number with its country code."""
    try:
        number = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException:
        raise Invalid(
            "invalid_phone", "a phone number needs its country code, e.g. +1 555 0100"
        ) from None
    if not phonenumbers.is_possible_number(number):
        raise Invalid("invalid_phone", "this is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str) -> str:
    value = value.strip()
    if not is_email(value):
        raise Invalid("invalid_email", "this is not one email address")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def bot_identity(channel_id: int, user: str) -> Identity:
    """A bot platform's user, scoped to the channel that knows them."""
    return normalized(Identity("bot", f"{channel_id}:{user}"))


def normalized(identity: Identity) -> Identity:
    """``identity`` in its one spelling; Invalid when its value is not of its kind."""
    kind, value = identity.kind, identity.value
    if kind == "phone":
        return Identity(kind, normalize_phone(value))
    if kind == "email":
        return Identity(kind, normalize_email(value))
    if kind == "session":
        limit = SESSION_ID_MAX_CHARS
    else:
        limit = BOT_USER_MAX_CHARS
        channel, _, user = value.partition(":")
        if not (channel.isascii() and channel.isdigit() and user):
            raise Invalid("invalid_identity", "a bot identity is '<channel_id>:<user>'")
    if not value or len(value) > limit or has_control_characters(value):
        raise Invalid("invalid_identity", f"a {kind} identity is 1-{limit} printable characters")
    return identity


def typed_identities(info: UserInfo) -> tuple[Identity, ...]:
    """The identities in what a visitor or an operator typed: a well-formed email, a phone
    number written with its country code. Anything else identifies nobody and is left out
    (it stays on the conversation as typed)."""
    found: list[Identity] = []
    for kind, value in (("email", info.email), ("phone", info.phone)):
        if value.strip():
            try:
                found.append(normalized(Identity(kind, value)))  # type: ignore[arg-type]
            except Invalid:
                continue
    return tuple(found)


def display_name(info: UserInfo) -> str:
    return " ".join(n for n in (info.fname, info.lname) if n)


class Contacts:
    """The operator panel's contact calls: one method per endpoint, each scoped by account."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def view(self, account_id: str, contact_id: int) -> ContactView:
        contact = await self._store.get_contact(account_id, contact_id)
        if contact is None:
            raise NotFound("contact_not_found", f"no contact {contact_id}")
        return await self._view(contact)

    async def search(self, account_id: str, words: str, limit: int | None) -> list[Contact]:
        words = words.strip()
        if not words:
            raise Invalid("missing_field", "q is required")
        if len(words) > SEARCH_MAX_CHARS or has_control_characters(words):
            raise Invalid("invalid_field", f"q is 1-{SEARCH_MAX_CHARS} printable characters")
        if limit is not None and not 1 <= limit <= SEARCH_MAX:
            raise Invalid("invalid_field", f"limit must be between 1 and {SEARCH_MAX}")
        return await self._store.search_contacts(account_id, words, limit=limit or SEARCH_DEFAULT)

    async def merge(self, by: Operator, into_id: int, from_id: int) -> ContactView:
        """Moves ``from_id``'s conversations and identities to ``into_id`` and records who
        merged them. Repeating a merge already made answers as the first time did."""
        if into_id == from_id:
            raise Invalid("merge_into_itself", "a contact cannot be merged into itself")
        try:
            merged = await self._store.merge_contacts(by.account_id, into_id, from_id, by.id)
        except MergedContact as exc:
            raise Conflict(
                "contact_merged",
                f"that contact was merged into contact {exc.into_id} already; merge with it",
            ) from None
        if merged is None:
            raise NotFound("contact_not_found", "no such contact")
        return await self._view(merged[0])

    async def _view(self, contact: Contact) -> ContactView:
        account_id = contact.account_id
        return ContactView(
            contact,
            await self._store.contact_conversations(
                account_id, contact.id, limit=CONVERSATIONS_MAX
            ),
            await self._store.possible_matches(account_id, contact.id, limit=MATCHES_MAX),
        )
