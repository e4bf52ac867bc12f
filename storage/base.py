"""The Store protocol: durable state for every backend, with the guarantees each must keep."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from storage.models import (
    Account,
    Assistant,
    Attachment,
    CannedResponse,
    Change,
    Channel,
    ChannelKind,
    Committed,
    Contact,
    Conversation,
    Delivery,
    EmailRecord,
    EmailThread,
    Event,
    EventDetail,
    ImapCursor,
    Invite,
    MediaState,
    Message,
    MessageReplay,
    OpenHours,
    Operator,
    OperatorCredentials,
    Roster,
    Site,
    SmsMedia,
    SourceApp,
    Status,
    Team,
    WidgetEvent,
    WidgetPosition,
    WidgetToken,
)
from storage.outbound import OutboundChannel, OutboundJob
from storage.webhooks import Webhook, WebhookAttempt, WebhookDelivery, WebhookJob

# A pure decision over the current, locked state of one conversation (None when it does not
# exist yet or was not asked for). It returns the change to commit, None to write nothing, or
# raises to abort with nothing written.
Decide = Callable[[Conversation | None], Change | None]
# The same, for a conversation a team's round robin may assign: it also gets the team's
# Roster as the write locked it (None when the team no longer exists).
RosterDecide = Callable[[Conversation | None, Roster | None], Change | None]


class StoreError(Exception):
    """Base of the errors a Store raises on its own account (not a decision's errors)."""


class DuplicateKey(StoreError):
    """A channel key is already taken (keys are unique across the installation)."""


class DuplicateEmail(StoreError):
    """An operator with this email already exists (emails are global: they are logins)."""


class MergedContact(StoreError):
    """A contact was merged into another: ``into_id`` is where its conversations went."""

    def __init__(self, into_id: int) -> None:
        super().__init__(f"merged into contact {into_id}")
        self.into_id = into_id


class UnknownReference(StoreError):
    """A row names another that does not exist (e.g. a team member deleted meanwhile)."""


class StoreNotEmpty(StoreError):
    """An import was asked of a store that already holds an account."""


class InvalidRow(StoreError):
    """An imported row does not fit the schema: unknown table, wrong columns or types, or a
    key that is taken or names a missing parent."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    # The JSON type of the value; int for float columns is accepted and widened on import.
    kind: type
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    # The primary key: exports are ordered by it, so two exports of one state list it alike.
    key: tuple[str, ...]
    # Kept, not derived on each use: every row written is laid out by it.
    column_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))


def _columns(spec: str) -> tuple[Column, ...]:
    """``"id:str name:str resolved_at:float?"`` as Columns (``?`` marks a nullable column)."""
    kinds: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
    columns = []
    for item in spec.split():
        name, kind = item.split(":")
        columns.append(Column(name, kinds[kind.rstrip("?")], kind.endswith("?")))
    return tuple(columns)


# Every table of an installation, parents before children, so that an export read in this
# order imports with every foreign key already satisfied. This is the one column list: the
# statements of storage/sql.py select and insert these columns (storage/rows.py maps them to
# records by name), and `liveop export`/`import` move exactly these. A migration that adds a
# column adds it here too, or the contract suite's schema test fails.
TABLES: tuple[Table, ...] = (
    Table("accounts", _columns("id:str name:str created:float last_event_seq:int"), ("id",)),
    Table("api_keys", _columns("key_hash:str account_id:str created:float"), ("key_hash",)),
    Table("counters", _columns("account_id:str kind:str last_id:int"), ("account_id", "kind")),
    Table(
        "operators",
        _columns(
            "account_id:str id:int name:str email:str password_hash:str is_admin:bool created:float"
            " lang:str"
            " token_version:int"
            " avatar_url:str"
            " active:bool"
        ),
        ("account_id", "id"),
    ),
    Table(
        "teams",
        _columns(
            "account_id:str id:int name:str auto_assign:bool assign_limit:int last_assigned:int"
        ),
        ("account_id", "id"),
    ),
    Table(
        "team_members",
        _columns("account_id:str team_id:int operator_id:int"),
        ("account_id", "team_id", "operator_id"),
    ),
    Table(
        "canned",
        _columns("account_id:str id:int name:str tag:str message:str operator_id:int?"),
        ("account_id", "id"),
    ),
    Table(
        "sites",
        _columns(
            "account_id:str id:int name:str color:str position:str greeting:str team_id:int?"
            " created:float ask_rating:bool"
            " widget_id:str logo_url:str assistant_id:int? allowed_origins:str voice_number:str"
            " time_zone:str business_hours:str away_message:str reply_time:str"
        ),
        ("account_id", "id"),
    ),
    Table(
        "widget_tokens",
        _columns("account_id:str id:int site_id:int token_hash:str created:float"),
        ("account_id", "id"),
    ),
    Table(
        "widget_events",
        _columns(
            "account_id:str id:int site_id:int session_id:str source:str event:str"
            " occurred:float? metadata:str day:int created:float"
        ),
        ("account_id", "id"),
    ),
    Table(
        "assistants",
        _columns(
            "account_id:str id:int name:str base_url:str model:str credentials:str"
            " system_prompt:str max_tokens:int monthly_token_budget:int created:float"
        ),
        ("account_id", "id"),
    ),
    Table(
        "channels",
        _columns(
            "account_id:str id:int kind:str name:str key:str settings:str credentials:str"
            " created:float last_inbound:float? last_outbound:float? last_error:str?"
            " last_error_at:float?"
        ),
        ("account_id", "id"),
    ),
    Table(
        "contacts", _columns("account_id:str id:int name:str created:float"), ("account_id", "id")
    ),
    Table(
        "contact_identities",
        _columns("account_id:str contact_id:int kind:str value:str verified:bool created:float"),
        ("account_id", "contact_id", "kind", "value"),
    ),
    Table(
        "contact_merges",
        _columns(
            "account_id:str from_id:int into_id:int from_name:str operator_id:int created:float"
        ),
        ("account_id", "from_id"),
    ),
    Table(
        "sms_opt_outs",
        _columns("account_id:str channel_id:int phone:str since:float"),
        ("account_id", "channel_id", "phone"),
    ),
    Table(
        "push_tokens",
        _columns("account_id:str operator_id:int token:str created:float"),
        ("account_id", "operator_id", "token"),
    ),
    Table(
        "conversations",
        _columns(
            "id:str account_id:str source_app:str status:str mode:str operator_id:int?"
            " team_id:int? fname:str lname:str email:str phone:str created:float"
            " last_activity:float resolved_at:float? last_seq:int unread:int"
            " operator_read_seq:int visitor_read_seq:int site_id:int session_id:str?"
            " block_type:str? translate:bool visitor_lang:str info:str preview:str"
            " rating:int? rating_comment:str rated_resolved_at:float? asked_at:float?"
            " replied_at:float? replied_by:int? bot_answered:bool"
            " visitor_last_seq:int"
            " channel_id:int?"
            " contact_id:int?"
            " control:str bot_user_id:str? attributes:str hidden_attributes:str custom_data:str"
            " qualified_at:float?"
            " visitor_context:str"
            " operator_read_visitor_seq:int"
            " rating_asked_resolved_at:float?"
        ),
        ("id",),
    ),
    Table(
        "messages",
        _columns(
            "convo_id:str seq:int id:str account_id:str sender:str operator_id:int?"
            " operator_name:str? text:str created:float client_msg_id:str? delivery:str?"
            " private:bool image_url:str? translation:str? translation_lang:str?"
            " visitor_seq:int?"
            " provider_id:str?"
            " assistant_id:int? model:str? tokens:int?"
            " attachments:str?"
        ),
        ("convo_id", "seq"),
    ),
    Table(
        "sms_media",
        _columns(
            "convo_id:str seq:int n:int account_id:str channel_id:int url:str content_type:str"
            " state:str attempts:int claimed_by:str? lease_until:float? next_attempt_at:float"
            " last_error:str? image_url:str? created:float"
        ),
        ("convo_id", "seq", "n"),
    ),
    Table(
        "events",
        _columns(
            "account_id:str seq:int kind:str convo_id:str msg_seq:int? created:float"
            " data:str? visitor_data:str?"
        ),
        ("account_id", "seq"),
    ),
    Table(
        "outbound",
        _columns(
            "convo_id:str seq:int account_id:str channel:str state:str attempts:int"
            " claimed_by:str? lease_until:float? next_attempt_at:float last_error:str?"
            " created:float"
            " payload:str?"
        ),
        ("convo_id", "seq"),
    ),
    Table("revoked_tokens", _columns("token_id:str expires:float"), ("token_id",)),
    Table(
        "email_threads",
        _columns(
            "convo_id:str account_id:str channel_id:int token:str tag:str customer:str"
            " subject:str created:float"
        ),
        ("convo_id",),
    ),
    Table(
        "emails",
        _columns(
            "account_id:str channel_id:int source_key:str direction:str message_id:str?"
            " outcome:str reason:str? sender:str convo_id:str? msg_id:str? original:str?"
            " html:str? created:float"
        ),
        ("account_id", "channel_id", "source_key"),
    ),
    Table(
        "email_undeliverable",
        _columns("account_id:str address:str reason:str at:float"),
        ("account_id", "address"),
    ),
    Table(
        "imap_mailboxes",
        _columns(
            "account_id:str channel_id:int uidvalidity:int? last_uid:int holder:str"
            " lease_until:float"
        ),
        ("account_id", "channel_id"),
    ),
    # Signed outgoing webhooks (issue 16, storage/webhooks_sql.py).
    Table(
        "webhooks",
        _columns(
            "account_id:str id:int url:str events:str secret:str enabled:bool"
            " disabled_reason:str? created:float"
        ),
        ("account_id", "id"),
    ),
    Table(
        "webhook_deliveries",
        _columns(
            "id:str account_id:str webhook_id:int event_seq:int event:str body:str state:str"
            " attempts:int budget_from:int claimed_by:str? lease_until:float?"
            " next_attempt_at:float last_error:str? created:float"
        ),
        ("id",),
    ),
    Table(
        "webhook_attempts",
        _columns("delivery_id:str attempt:int account_id:str at:float status_code:int? error:str?"),
        ("delivery_id", "attempt"),
    ),
    # Invitations of teammates (issue 18, storage/invites_sql.py).
    Table(
        "invites",
        _columns(
            "account_id:str id:int token_hash:str email:str name:str is_admin:bool team_ids:str"
            " invited_by:int? created:float expires:float used_at:float? operator_id:int?"
        ),
        ("account_id", "id"),
    ),
)
TABLES_BY_NAME: Mapping[str, Table] = {t.name: t for t in TABLES}
# Rows per round trip when exporting or importing: large enough to amortise the round trip,
# small enough that a batch of long messages stays a few megabytes.
TRANSFER_BATCH_ROWS = 1000


def row_values(table_name: str, row: Mapping[str, Any]) -> tuple[Table, tuple[Any, ...]]:
    """The table and the row's values in column order, checked against TABLES.

    Raises InvalidRow naming the table and column, so a bad export fails with a clear message
    before the database sees it.
    """
    table = TABLES_BY_NAME.get(table_name)
    if table is None:
        raise InvalidRow(f"unknown table {table_name!r}")
    if set(row) != set(table.column_names):
        missing = sorted(set(table.column_names) - set(row))
        unknown = sorted(set(row) - set(table.column_names))
        raise InvalidRow(f"{table_name}: missing columns {missing}, unknown columns {unknown}")
    values: list[Any] = []
    for column in table.columns:
        value = row[column.name]
        if value is None and column.nullable:
            values.append(None)
            continue
        # bool is an int to Python, but never a valid id or seq.
        if column.kind is float and type(value) is int:
            value = float(value)
        if type(value) is not column.kind:
            raise InvalidRow(
                f"{table_name}.{column.name}: expected {column.kind.__name__}"
                f"{' or null' if column.nullable else ''}, got {value!r}"
            )
        values.append(value)
    return table, tuple(values)


@dataclass(frozen=True, slots=True)
class OperatorPatch:
    name: str | None = None
    email: str | None = None
    password_hash: str | None = None
    is_admin: bool | None = None
    lang: str | None = None
    avatar_url: str | None = None
    active: bool | None = None


@dataclass(frozen=True, slots=True)
class TeamPatch:
    name: str | None = None
    member_ids: tuple[int, ...] | None = None
    auto_assign: bool | None = None
    assign_limit: int | None = None


@dataclass(frozen=True, slots=True)
class CannedPatch:
    name: str | None = None
    tag: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class SitePatch:
    name: str | None = None
    color: str | None = None
    position: WidgetPosition | None = None
    greeting: str | None = None
    # None leaves the routing as it is; NO_TEAM routes new conversations to nobody in particular.
    team_id: int | None = None
    ask_rating: bool | None = None
    logo_url: str | None = None
    # None leaves it as it is; NO_ASSISTANT clears it.
    assistant_id: int | None = None
    # A JSON list of origins, replaced whole.
    allowed_origins: str | None = None
    voice_number: str | None = None
    time_zone: str | None = None
    # Replaced whole; () makes the site always open.
    business_hours: tuple[OpenHours, ...] | None = None
    away_message: str | None = None
    reply_time: str | None = None


@dataclass(frozen=True, slots=True)
class AssistantPatch:
    name: str | None = None
    base_url: str | None = None
    model: str | None = None
    credentials: str | None = None
    system_prompt: str | None = None
    max_tokens: int | None = None
    monthly_token_budget: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelPatch:
    name: str | None = None
    # Public settings as JSON, and credentials as a sealed token: each replaced whole.
    settings: str | None = None
    credentials: str | None = None
    # A new key for its public URLs (the old one stops working at once).
    key: str | None = None


# Past every seq there can be (both backends store 64-bit integers).
SEQ_END = 2**63 - 1
# SitePatch.team_id meaning "no team" (team ids start at 1).
NO_TEAM = 0
# SitePatch.assistant_id meaning "no assistant" (assistant ids start at 1).
NO_ASSISTANT = 0


def patch_values(
    patch: OperatorPatch | CannedPatch | SitePatch | ChannelPatch | AssistantPatch,
) -> dict[str, Any]:
    """The columns a patch sets, None meaning unchanged. A site's NO_TEAM and NO_ASSISTANT
    are left to the caller, since a generic update cannot tell "set to NULL" from "leave
    alone"."""
    values = {f.name: getattr(patch, f.name) for f in dataclasses.fields(patch)}
    if isinstance(patch, SitePatch) and patch.team_id == NO_TEAM:
        values["team_id"] = None
    if isinstance(patch, SitePatch) and patch.assistant_id == NO_ASSISTANT:
        values["assistant_id"] = None
    return values


Owner = Literal["mine", "unassigned", "all"]


@dataclass(frozen=True, slots=True)
class InboxQuery:
    """Which conversations an inbox listing shows; every filter left as None matches all.

    ``viewer`` is the operator asking: ``owner="mine"`` means theirs, and unless ``every_team``
    (admins) they see only conversations routed to no team (or to one since deleted), to one
    of ``viewer_teams``, or to themselves. Conversations blocked from operators show only when
    ``blocked`` asks for them.
    """

    viewer: int
    viewer_teams: tuple[int, ...] = ()
    every_team: bool = False
    statuses: tuple[Status, ...] | None = None
    source_apps: tuple[SourceApp, ...] | None = None
    owner: Owner = "all"
    team_id: int | None = None
    site_id: int | None = None
    session_id: str | None = None
    # Words that must all occur in a message or in the visitor's details (case-insensitive).
    search: str | None = None
    # True: only blocked conversations (of any block type); False: hide `operator` blocks.
    blocked: bool = False
    # Keyset cursor: rows strictly after (last_activity, id) in the listing's order.
    after: tuple[float, str] | None = None
    limit: int = 50


def owned_unresolved(
    operator_id: int, *, blocked: bool, limit: int, after: tuple[float, str] | None = None
) -> InboxQuery:
    """The unresolved conversations an operator owns (those blocked, or those not hidden by
    a block): what must be handed on before they leave."""
    return InboxQuery(
        viewer=operator_id,
        every_team=True,
        owner="mine",
        statuses=("open", "waiting", "active"),
        blocked=blocked,
        after=after,
        limit=limit,
    )


# -- reports (issue 19): what a report asks for and the figures each Store method returns --


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A period [start, end) in epoch seconds, the time zone's UTC offsets over it, and filters
    (None matches all).

    ``offsets`` lists (from_instant, utc_offset_s) ascending: each offset holds from its
    instant until the next one's, and the first one also before it. Days and hours of the
    week are counted in local time by these offsets, so both dialects agree without either
    database knowing the zone.

    ``operator_id`` selects the conversations the operator owns now (after any transfer),
    except for first response times, which belong to whoever sent the first reply.
    """

    start: float
    end: float
    offsets: tuple[tuple[int, int], ...]
    source_apps: tuple[SourceApp, ...] | None = None
    site_id: int | None = None
    team_id: int | None = None
    operator_id: int | None = None
    # The sites with business hours: their conversations' durations count open time only.
    hours: tuple[SiteHours, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteHours:
    """A site's open hours for the reports: ``week`` lists its open intervals in seconds from
    Monday 00:00 local time, ``offsets`` its zone's UTC offsets (as ReportQuery's) over the
    instants the report's durations may start or end at."""

    site_id: int
    week: tuple[tuple[int, int], ...]
    offsets: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds over a set of conversations: nearest-rank median and 90th percentile (the
    smallest value at least half, nine tenths, of the set does not exceed)."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class VolumeFigures:
    """Counts keyed by local day (days since 1970-01-01 in the zone) and by hour of the week
    (0 is Monday 00:00-01:00 local, 167 Sunday 23:00-24:00); days without any are absent."""

    opened_by_day: Mapping[int, int]
    resolved_by_day: Mapping[int, int]
    opened_by_hour: Mapping[int, int]
    resolved_by_hour: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class ResponseFigures:
    """First response: from the visitor's first message to the first operator reply after it
    (notes and the bot do not count), over conversations opened in the period, except those
    the bot still handles; ``unanswered`` of them have no reply yet. Resolution: from opening
    to the latest resolution, over conversations whose latest resolution falls in the period
    (a reopened one counts once)."""

    first_response: Durations
    unanswered: int
    # How many first responses fall in each band of RESPONSE_BANDS_S (the last one open).
    first_response_bands: tuple[int, ...]
    resolution: Durations


@dataclass(frozen=True, slots=True)
class HandoverFigures:
    """Conversations opened in the period, those the bot answered, and of those the ones an
    operator took over."""

    opened: int
    with_bot: int
    handed_over: int


@dataclass(frozen=True, slots=True)
class RatingComment:
    convo_id: str
    score: int
    comment: str
    resolved_at: float
    operator_id: int | None


@dataclass(frozen=True, slots=True)
class RatingFigures:
    """Ratings of resolutions in the period (a conversation's latest rating)."""

    count: int
    average: float | None
    # How many of each score, 1 to 5.
    distribution: tuple[int, ...]
    # The newest comments first, at most RATING_COMMENTS_MAX.
    comments: tuple[RatingComment, ...]


# Upper bounds of the first-response bands, in seconds: a minute, 5 and 15 minutes, an hour,
# 4 hours and a day, then everything longer; the buckets support teams quote.
RESPONSE_BANDS_S: tuple[int, ...] = (60, 300, 900, 3600, 14_400, 86_400)
# Comments one report lists: a lead reads the latest few dozen.
RATING_COMMENTS_MAX = 50


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

    # the whole installation, for `liveop export` and `liveop import`
    async def is_empty(self) -> bool:
        """True when the store holds no account (and therefore nothing else)."""

    def export_rows(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every row of every table as (table, {column: value}), tables in TABLES order and
        rows by primary key, read from one snapshot: rows committed while the export runs are
        either all in it or all absent. Streams in batches of TRANSFER_BATCH_ROWS."""
        ...

    async def import_rows(self, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Inserts ``rows`` (as export_rows yields them) verbatim, ids, seqs, counters and
        hashes included, and returns how many. All or nothing: one transaction for the whole
        import. Raises StoreNotEmpty when the store holds an account, InvalidRow when a row does
        not fit; exceptions raised by ``rows`` itself (a parse error) abort it the same way.
        ``rows`` is iterated lazily, in a thread of the backend's choosing."""

    # accounts and keys
    async def create_account(self, account_id: str, name: str, api_key_hash: str) -> Account: ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def account_for_api_key(self, api_key_hash: str) -> str | None:
        """The id of the account that owns the key with this hash."""

    # operators
    async def create_operator(
        self,
        account_id: str,
        name: str,
        email: str,
        password_hash: str,
        is_admin: bool,
        lang: str = "en",
        avatar_url: str = "",
    ) -> Operator:
        """Raises DuplicateEmail when the email (case-insensitive) is taken in the account."""

    async def get_operator(self, account_id: str, operator_id: int) -> Operator | None: ...

    async def get_credentials(
        self, email: str, account_id: str | None = None, *, limit: int
    ) -> list[OperatorCredentials]:
        """The operators with this email, in any case: the one of ``account_id``, or without
        it those of every account (emails are unique per account), at most ``limit``, by
        account id."""

    async def list_operators(self, account_id: str) -> list[Operator]: ...

    async def update_operator(
        self, account_id: str, operator_id: int, patch: OperatorPatch
    ) -> Operator | None:
        """Raises DuplicateEmail when the new email is taken in the account."""

    async def delete_operator(self, account_id: str, operator_id: int) -> bool:
        """Removes the operator and their team memberships; their messages keep their name."""

    # operator tokens: revocation before expiry
    async def token_version(self, account_id: str, operator_id: int) -> int | None:
        """The version new tokens of the operator carry; None when there is no such operator."""

    async def revoke_tokens(self, account_id: str, operator_id: int) -> bool:
        """Raises the operator's token version, revoking every token issued before; False
        when there is no such operator."""

    async def revoke_token(self, token_id: str, expires: float) -> None:
        """Revokes one token until ``expires`` (when it would have expired anyway), and
        forgets revoked tokens whose time has passed."""

    async def spend_token(self, token_id: str, expires: float) -> bool:
        """Records a one-use token (a signed webhook's nonce) as spent until ``expires``;
        False when it was spent already. Shares revoke_token's table and its forgetting."""

    async def get_signed_in_operator(
        self, account_id: str, operator_id: int, token_version: int, token_id: str
    ) -> Operator | None:
        """The operator, when a token with this version and id is not revoked and the operator
        is active."""

    # invitations (issue 18, storage/invites_sql.py)
    async def create_invite(
        self,
        account_id: str,
        token_hash: str,
        *,
        email: str,
        name: str,
        is_admin: bool,
        team_ids: Sequence[int],
        invited_by: int | None,
        expires: float,
    ) -> Invite:
        """Numbers the invitation within its account. Raises DuplicateEmail when an operator of
        the account has the email (in any case), UnknownReference when a team does not exist."""

    async def list_invites(self, account_id: str) -> list[Invite]:
        """The account's invitations not used yet (expired ones included), by id."""

    async def delete_invite(self, account_id: str, invite_id: int) -> bool:
        """Revokes an invitation not used yet; False when there is none."""

    async def invite_by_hash(self, token_hash: str) -> Invite | None:
        """The invitation whose token has this hash, used or expired alike, in any account."""

    async def accept_invite(
        self, token_hash: str, password_hash: str, now: float
    ) -> tuple[Invite, Operator] | None:
        """Uses the invitation, unused and unexpired at ``now``, and creates its operator with
        this password and their memberships of the invitation's teams that still exist, all in
        one transaction; None when no such invitation is usable. Raises DuplicateEmail (and
        uses nothing) when the email was taken since."""

    # teams
    async def create_team(
        self,
        account_id: str,
        name: str,
        member_ids: Sequence[int],
        *,
        auto_assign: bool = False,
        assign_limit: int = 0,
    ) -> Team: ...

    async def list_teams(self, account_id: str) -> list[Team]: ...

    async def update_team(self, account_id: str, team_id: int, patch: TeamPatch) -> Team | None: ...

    async def delete_team(self, account_id: str, team_id: int) -> bool:
        """Sites that routed to it route to no team from then on; its conversations keep
        their team id, and inbox queries treat a team that no longer exists as none."""

    # canned responses: the account's (``owner`` None) and each operator's own (issue 18),
    # numbered together; a call names whose it means, and the others' are absent to it
    async def create_canned(
        self, account_id: str, name: str, tag: str, message: str, owner: int | None = None
    ) -> CannedResponse:
        """Raises UnknownReference when ``owner`` is no operator of the account."""

    async def get_canned(self, account_id: str, canned_id: int) -> CannedResponse | None:
        """The account's or any operator's: whoever sends it checks whose it is."""

    async def list_canned(self, account_id: str, owner: int | None = None) -> list[CannedResponse]:
        """The account's, or with ``owner`` that operator's own, by id."""

    async def update_canned(
        self, account_id: str, canned_id: int, patch: CannedPatch, owner: int | None = None
    ) -> CannedResponse | None: ...

    async def delete_canned(
        self, account_id: str, canned_id: int, owner: int | None = None
    ) -> bool: ...

    # sites (every account has site DEFAULT_SITE_ID from its creation)
    async def create_site(
        self,
        account_id: str,
        name: str,
        color: str,
        position: WidgetPosition,
        greeting: str,
        team_id: int | None,
    ) -> Site:
        """Raises UnknownReference when team_id names no team of the account."""

    async def get_site(self, account_id: str, site_id: int) -> Site | None: ...

    async def list_sites(self, account_id: str) -> list[Site]: ...

    async def update_site(self, account_id: str, site_id: int, patch: SitePatch) -> Site | None:
        """Raises UnknownReference when patch.team_id names no team of the account."""

    async def delete_site(self, account_id: str, site_id: int) -> bool:
        """Its conversations keep their site id (history is never rewritten)."""

    # channels (issue 14)
    async def create_channel(
        self,
        account_id: str,
        kind: ChannelKind,
        name: str,
        key: str,
        settings: str,
        credentials: str,
    ) -> Channel:
        """Numbers the channel within its account. ``key`` is unique across the
        installation: a clash raises DuplicateKey and writes nothing."""

    async def get_channel(self, account_id: str, channel_id: int) -> Channel | None: ...

    async def get_channel_by_key(self, key: str) -> Channel | None:
        """The one lookup not scoped by account: a webhook names its channel only by key."""

    async def list_channels(self, account_id: str) -> list[Channel]: ...

    async def update_channel(
        self, account_id: str, channel_id: int, patch: ChannelPatch
    ) -> Channel | None: ...

    async def delete_channel(self, account_id: str, channel_id: int) -> bool:
        """Its conversations keep their channel id (history is never rewritten)."""

    async def latest_channel_conversation(
        self, account_id: str, channel_id: int, phone: str
    ) -> Conversation | None:
        """The newest conversation of the channel with this phone number (its thread)."""

    async def bot_user_conversation(
        self, account_id: str, channel_id: int, user_id: str
    ) -> Conversation | None:
        """The newest conversation of the channel with this bot platform user."""

    async def record_channel_inbound(self, account_id: str, channel_id: int, at: float) -> None:
        """``last_inbound`` on the channel's health line."""

    async def record_channel_outbound(
        self, account_id: str, channel_id: int, at: float, error: str | None
    ) -> None:
        """The channel's health line after a send: ``last_outbound`` when it went out, else
        ``last_error`` and ``last_error_at``. A deleted channel records nothing."""

    # email (issue 15)
    async def record_email(self, record: EmailRecord, thread: EmailThread | None) -> bool:
        """Keeps a mail the channel received or sent, and the new conversation's threading
        with it, in one transaction. A mail already kept under its source key changes nothing
        and returns False (a retried delivery); a thread already kept stays as it is."""

    async def get_email(
        self, account_id: str, channel_id: int, source_key: str
    ) -> EmailRecord | None: ...

    async def email_of_message(self, account_id: str, msg_id: str) -> EmailRecord | None:
        """The mail a message came from or went out as."""

    async def email_thread(self, account_id: str, convo_id: str) -> EmailThread | None: ...

    async def email_thread_by_token(self, token: str) -> EmailThread | None:
        """Not scoped by account: the token is the capability, like a channel key."""

    async def email_thread_by_tag(
        self, account_id: str, channel_id: int, tag: str
    ) -> EmailThread | None: ...

    async def email_thread_by_message_ids(
        self, account_id: str, channel_id: int, message_ids: Sequence[str]
    ) -> EmailThread | None:
        """The thread of the newest mail of the channel, sent or received as a message, whose
        Message-ID is one of ``message_ids``."""

    async def email_message_ids(self, account_id: str, convo_id: str) -> list[tuple[str, str]]:
        """The Message-IDs of the conversation's mails, with their direction (in or out),
        oldest first."""

    async def mark_undeliverable(
        self, account_id: str, address: str, reason: str, at: float
    ) -> None: ...

    async def undeliverable(self, account_id: str, address: str) -> str | None:
        """Why mail to ``address`` cannot be delivered, or None."""

    async def list_channels_of_kind(self, kind: ChannelKind) -> list[Channel]:
        """Every account's channels of ``kind``: what a process that follows mailboxes
        looks at. Not scoped by account, like outbound claims."""

    async def claim_mailbox(
        self, account_id: str, channel_id: int, holder: str, now: float, lease_until: float
    ) -> ImapCursor | None:
        """Takes or renews the lease on the channel's mailbox for ``holder`` until
        ``lease_until`` and returns how far it was imported; None while another holder's
        lease runs."""

    async def advance_mailbox(
        self, account_id: str, channel_id: int, holder: str, cursor: ImapCursor
    ) -> bool:
        """Records how far the mailbox is imported; False (nothing written) when ``holder``
        lost the lease, so a process that stalled past its lease cannot move it back."""

    async def release_mailbox(self, account_id: str, channel_id: int, holder: str) -> None: ...

    async def advance_delivery(
        self,
        account_id: str,
        channel_id: int,
        provider_id: str,
        delivery: Delivery,
        after: Collection[Delivery],
        error: str | None,
    ) -> tuple[str, int, bool] | None:
        """Moves the delivery of the channel's message with this provider id to ``delivery``
        when it is one of ``after`` (forward only), keeping ``error`` with its outbound row;
        returns its (conversation id, seq, whether it moved), or None when the channel sent
        no such message."""

    async def set_sms_opt_out(
        self, account_id: str, channel_id: int, phone: str, since: float | None
    ) -> bool:
        """Records that ``phone`` opted out of SMS on the channel at ``since`` (a second
        opt-out keeps the first time), or with None that it opted back in; returns whether
        anything changed."""

    async def sms_opt_outs(
        self, account_id: str, phones: Sequence[str]
    ) -> list[tuple[int, str, float]]:
        """The opt-outs of these phones on every channel of the account, as
        (channel id, phone, since), by channel then phone."""

    async def add_sms_media(self, media: Sequence[SmsMedia]) -> None:
        """Queues (or records as refused) the pictures of an inbound message; a picture
        already there (a retried webhook) is left as it is."""

    async def claim_sms_media(
        self, worker_id: str, *, now: float, lease_s: float, limit: int
    ) -> list[SmsMedia]:
        """Claims up to ``limit`` due queued pictures for ``worker_id`` until ``now +
        lease_s``, counting the claim in ``attempts`` (the returned rows carry the new
        count). Claims never overlap, across processes too."""

    async def finish_sms_media(
        self,
        media: SmsMedia,
        worker_id: str,
        *,
        state: MediaState,
        error: str | None,
        retry_at: float | None = None,
        picture: Attachment | None = None,
    ) -> Message | Literal[False] | None:
        """Records a claimed fetch's outcome: ``state`` (queued again until ``retry_at``,
        stored as ``picture``, refused or failed) and ``error``. A stored picture becomes its
        message's image when the message has none yet, else is added to its attachments, in
        the same transaction; pictures of one message finishing at once are all kept. Returns
        None when the claim was lost (another worker has it now), the message as it now shows
        its pictures when one was added, else False."""

    async def reseal_channels(self, reseal: Callable[[str], str]) -> int:
        """Replaces every channel's and assistant's credentials, in every account, with
        ``reseal`` of them, in one transaction (all or none); returns how many. For key
        rotation."""

    # widgets and assistants (issue 17)
    async def site_by_widget_id(self, widget_id: str) -> Site | None:
        """Not scoped by account: the widget API names a site only by its public id."""

    async def create_widget_token(
        self, account_id: str, site_id: int, token_hash: str
    ) -> WidgetToken | None:
        """None when the account has no such site."""

    async def list_widget_tokens(self, account_id: str, site_id: int) -> list[WidgetToken]: ...

    async def delete_widget_token(self, account_id: str, site_id: int, token_id: int) -> bool:
        """Revokes the token: the next request with it is refused."""

    async def widget_token(self, token_hash: str) -> WidgetToken | None:
        """Not scoped by account: a widget presents only the token."""

    async def add_widget_event(
        self, event: WidgetEvent, *, session_limit: int
    ) -> WidgetEvent | None:
        """Numbers and stores ``event`` (its id is ignored); None, writing nothing, when the
        site is not the account's, or when a widget's event finds its session holding
        ``session_limit`` widget events already (server events are not bounded)."""

    async def widget_event_counts(
        self, account_id: str, site_id: int, first_day: int, last_day: int
    ) -> list[tuple[int, str, str, int]]:
        """(day, source, event, count) for the site's events from ``first_day`` to
        ``last_day`` (inclusive), by day, source and event."""

    async def create_assistant(
        self,
        account_id: str,
        name: str,
        base_url: str,
        model: str,
        credentials: str,
        system_prompt: str,
        max_tokens: int,
        monthly_token_budget: int,
    ) -> Assistant: ...

    async def get_assistant(self, account_id: str, assistant_id: int) -> Assistant | None: ...

    async def list_assistants(self, account_id: str) -> list[Assistant]: ...

    async def update_assistant(
        self, account_id: str, assistant_id: int, patch: AssistantPatch
    ) -> Assistant | None: ...

    async def delete_assistant(self, account_id: str, assistant_id: int) -> bool:
        """Sites that named it as their default name none from then on; its replies keep
        their assistant id (history is never rewritten)."""

    async def assistant_tokens_since(self, account_id: str, assistant_id: int, since: float) -> int:
        """The tokens the assistant's stored replies cost from ``since`` on."""

    # contacts (issue 14); a conversation's contact is found or created by Store.write

    async def get_contact(self, account_id: str, contact_id: int) -> Contact | None:
        """The contact with its identities (proven first, then by kind and value)."""

    async def contact_conversations(
        self, account_id: str, contact_id: int, *, limit: int
    ) -> list[Conversation]:
        """The contact's conversations on every channel, newest activity first."""

    async def possible_matches(
        self, account_id: str, contact_id: int, *, limit: int
    ) -> list[Contact]:
        """Other contacts of the account holding one of this contact's identities (proven or
        typed, on either side), by id: who an operator may want to merge."""

    async def search_contacts(self, account_id: str, words: str, *, limit: int) -> list[Contact]:
        """Contacts whose name or an identity's value contains ``words`` (case-insensitive,
        taken literally: no LIKE wildcards), newest first."""

    async def merge_contacts(
        self, account_id: str, into_id: int, from_id: int, operator_id: int
    ) -> tuple[Contact, int] | None:
        """Moves every conversation and identity of ``from_id`` to ``into_id`` (an identity
        both hold stays once, verified if either's was), deletes ``from_id`` and records the
        merge, in one transaction; returns the surviving contact and how many conversations
        moved. A merge already made (``from_id`` was merged into ``into_id``) moves nothing
        and returns it with 0. None when either contact does not exist; MergedContact when
        ``into_id`` was itself merged away, or ``from_id`` into another contact."""

    # push tokens (an operator's devices)
    async def add_push_token(self, account_id: str, operator_id: int, token: str) -> None:
        """Idempotent."""

    async def remove_push_tokens(
        self, account_id: str, operator_id: int, token: str | None = None
    ) -> int:
        """Removes one token, or every token of the operator; returns how many."""

    async def push_tokens(
        self, account_id: str, operator_ids: Sequence[int]
    ) -> dict[int, list[str]]: ...

    # the inbox
    async def list_conversations(self, account_id: str, query: InboxQuery) -> list[Conversation]:
        """Newest activity first (ties by id), at most query.limit rows."""

    async def count_conversations(self, account_id: str, query: InboxQuery) -> dict[Status, int]:
        """How many conversations per status match (ignoring after/limit)."""

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

    async def write_routed(
        self,
        account_id: str,
        team_id: int,
        decide: RosterDecide,
        *,
        convo_id: str | None = None,
        client_msg_id: str | None = None,
    ) -> Committed:
        """As ``write``, for a conversation routed to ``team_id`` (a new one, or one waiting
        in its queue): ``decide`` also gets the team's Roster, read with the team's row locked
        (before the conversation's) to commit, so concurrent writes, in any process, take
        their turns one after another. When the change gives the conversation an owner who is
        one of the roster's members, the team's ``last_assigned`` becomes that operator in the
        same transaction."""

    async def get_conversation(self, account_id: str, convo_id: str) -> Conversation | None: ...

    async def list_messages(
        self,
        account_id: str,
        convo_id: str,
        *,
        after_seq: int = 0,
        after_created: float = 0.0,
        limit: int = 200,
        newest: bool = False,
        visitor_view: bool = False,
        before_seq: int | None = None,
        visitor_seqs: bool = False,
    ) -> list[Message]:
        """The conversation's messages (none when it is not this account's) with seq >
        after_seq and created > after_created, oldest first: the first
        ``limit`` of them, or with ``newest`` the last ``limit`` of them. ``visitor_view``
        leaves out private notes (before the limit applies); ``before_seq`` pages back. With
        ``visitor_seqs`` the seqs given (after_seq, before_seq) and the order are visitor seqs,
        and notes, which have none, are left out."""

    async def read_conversation(
        self,
        account_id: str,
        convo_id: str,
        *,
        after_seq: int = 0,
        after_created: float = 0.0,
        limit: int = 200,
        newest: bool = False,
        visitor_view: bool = False,
        before_seq: int | None = None,
        visitor_seqs: bool = False,
    ) -> tuple[Conversation, list[Message]] | None:
        """The conversation (None when it is not this account's) with its messages chosen as
        list_messages chooses them, in one round trip: the chat window's poll is the busiest
        read there is."""

    async def list_events(self, account_id: str, *, after_seq: int, limit: int) -> list[Event]:
        """Account events with seq > after_seq, oldest first."""

    async def replay_events(
        self, account_id: str, *, after_seq: int, limit: int
    ) -> list[EventDetail]:
        """Like list_events, each with its conversation and message (current state)."""

    async def replay_messages(
        self, account_id: str, convo_id: str, *, after_seq: int, limit: int
    ) -> list[MessageReplay]:
        """The conversation's messages the visitor may see (no notes) with visitor seq >
        after_seq, oldest first, each with the visitor payload its event was committed with."""

    async def head_event_seq(self, account_id: str) -> int:
        """The account's latest event seq (0 before the first)."""

    async def event_payloads(
        self, account_id: str, convo_id: str, *, kind: str, containing: str, limit: int
    ) -> list[str]:
        """The operators' payloads of the conversation's ``kind`` events whose text contains
        ``containing`` (a literal, not a pattern), the newest ``limit`` of them oldest first:
        the engine's lines kept on its events, such as the timeline (server/timeline.py)."""

    # outbound delivery (storage/outbound.py)
    async def claim_outbound(
        self,
        worker_id: str,
        *,
        channels: Collection[OutboundChannel],
        now: float,
        lease_s: float,
        limit: int,
        unbound: Collection[OutboundChannel] | None = None,
    ) -> list[OutboundJob]:
        """Claims up to ``limit`` due deliveries on ``channels`` for ``worker_id`` until
        ``now + lease_s``, oldest due first, and counts an attempt on each. Of conversations
        with no channel of their own, only those on ``unbound`` channels (default: all of
        ``channels``) are claimed. Claims by
        concurrent callers, in any process, never overlap; a row whose lease has passed is due
        again, so a crashed worker's claims are taken over. At most one message per
        conversation is claimed or held at a time, earliest seq first."""

    async def finish_outbound(
        self,
        job: OutboundJob,
        worker_id: str,
        *,
        sent: bool,
        error: str | None,
        retry_at: float | None,
        provider_id: str | None = None,
    ) -> bool:
        """Records the outcome of ``job``'s attempt: sent (with the provider's id for it),
        failed (no ``retry_at``), or queued again until ``retry_at``; a final outcome is also
        the message's ``delivery``, in the same transaction. Returns False and changes nothing
        when ``worker_id`` no longer holds this claim (its lease ran out and the row was
        claimed again)."""

    async def queued_outbound(self) -> dict[OutboundChannel, int]:
        """How many deliveries wait in the queue (due or backing off), per channel, across
        the installation: the queue depth operators watch."""

    # signed outgoing webhooks (issue 16, storage/webhooks.py)
    async def create_webhook(
        self, account_id: str, url: str, events: Sequence[str], secret: str
    ) -> Webhook:
        """Numbers the webhook within its account; ``secret`` arrives sealed."""

    async def get_webhook(self, account_id: str, webhook_id: int) -> Webhook | None: ...

    async def list_webhooks(self, account_id: str) -> list[Webhook]: ...

    async def update_webhook(
        self,
        account_id: str,
        webhook_id: int,
        *,
        url: str | None,
        events: Sequence[str] | None,
        enabled: bool | None,
        disabled_reason: str | None,
    ) -> Webhook | None:
        """Sets what is not None; ``enabled`` sets ``disabled_reason`` with it (None when
        enabled)."""

    async def delete_webhook(self, account_id: str, webhook_id: int) -> bool:
        """Deletes its deliveries and their log with it."""

    async def claim_webhook_deliveries(
        self, worker_id: str, *, now: float, lease_s: float, limit: int
    ) -> list[WebhookJob]:
        """Claims up to ``limit`` due deliveries of enabled webhooks, as claim_outbound claims
        outbound rows: never overlapping across processes, one per webhook at a time, in the
        order their events committed."""

    async def finish_webhook_delivery(
        self,
        job: WebhookJob,
        worker_id: str,
        *,
        sent: bool,
        retry_at: float | None,
        attempt: WebhookAttempt,
        disable: str | None = None,
    ) -> bool:
        """Records the attempt in the log and the delivery's state (sent, queued again until
        ``retry_at``, or failed); ``disable`` turns the webhook off with that reason. False,
        changing nothing, when ``worker_id`` no longer holds the claim."""

    async def webhook_deliveries(
        self, account_id: str, webhook_id: int, limit: int
    ) -> list[WebhookDelivery]:
        """The webhook's newest ``limit`` deliveries, newest first, with their attempts."""

    async def reseal_webhooks(self, reseal: Callable[[str], str]) -> int:
        """As reseal_channels, for every webhook's secret."""

    async def replay_webhook_delivery(
        self, account_id: str, webhook_id: int, delivery_id: str, now: float
    ) -> bool:
        """Queues the delivery again, due at ``now``, with a fresh retry budget; False when
        the webhook has no such delivery."""

    # reports (issue 19): one read per figure set, computed in the database
    async def report_volume(self, account_id: str, q: ReportQuery) -> VolumeFigures: ...

    async def report_response_times(self, account_id: str, q: ReportQuery) -> ResponseFigures: ...

    async def report_handover(self, account_id: str, q: ReportQuery) -> HandoverFigures: ...

    async def report_ratings(self, account_id: str, q: ReportQuery) -> RatingFigures: ...
