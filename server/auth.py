"""Who is calling: operators by login and JWT, integrations by account API key."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from server.errors import Conflict, Forbidden, Invalid, Unauthorized
from server.security import (
    API_KEY_PREFIX,
    DUMMY_PASSWORD_HASH,
    InvalidToken,
    TokenClaims,
    hash_api_key,
    issue_device_token,
    issue_token,
    read_device_token,
    read_token,
    verify_password,
)
from storage.base import Store
from storage.models import Operator

BEARER = "bearer "
# Accounts whose operator with a login's email has the password checked when the login names
# no account (emails are unique per account only). Every such login runs the KDF this many
# times, found or not, so its time tells neither whether the email is used nor how often; an
# email in more accounts logs in naming its account.
LOGIN_ACCOUNTS_MAX = 3
# How long a connection that outlives requests (the operator stream, the tenant socket) may go
# on after its token stops being accepted (signed out, expired, its operator deactivated or
# deleted): each asks again this often, one read per connection, so 10,000 open streams cost
# about 300 reads a second.
RECHECK_S = 30.0
# API keys whose account this process has looked up once and keeps. A key never changes
# account and is never revoked (the store has no statement that deletes or moves one): what
# was found stays true. Misses are not kept, so a wrong key cannot grow the table; a full table
# starts over.
KNOWN_KEYS_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, always scoped to exactly one account."""

    account_id: str
    # None when the caller holds the account's API key, which acts with admin rights.
    operator: Operator | None
    # The operator's token, when that is how the caller authenticated.
    token: TokenClaims | None = None

    @property
    def is_admin(self) -> bool:
        return self.operator is None or self.operator.is_admin

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("admin_required", "this needs an admin operator or the API key")

    def require_operator(self) -> Operator:
        if self.operator is None:
            raise Invalid("operator_required", "this needs an operator's token, not the API key")
        return self.operator


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires: float
    operator: Operator
    # Proof for later logins that this client has signed in as this email before.
    device_token: str


class Recheck:
    """When a long-lived connection asks the Authenticator again whether its token is still
    accepted; an API key's connection never does (keys are not revoked)."""

    __slots__ = ("_auth", "_due", "_principal")

    def __init__(self, auth: Authenticator, principal: Principal) -> None:
        self._auth = auth
        self._principal = principal
        self._due = time.monotonic() + RECHECK_S if principal.token else math.inf

    def wait(self, longest_s: float | None) -> float | None:
        """How long the connection may wait for its next event (at most ``longest_s``; None:
        without end) before it should ask."""
        left = max(self._due - time.monotonic(), 0.0)
        if left == math.inf:
            return longest_s
        return left if longest_s is None else min(left, longest_s)

    async def revoked(self) -> bool:
        """Whether the token is no longer accepted; reads the store only once due."""
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + RECHECK_S
        return not await self._auth.still_signed_in(self._principal)


def login_key(email: str) -> str:
    """An email as logins look it up, so that case variants are one login."""
    return email.strip().lower()


def _token_claims(principal: Principal) -> TokenClaims:
    if principal.token is None:
        raise Invalid("operator_required", "signing out needs an operator's token, not the API key")
    return principal.token


def _invalid() -> Unauthorized:
    return Unauthorized("invalid_credentials", "the credentials do not match")


class Authenticator:
    def __init__(self, store: Store, secret_key: str, jwt_ttl_s: int) -> None:
        self._store = store
        self._secret = secret_key
        self._ttl_s = jwt_ttl_s
        self._known_keys: dict[str, str] = {}

    async def login(self, email: str, password: str, account_id: str | None = None) -> Session:
        """The operator with this email and password: of ``account_id``, or without it the one
        account's whose operator the password matches (``409 account_required`` when it matches
        in several, which only someone who knows such a password learns)."""
        key = login_key(email)
        checks = 1 if account_id is not None else LOGIN_ACCOUNTS_MAX
        # One more than is checked, to know whether some were left unchecked.
        found = await self._store.get_credentials(key, account_id, limit=checks + 1)
        checked = found[:checks]
        # The KDF runs `checks` times whatever was found, so the response time reveals nothing.
        hashes = [c.password_hash for c in checked]
        hashes += [DUMMY_PASSWORD_HASH] * (checks - len(hashes))
        results = await asyncio.gather(
            *(asyncio.to_thread(verify_password, password, encoded) for encoded in hashes)
        )
        matched = [c for c, matches in zip(checked, results, strict=False) if matches]
        if not matched:
            raise _invalid()
        if len(matched) > 1 or len(found) > checks:
            raise Conflict(
                "account_required",
                "this email and password may sign in to more than one account: name the account",
            )
        operator = matched[0].operator
        if not operator.active:
            raise Forbidden("operator_deactivated", "this operator has been deactivated")
        return await self.session(operator)

    async def session(self, operator: Operator) -> Session:
        """A new session of ``operator``, whose password was just proven or chosen: at login,
        after a password change (which revoked the others), on accepting an invitation."""
        version = await self._store.token_version(operator.account_id, operator.id)
        if version is None:  # deleted while the password was being checked
            raise _invalid()
        token, expires = issue_token(
            self._secret, TokenClaims(operator.account_id, operator.id, version), self._ttl_s
        )
        device = issue_device_token(self._secret, login_key(operator.email))
        return Session(token, expires, operator, device)

    def device(self, email: str, device_token: str) -> str | None:
        """The id of the device ``device_token`` names, if it logged in as ``email`` before."""
        return read_device_token(self._secret, login_key(email), device_token)

    async def account_key(self, account_id: str, key: str) -> Principal:
        """The App Command API names the account and the key; both must agree."""
        if await self._key_owner(key) != account_id:
            raise _invalid()
        return Principal(account_id, None)

    async def _key_owner(self, key: str) -> str:
        """The account of API key ``key``; a store read only the first time this process
        sees the key (see KNOWN_KEYS_MAX): every App Command names one."""
        key_hash = hash_api_key(key)
        owner = self._known_keys.get(key_hash)
        if owner is None:
            owner = await self._store.account_for_api_key(key_hash)
            if owner is None:
                raise _invalid()
            if len(self._known_keys) >= KNOWN_KEYS_MAX:
                self._known_keys.clear()
            self._known_keys[key_hash] = owner
        return owner

    async def token(self, token: str) -> Principal:
        try:
            claims = read_token(self._secret, token)
        except InvalidToken:
            raise Unauthorized("invalid_token", "the token is invalid or has expired") from None
        operator = await self._store.get_signed_in_operator(
            claims.account_id, claims.operator_id, claims.version, claims.token_id
        )
        if operator is None:
            raise Unauthorized(
                "invalid_token", "the token was revoked or its operator no longer exists"
            )
        return Principal(claims.account_id, operator, claims)

    async def still_signed_in(self, principal: Principal) -> bool:
        """Whether the token a long-lived connection (the SSE stream, the tenant socket)
        opened with would still be accepted: not expired, not signed out, its operator not
        deactivated nor deleted. An API key's connection stays: keys are not revoked."""
        claims = principal.token
        if claims is None:
            return True
        if claims.expires <= time.time():
            return False
        operator = await self._store.get_signed_in_operator(
            claims.account_id, claims.operator_id, claims.version, claims.token_id
        )
        return operator is not None

    async def sign_out(self, principal: Principal) -> None:
        """Revokes the token the caller authenticated with, on every process at once."""
        claims = _token_claims(principal)
        if claims.token_id:
            await self._store.revoke_token(claims.token_id, claims.expires)
        else:  # issued before tokens had ids: only its operator's version can revoke it
            await self._store.revoke_tokens(claims.account_id, claims.operator_id)

    async def sign_out_everywhere(self, principal: Principal) -> None:
        """Revokes every token of the caller's operator, this one included."""
        claims = _token_claims(principal)
        await self._store.revoke_tokens(claims.account_id, claims.operator_id)

    async def headers(self, headers: Mapping[str, str]) -> Principal:
        """``X-Api-Key: KEY``, or ``Authorization: Bearer`` with a JWT or an API key."""
        key = headers.get("x-api-key")
        authorization = headers.get("authorization", "")
        if not key and authorization[: len(BEARER)].lower() == BEARER:
            credential = authorization[len(BEARER) :].strip()
            if not credential.startswith(API_KEY_PREFIX):
                return await self.token(credential)
            key = credential
        if not key:
            raise Unauthorized("missing_credentials", "send X-Api-Key or Authorization: Bearer")
        return Principal(await self._key_owner(key), None)
