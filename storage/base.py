"""The Store protocol: durable state for every backend, with the guarantees each must keep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from storage.models import (
    Account,
    CannedResponse,
    Change,
    Committed,
    Conversation,
    Event,
    EventDetail,
    Message,
    Operator,
    OperatorCredentials,
    Team,
)

# A pure decision over the current, locked state of one conversation (None when it does not
# exist yet or was not asked for). It returns the change to commit, None to write nothing, or
# raises to abort with nothing written.
Decide = Callable[[Conversation | None], Change | None]


class StoreError(Exception):
    """Base of the errors a Store raises on its own account (not a decision's errors)."""


class DuplicateEmail(StoreError):
    """An operator with this email already exists (emails are global: they are logins)."""


class UnknownReference(StoreError):
    """A row names another that does not exist (e.g. a team member deleted meanwhile)."""


@dataclass(frozen=True, slots=True)
class OperatorPatch:
    name: str | None = None
    email: str | None = None
    password_hash: str | None = None
    is_admin: bool | None = None


@dataclass(frozen=True, slots=True)
class TeamPatch:
    name: str | None = None
    member_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class CannedPatch:
    name: str | None = None
    tag: str | None = None
    message: str | None = None


class Store(Protocol):
    """Durable state. Every method is scoped by account: a row of another account is absent.

    Guarantees every backend keeps:
    - ``write`` is atomic and serializable per conversation and per account: the decision sees
      the latest committed state, and either all of its change (conversation row, messages,
      account events) commits or none of it does.
    - Account event seqs are gapless and increase in commit order.
    - Message client ids are unique within an account.
    """

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    # accounts and keys
    async def create_account(self, account_id: str, name: str, api_key_hash: str) -> Account: ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def account_for_api_key(self, api_key_hash: str) -> str | None:
        """The id of the account that owns the key with this hash."""

    # operators
    async def create_operator(
        self, account_id: str, name: str, email: str, password_hash: str, is_admin: bool
    ) -> Operator:
        """Raises DuplicateEmail when the email (case-insensitive) is taken."""

    async def get_operator(self, account_id: str, operator_id: int) -> Operator | None: ...

    async def get_credentials(self, email: str) -> OperatorCredentials | None: ...

    async def list_operators(self, account_id: str) -> list[Operator]: ...

    async def update_operator(
        self, account_id: str, operator_id: int, patch: OperatorPatch
    ) -> Operator | None:
        """Raises DuplicateEmail when the new email is taken."""

    async def delete_operator(self, account_id: str, operator_id: int) -> bool:
        """Removes the operator and their team memberships; their messages keep their name."""

    # teams
    async def create_team(self, account_id: str, name: str, member_ids: Sequence[int]) -> Team: ...

    async def list_teams(self, account_id: str) -> list[Team]: ...

    async def update_team(self, account_id: str, team_id: int, patch: TeamPatch) -> Team | None: ...

    async def delete_team(self, account_id: str, team_id: int) -> bool: ...

    # canned responses
    async def create_canned(
        self, account_id: str, name: str, tag: str, message: str
    ) -> CannedResponse: ...

    async def get_canned(self, account_id: str, canned_id: int) -> CannedResponse | None: ...

    async def list_canned(self, account_id: str) -> list[CannedResponse]: ...

    async def update_canned(
        self, account_id: str, canned_id: int, patch: CannedPatch
    ) -> CannedResponse | None: ...

    async def delete_canned(self, account_id: str, canned_id: int) -> bool: ...

    # conversations: the one write path
    async def write(
        self,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        *,
        client_msg_id: str | None = None,
    ) -> Committed:
        """Run ``decide`` on the locked conversation and commit its change atomically.

        When ``client_msg_id`` names a message that already exists in the account, nothing is
        decided or written: the result has ``duplicate=True``, the original message and its
        conversation's current state.
        """

    async def get_conversation(self, account_id: str, convo_id: str) -> Conversation | None: ...

    async def list_messages(
        self,
        convo_id: str,
        *,
        after_seq: int = 0,
        after_created: float = 0.0,
        limit: int = 200,
        newest: bool = False,
    ) -> list[Message]:
        """Messages with seq > after_seq and created > after_created, oldest first: the first
        ``limit`` of them, or with ``newest`` the last ``limit`` of them."""

    async def list_events(self, account_id: str, *, after_seq: int, limit: int) -> list[Event]:
        """Account events with seq > after_seq, oldest first."""

    async def replay_events(
        self, account_id: str, *, after_seq: int, limit: int
    ) -> list[EventDetail]:
        """Like list_events, each with its conversation and message (current state)."""

    async def head_event_seq(self, account_id: str) -> int:
        """The account's latest event seq (0 before the first)."""
