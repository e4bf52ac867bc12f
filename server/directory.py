"""Accounts and their people and settings: operators, teams, canned responses, sites.

Validates what the admin surfaces and the CLI hand in, then makes one Store call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from server import business_hours as hours
from server.adapters.translate import check_language
from server.errors import Conflict, Forbidden, Invalid, NotFound, at_most
from server.security import hash_api_key, hash_password, new_api_key, verify_password
from server.text import check_body, has_control_characters, has_invisible_formatting, is_email
from storage.base import (
    CannedPatch,
    DuplicateEmail,
    OperatorPatch,
    SitePatch,
    Store,
    TeamPatch,
    UnknownReference,
    owned_unresolved,
)
from storage.models import (
    DEFAULT_SITE_ID,
    WIDGET_POSITIONS,
    Account,
    CannedResponse,
    Invite,
    Operator,
    Site,
    Team,
    WidgetPosition,
)

NAME_MAX = 100
TAG_MAX = 50
# NIST SP 800-63B: at least 8 characters; the upper bound only stops KDF abuse.
PASSWORD_MIN = 8
PASSWORD_MAX = 256
# 8 random bytes as hex: account ids appear in public chat-window URLs, so they need not be
# secret, only unique and opaque.
ACCOUNT_ID_BYTES = 8
# An invitation's link works for a week: long enough to be read after a weekend, short
# enough that a link forwarded by mistake is soon worth nothing.
INVITE_TTL_S = 7 * 24 * 3600
# 256 random bits, so the link is unguessable and a plain SHA-256 of it can be stored.
INVITE_TOKEN_BYTES = 32
# Open invitations an account may hold at once (used and expired ones do not count): a team
# being hired, not a loop; the admin list shows them all.
PENDING_INVITES_MAX = 100
# An operator's own canned responses: every one is in the `/` picker, which any operator
# may fill, so a bound that a person's shorthand never meets.
PERSONAL_CANNED_MAX = 200
# What an account's admins create (server.errors.at_most): operators (deactivated ones
# count: they keep their history) with open invitations, teams, sites and the account's
# canned responses. Each list is read whole by the inbox or the admin screens.
OPERATORS_MAX = 1000
TEAMS_MAX = 200
SITES_MAX = 200
ACCOUNT_CANNED_MAX = 1000
# A widget greeting is a line or two shown above the chat, not a message.
GREETING_MAX = 300
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# An operator's picture, as a link a bot platform's chat shows beside their answers.
AVATAR_URL_MAX = 2048
_AVATAR_URL = re.compile(r"^https?://[^\s]+$")
# A site's logo: a link the widget shows, as long as honest image links are.
LOGO_URL_MAX = 2048
_HTTP_URL = re.compile(r"^https?://[^\s]+$")
# The origins a site's widget may be embedded on: a company's few domains and their staging.
ORIGINS_MAX = 20
ORIGIN_MAX = 200
# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")

# The most open or active conversations a team's round robin may give one operator (issue
# 18): nobody answers more at once; 0 means no limit.
ASSIGN_LIMIT_MAX = 1000

T = TypeVar("T")


def _name(value: str, field: str, limit: int = NAME_MAX) -> str:
    value = value.strip()
    if not value:
        raise Invalid("invalid_field", f"{field} must not be empty")
    if len(value) > limit:
        raise Invalid("invalid_field", f"{field} is longer than {limit} characters")
    if has_control_characters(value):
        raise Invalid("invalid_field", f"{field} must not contain control characters")
    if has_invisible_formatting(value):
        raise Invalid(
            "invalid_field", f"{field} must not contain bidi overrides or invisible characters"
        )
    return value


def _avatar_url(value: str) -> str:
    """An http(s) link, or "" for none."""
    value = value.strip()
    if value and (
        len(value) > AVATAR_URL_MAX
        or not _AVATAR_URL.fullmatch(value)
        or has_control_characters(value)
    ):
        raise Invalid(
            "invalid_field",
            f"avatar_url must be an http(s) URL of {AVATAR_URL_MAX} characters at most",
        )
    return value


def _assign_limit(value: int) -> int:
    if not 0 <= value <= ASSIGN_LIMIT_MAX:
        raise Invalid("invalid_field", f"assign_limit must be 0 (no limit) to {ASSIGN_LIMIT_MAX}")
    return value


def _email(value: str) -> str:
    value = value.strip().lower()
    if not is_email(value):
        raise Invalid("invalid_field", "email is not one email address")
    return value


def _password(value: str) -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise Invalid(
            "invalid_field", f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )
    return value


class Directory:
    def __init__(self, store: Store, max_message_chars: int) -> None:
        self._store = store
        self._max_message_chars = max_message_chars

    async def create_account(self, name: str) -> tuple[Account, str]:
        """The new account and its API key, which is shown this once and stored hashed."""
        key = new_api_key()
        account = await self._store.create_account(
            secrets.token_hex(ACCOUNT_ID_BYTES), _name(name, "name"), hash_api_key(key)
        )
        return account, key

    async def get_account(self, account_id: str) -> Account:
        account = await self._store.get_account(account_id)
        if account is None:
            raise NotFound("account_not_found", "no such account")
        return account

    # operators

    async def list_operators(self, account_id: str) -> list[Operator]:
        return await self._store.list_operators(account_id)

    async def create_operator(
        self,
        account_id: str,
        *,
        name: str,
        email: str,
        password: str,
        is_admin: bool,
        lang: str | None = None,
        avatar_url: str | None = None,
    ) -> Operator:
        name, email = _name(name, "name"), _email(email)
        lang = check_language(lang) if lang is not None else "en"
        avatar = _avatar_url(avatar_url or "")
        at_most(await self._seats(account_id), OPERATORS_MAX, "operators")
        password_hash = await asyncio.to_thread(hash_password, _password(password))
        try:
            return await self._store.create_operator(
                account_id, name, email, password_hash, is_admin, lang, avatar
            )
        except DuplicateEmail:
            raise Conflict(
                "email_taken", "an operator of this account already has this email"
            ) from None

    async def update_operator(
        self,
        account_id: str,
        operator_id: int,
        *,
        name: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_admin: bool | None = None,
        lang: str | None = None,
        avatar_url: str | None = None,
        active: bool | None = None,
    ) -> Operator:
        if active is False:
            # Deactivating hands their conversations on: the engine's deactivate_operator.
            raise Invalid("invalid_field", "deactivate an operator with POST .../deactivate")
        password_hash = None
        if password is not None:
            password_hash = await asyncio.to_thread(hash_password, _password(password))
        patch = OperatorPatch(
            name=_name(name, "name") if name is not None else None,
            email=_email(email) if email is not None else None,
            password_hash=password_hash,
            is_admin=is_admin,
            lang=check_language(lang) if lang is not None else None,
            avatar_url=_avatar_url(avatar_url) if avatar_url is not None else None,
            active=active,
        )
        try:
            operator = await self._store.update_operator(account_id, operator_id, patch)
        except DuplicateEmail:
            raise Conflict(
                "email_taken", "an operator of this account already has this email"
            ) from None
        found = _found(operator, "operator_not_found", f"no operator {operator_id}")
        if password_hash is not None:
            # Whoever knew the old password may hold a token: the new one signs them out.
            await self._store.revoke_tokens(account_id, operator_id)
        return found

    async def update_profile(
        self,
        operator: Operator,
        *,
        name: str | None = None,
        avatar_url: str | None = None,
        lang: str | None = None,
        password: str | None = None,
        current_password: str | None = None,
    ) -> Operator:
        """What an operator may change of themselves. A new password needs the current one:
        a session left open on a shared screen must not be enough to take the login."""
        if password is not None:
            _password(password)
            if current_password is None:
                raise Invalid("current_password_required", "give current_password to change it")
            found = await self._store.get_credentials(operator.email, operator.account_id, limit=1)
            matches = bool(found) and await asyncio.to_thread(
                verify_password, current_password, found[0].password_hash
            )
            if not matches:
                raise Forbidden("wrong_password", "the current password is not right")
        return await self.update_operator(
            operator.account_id,
            operator.id,
            name=name,
            password=password,
            lang=lang,
            avatar_url=avatar_url,
        )

    async def delete_operator(self, account_id: str, operator_id: int) -> None:
        for blocked in (False, True):
            owned = owned_unresolved(operator_id, blocked=blocked, limit=1)
            if await self._store.list_conversations(account_id, owned):
                # Deleted, they would leave these in nobody's queue.
                raise Conflict(
                    "operator_has_conversations",
                    "the operator owns unresolved conversations: deactivate them instead",
                )
        deleted = await self._store.delete_operator(account_id, operator_id)
        _found(deleted or None, "operator_not_found", f"no operator {operator_id}")

    # invitations (issue 18)

    async def invite(
        self,
        account_id: str,
        invited_by: int | None,
        *,
        email: str,
        name: str,
        is_admin: bool,
        team_ids: Sequence[int],
    ) -> tuple[Invite, str]:
        """The invitation and its token, which is in this answer only (stored hashed)."""
        now = time.time()
        open_invites = len(await self._open_invites(account_id))
        at_most(open_invites, PENDING_INVITES_MAX, "invites", noun="open invitations: revoke one")
        # Each open invitation is an operator to be: it takes a seat now.
        at_most(await self._seats(account_id), OPERATORS_MAX, "operators")
        token = secrets.token_urlsafe(INVITE_TOKEN_BYTES)
        try:
            invite = await self._store.create_invite(
                account_id,
                hash_api_key(token),
                email=_email(email),
                name=_name(name, "name"),
                is_admin=is_admin,
                team_ids=team_ids,
                invited_by=invited_by,
                expires=now + INVITE_TTL_S,
            )
        except DuplicateEmail:
            raise Conflict(
                "email_taken", "an operator of this account already has this email"
            ) from None
        except UnknownReference:
            raise NotFound("team_not_found", "no such team in this account") from None
        return invite, token

    async def list_invites(self, account_id: str) -> list[Invite]:
        return await self._store.list_invites(account_id)

    async def _open_invites(self, account_id: str) -> list[Invite]:
        now = time.time()
        invites = await self._store.list_invites(account_id)
        return [i for i in invites if i.used_at is None and i.expires > now]

    async def _seats(self, account_id: str) -> int:
        """Operators, deactivated ones too, and the invitations that may still become one."""
        operators = await self._store.list_operators(account_id)
        return len(operators) + len(await self._open_invites(account_id))

    async def revoke_invite(self, account_id: str, invite_id: int) -> None:
        deleted = await self._store.delete_invite(account_id, invite_id)
        _found(deleted or None, "invite_not_found", f"no pending invitation {invite_id}")

    async def open_invite(self, token: str) -> tuple[Invite, Account]:
        """The invitation a link names, while it may still be used, with its account."""
        invite = _usable(await self._store.invite_by_hash(hash_api_key(token)))
        return invite, await self.get_account(invite.account_id)

    async def accept_invite(self, token: str, password: str) -> Operator:
        """The invitation's operator, created with the password the invitee chose."""
        password_hash = await asyncio.to_thread(hash_password, _password(password))
        token_hash = hash_api_key(token)
        try:
            accepted = await self._store.accept_invite(token_hash, password_hash, time.time())
        except DuplicateEmail:
            raise Conflict(
                "email_taken", "an operator of this account already has this email"
            ) from None
        if accepted is None:
            # Why it cannot be used: read again to say which.
            _usable(await self._store.invite_by_hash(token_hash))
            raise Conflict("invite_used", "this invitation has already been used")
        return accepted[1]

    # teams

    async def list_teams(self, account_id: str) -> list[Team]:
        return await self._store.list_teams(account_id)

    async def create_team(
        self,
        account_id: str,
        *,
        name: str,
        member_ids: Sequence[int],
        auto_assign: bool = False,
        assign_limit: int = 0,
    ) -> Team:
        await self._check_members(account_id, member_ids)
        at_most(len(await self._store.list_teams(account_id)), TEAMS_MAX, "teams")
        with _members_exist():
            return await self._store.create_team(
                account_id,
                _name(name, "name"),
                member_ids,
                auto_assign=auto_assign,
                assign_limit=_assign_limit(assign_limit),
            )

    async def update_team(
        self,
        account_id: str,
        team_id: int,
        *,
        name: str | None = None,
        member_ids: Sequence[int] | None = None,
        auto_assign: bool | None = None,
        assign_limit: int | None = None,
    ) -> Team:
        if member_ids is not None:
            await self._check_members(account_id, member_ids)
        patch = TeamPatch(
            name=_name(name, "name") if name is not None else None,
            member_ids=tuple(member_ids) if member_ids is not None else None,
            auto_assign=auto_assign,
            assign_limit=_assign_limit(assign_limit) if assign_limit is not None else None,
        )
        with _members_exist():
            team = await self._store.update_team(account_id, team_id, patch)
        return _found(team, "team_not_found", f"no team {team_id}")

    async def delete_team(self, account_id: str, team_id: int) -> None:
        deleted = await self._store.delete_team(account_id, team_id)
        _found(deleted or None, "team_not_found", f"no team {team_id}")

    async def _check_members(self, account_id: str, member_ids: Sequence[int]) -> None:
        known = {o.id for o in await self._store.list_operators(account_id)}
        unknown = sorted(set(member_ids) - known)
        if unknown:
            raise Invalid("unknown_operator", f"no operator {unknown[0]} in this account")

    # canned responses: the account's, or with ``owner`` that operator's personal ones (issue
    # 18), which nobody else sees or changes

    async def list_canned(self, account_id: str, owner: int | None = None) -> list[CannedResponse]:
        return await self._store.list_canned(account_id, owner)

    async def create_canned(
        self, account_id: str, *, name: str, tag: str, message: str, owner: int | None = None
    ) -> CannedResponse:
        # The account's and an operator's own count apart (listing with an owner shows both).
        held = [c for c in await self._store.list_canned(account_id, owner) if c.owner == owner]
        if owner is None:
            at_most(len(held), ACCOUNT_CANNED_MAX, "canned", noun="canned responses")
        else:
            at_most(len(held), PERSONAL_CANNED_MAX, "canned", "an operator", "canned responses")
        try:
            return await self._store.create_canned(
                account_id, _name(name, "name"), self._tag(tag), self._message(message), owner
            )
        except UnknownReference:
            raise NotFound("operator_not_found", f"no operator {owner}") from None

    async def update_canned(
        self,
        account_id: str,
        canned_id: int,
        *,
        name: str | None = None,
        tag: str | None = None,
        message: str | None = None,
        owner: int | None = None,
    ) -> CannedResponse:
        patch = CannedPatch(
            name=_name(name, "name") if name is not None else None,
            tag=self._tag(tag) if tag is not None else None,
            message=self._message(message) if message is not None else None,
        )
        canned = await self._store.update_canned(account_id, canned_id, patch, owner)
        return _found(canned, "canned_not_found", f"no canned response {canned_id}")

    async def delete_canned(
        self, account_id: str, canned_id: int, owner: int | None = None
    ) -> None:
        deleted = await self._store.delete_canned(account_id, canned_id, owner)
        _found(deleted or None, "canned_not_found", f"no canned response {canned_id}")

    # sites

    async def list_sites(self, account_id: str) -> list[Site]:
        return await self._store.list_sites(account_id)

    async def get_site(self, account_id: str, site_id: int) -> Site:
        site = await self._store.get_site(account_id, site_id)
        return _found(site, "site_not_found", f"no site {site_id}")

    async def create_site(
        self,
        account_id: str,
        *,
        name: str,
        color: str | None,
        position: str | None,
        greeting: str | None,
        team_id: int | None,
    ) -> Site:
        at_most(len(await self._store.list_sites(account_id)), SITES_MAX, "sites")
        with _team_exists():
            return await self._store.create_site(
                account_id,
                _name(name, "name"),
                _color(color) if color is not None else "#2563eb",
                _position(position) if position is not None else "right",
                _greeting(greeting) if greeting is not None else "",
                team_id or None,
            )

    async def update_site(
        self,
        account_id: str,
        site_id: int,
        *,
        name: str | None,
        color: str | None,
        position: str | None,
        greeting: str | None,
        team_id: int | None,
        ask_rating: bool | None = None,
        logo_url: str | None = None,
        assistant_id: int | None = None,
        allowed_origins: Sequence[str] | None = None,
        voice_number: str | None = None,
        time_zone: str | None = None,
        business_hours: Sequence[Mapping[str, Any]] | None = None,
        away_message: str | None = None,
        reply_time: str | None = None,
    ) -> Site:
        """``assistant_id`` 0 clears the default assistant; an empty ``logo_url`` or
        ``voice_number`` clears it; an empty ``business_hours`` list makes the site always
        open."""
        patch = SitePatch(
            name=_name(name, "name") if name is not None else None,
            color=_color(color) if color is not None else None,
            position=_position(position) if position is not None else None,
            greeting=_greeting(greeting) if greeting is not None else None,
            team_id=team_id,
            ask_rating=ask_rating,
            logo_url=_logo_url(logo_url) if logo_url is not None else None,
            assistant_id=assistant_id,
            allowed_origins=(
                json.dumps(_origins(allowed_origins)) if allowed_origins is not None else None
            ),
            voice_number=_voice_number(voice_number) if voice_number is not None else None,
            time_zone=(
                hours.time_zone(time_zone, "time_zone").key if time_zone is not None else None
            ),
            business_hours=(
                hours.parse_hours(business_hours) if business_hours is not None else None
            ),
            away_message=(
                hours.text_setting(away_message, "away_message", hours.AWAY_MESSAGE_MAX)
                if away_message is not None
                else None
            ),
            reply_time=(
                hours.text_setting(reply_time, "reply_time", hours.REPLY_TIME_MAX)
                if reply_time is not None
                else None
            ),
        )
        with _references_exist():
            site = await self._store.update_site(account_id, site_id, patch)
        return _found(site, "site_not_found", f"no site {site_id}")

    async def delete_site(self, account_id: str, site_id: int) -> None:
        if site_id == DEFAULT_SITE_ID:
            raise Conflict("default_site", "the account's first site cannot be deleted")
        deleted = await self._store.delete_site(account_id, site_id)
        _found(deleted or None, "site_not_found", f"no site {site_id}")

    @staticmethod
    def _tag(tag: str) -> str:
        tag = tag.strip()
        if len(tag) > TAG_MAX:
            raise Invalid("invalid_field", f"tag is longer than {TAG_MAX} characters")
        if has_control_characters(tag):
            raise Invalid("invalid_field", "tag must not contain control characters")
        return tag

    def _message(self, message: str) -> str:
        if not message.strip():
            raise Invalid("invalid_field", "message must not be empty")
        check_body(message, self._max_message_chars)
        return message


def _usable(invite: Invite | None) -> Invite:
    if invite is None:
        raise NotFound("invite_not_found", "this invitation link is not valid or was revoked")
    if invite.used_at is not None:
        raise Conflict("invite_used", "this invitation has already been used: sign in instead")
    if invite.expires <= time.time():
        raise Conflict("invite_expired", "this invitation has expired: ask an admin for a new one")
    return invite


def _color(value: str) -> str:
    if not _COLOR.fullmatch(value):
        raise Invalid("invalid_field", "color must be a #RRGGBB hex colour")
    return value.lower()


def _position(value: str) -> WidgetPosition:
    for position in WIDGET_POSITIONS:
        if value == position:
            return position
    raise Invalid("invalid_field", f"position must be one of {', '.join(WIDGET_POSITIONS)}")


def _greeting(value: str) -> str:
    value = value.strip()
    if len(value) > GREETING_MAX:
        raise Invalid("invalid_field", f"greeting is longer than {GREETING_MAX} characters")
    if has_control_characters(value):
        raise Invalid("invalid_field", "greeting must not contain control characters")
    return value


@contextlib.contextmanager
def _team_exists() -> Iterator[None]:
    try:
        yield
    except UnknownReference:
        raise NotFound("team_not_found", "no such team in this account") from None


@contextlib.contextmanager
def _references_exist() -> Iterator[None]:
    """A site names a team and an assistant; the store says which one it could not find."""
    try:
        yield
    except UnknownReference as exc:
        if "assistant" in str(exc):
            raise NotFound("assistant_not_found", "no such assistant in this account") from None
        raise NotFound("team_not_found", "no such team in this account") from None


def _logo_url(value: str) -> str:
    value = value.strip()
    if value and (
        len(value) > LOGO_URL_MAX or not _HTTP_URL.fullmatch(value) or has_control_characters(value)
    ):
        raise Invalid("invalid_field", f"logo_url must be an http(s) URL of at most {LOGO_URL_MAX}")
    return value


def _origins(values: Sequence[str]) -> list[str]:
    """Browser origins as they send them (scheme://host[:port]), lower-cased, no duplicates."""
    if len(values) > ORIGINS_MAX:
        raise Invalid("invalid_field", f"allowed_origins holds at most {ORIGINS_MAX} origins")
    found: list[str] = []
    for value in values:
        origin = value.strip().lower().rstrip("/")
        parts = urlsplit(origin)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if (
            len(origin) > ORIGIN_MAX
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port_ok
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
            or has_control_characters(origin)
            or " " in origin
        ):
            raise Invalid(
                "invalid_field",
                "allowed_origins must list origins like https://shop.example or"
                " http://localhost:8080 (scheme, host and port only)",
            )
        if origin not in found:
            found.append(origin)
    return found


def _voice_number(value: str) -> str:
    value = value.strip()
    if value and not _E164.fullmatch(value):
        raise Invalid(
            "invalid_field", "voice_number must be a phone number in E.164 (+14165559999)"
        )
    return value


@contextlib.contextmanager
def _members_exist() -> Iterator[None]:
    """A member checked above may be deleted before the write; the store refuses it then."""
    try:
        yield
    except UnknownReference:
        raise Invalid("unknown_operator", "a member is not an operator of this account") from None


def _found(value: T | None, code: str, message: str) -> T:
    if value is None:
        raise NotFound(code, message)
    return value
