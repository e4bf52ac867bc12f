"""Seed 001's inbox and queues as operators drive them over HTTP: the unified inbox (order,
unread, preview, channels, filters, search, cursor pages), team routing and transfer, counts,
blocked visitors, online visitors per site, the operator list, sites and roles."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.inbox import PAGE_MAX, SEARCH_MAX_CHARS
from server.services import Services
from storage.inbox_sql import SEARCH_WORDS_MAX
from tests.conftest import TEST_PASSWORD, TEST_PASSWORD_HASH, Tenant, assert_error, bearer
from tests.server.realtime_clients import serve, websocket

OPERATOR = "/api/v1/operator"
ADMIN = "/api/v1/admin"


@dataclass
class Panel:
    """One logged-in operator driving the operator panel."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    operator_id: int

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(f"{OPERATOR}/{path}", params=params, headers=self.headers)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(f"{OPERATOR}/{path}", json=body, headers=self.headers)

    async def ok(self, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        response = await self.client.request(
            method, path, params=params, json=body, headers=self.headers
        )
        found: dict[str, Any] = response.json()
        assert response.status_code in (200, 201), found
        assert found["success"] is True
        return found

    async def listing(self, **params: Any) -> list[dict[str, Any]]:
        conversations: list[dict[str, Any]] = (await self.ok("GET", f"{OPERATOR}/inbox", **params))[
            "conversations"
        ]
        return conversations

    async def inbox(self, **params: Any) -> list[str]:
        return [c["id"] for c in await self.listing(**params)]

    async def row(self, convo_id: str) -> dict[str, Any]:
        return next(c for c in await self.listing() if c["id"] == convo_id)

    async def reply(self, convo_id: str, content: str = "On it", **fields: Any) -> dict[str, Any]:
        body = {"conversation_id": convo_id, "content": content, **fields}
        return await self.ok("POST", f"{OPERATOR}/message", body)

    async def counts(self) -> tuple[int, int]:
        found = await self.ok("GET", f"{OPERATOR}/all-chat-counts")
        return found["pending"], found["active"]


async def login(client: httpx.AsyncClient, email: str) -> Panel:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": TEST_PASSWORD}
    )
    body = response.json()
    assert response.status_code == 200, body
    return Panel(client, bearer(body["token"]), body["operator"]["id"])


async def admin_of(tenant: Tenant) -> Panel:
    return await login(tenant.client, f"ada@{tenant.account_id}.test")


async def operator_of(tenant: Tenant) -> Panel:
    return await login(tenant.client, f"alex@{tenant.account_id}.test")


async def another_operator(tenant: Tenant, services: Services, name: str) -> Panel:
    """A plain operator besides Alex, made in the store (hashing is the slow part)."""
    email = f"{name.lower()}@{tenant.account_id}.test"
    await services.store.create_operator(tenant.account_id, name, email, TEST_PASSWORD_HASH, False)
    return await login(tenant.client, email)


async def admin_create(tenant: Tenant, plural: str, **fields: Any) -> dict[str, Any]:
    response = await tenant.client.post(
        f"{ADMIN}/{plural}", json=fields, headers={"X-Api-Key": tenant.api_key}
    )
    body: dict[str, Any] = response.json()
    assert response.status_code == 201, body
    return body


async def team(tenant: Tenant, *member_ids: int, name: str = "Sales") -> int:
    team_id: int = (await admin_create(tenant, "teams", name=name, member_ids=list(member_ids)))[
        "team"
    ]["id"]
    return team_id


async def site(tenant: Tenant, name: str = "Shop", **fields: Any) -> int:
    site_id: int = (await admin_create(tenant, "sites", name=name, **fields))["site"]["id"]
    return site_id


@pytest.fixture
async def alex(tenant: Tenant) -> Panel:
    return await operator_of(tenant)


@pytest.fixture
async def ada(tenant: Tenant) -> Panel:
    return await admin_of(tenant)


# order, unread, preview


async def test_inbox_lists_newest_activity_first(tenant: Tenant, alex: Panel) -> None:
    first = await tenant.visitor_says("one")
    second = await tenant.visitor_says("two")
    third = await tenant.visitor_says("three")
    assert await alex.inbox() == [third, second, first]
    await tenant.visitor_says("again", convoID=first)
    assert await alex.inbox() == [first, third, second]
    await alex.reply(second)
    rows = await alex.listing()
    assert [r["id"] for r in rows] == [second, first, third]
    activity = [r["last_activity"] for r in rows]
    assert activity == sorted(activity, reverse=True)


async def test_unread_counts_visitor_messages_and_viewing_clears_them(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    convo = await tenant.visitor_says("one")
    await tenant.visitor_says("two", convoID=convo)
    await tenant.visitor_says("three", convoID=convo)
    assert (await alex.row(convo))["unread"] == 3
    await alex.reply(convo)
    assert (await alex.row(convo))["unread"] == 3  # replying is not reading

    # Paging back shows seqs 1-2 only: the newest visitor message is still unread.
    older = await alex.ok("GET", f"{OPERATOR}/conversation/{convo}", before_seq=3)
    assert [m["seq"] for m in older["messages"]] == [1, 2]
    assert older["conversation"]["unread"] == 1

    viewed = await alex.ok("GET", f"{OPERATOR}/conversation/{convo}")
    assert viewed["conversation"]["unread"] == 0
    assert (await alex.row(convo))["unread"] == 0
    assert (await ada.row(convo))["unread"] == 0  # one badge for the whole team

    await tenant.visitor_says("four", convoID=convo)
    assert (await alex.row(convo))["unread"] == 1


async def test_preview_is_the_newest_message_the_visitor_can_see(
    tenant: Tenant, alex: Panel
) -> None:
    convo = await tenant.visitor_says("  Where is my order?  ")
    assert (await alex.row(convo))["preview"] == "Where is my order?"
    await alex.ok("POST", f"{OPERATOR}/note", {"conversation_id": convo, "content": "VIP"})
    assert (await alex.row(convo))["preview"] == "Where is my order?"
    await alex.reply(convo, "", image_url="https://cdn.example.test/label.png")
    assert (await alex.row(convo))["preview"] == "[image]"
    trailing = {"conversation_id": convo, "image_url": "https://cdn.example.test/a.png\n"}
    assert_error(await alex.post("message", trailing), 400, "invalid_image_url")
    await alex.reply(convo, "See the label", image_url="https://cdn.example.test/label.png")
    assert (await alex.row(convo))["preview"] == "See the label"
    await tenant.visitor_says("x" * 300, convoID=convo)
    assert (await alex.row(convo))["preview"] == "x" * 140


# channels and filters


async def _one_per_channel(tenant: Tenant) -> dict[str, str]:
    return {
        tag: await tenant.visitor_says(f"via {app}", sourceApp=app)
        for tag, app in (
            ("chatbot", "chatbot"),
            ("sms", "smsbroadcast"),
            ("email", "emailbroadcast"),
            ("chat", "liveoperator"),
        )
    }


async def test_every_row_carries_its_channel_tag(tenant: Tenant, alex: Panel) -> None:
    by_tag = await _one_per_channel(tenant)
    rows = {r["id"]: r for r in await alex.listing()}
    assert {tag: rows[convo]["channel"] for tag, convo in by_tag.items()} == {
        "chatbot": "chatbot",
        "sms": "sms",
        "email": "email",
        "chat": "chat",
    }
    assert rows[by_tag["sms"]]["source_app"] == "smsbroadcast"


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("sms", ["sms"]),
        ("smsbroadcast", ["sms"]),
        ("email,emailbroadcast", ["email"]),
        ("chat,chatbot", ["chat", "chatbot"]),
        (" sms , liveoperator ", ["chat", "sms"]),
        ("sms,email,chat,chatbot", ["chat", "email", "sms", "chatbot"]),
    ],
)
async def test_channel_filter_takes_either_spelling(
    tenant: Tenant, alex: Panel, channel: str, expected: list[str]
) -> None:
    by_tag = await _one_per_channel(tenant)
    assert await alex.inbox(channel=channel) == [by_tag[t] for t in expected]


async def _one_per_status(tenant: Tenant, alex: Panel) -> dict[str, str]:
    found = {s: await tenant.visitor_says(s) for s in ("open", "waiting", "active", "resolved")}
    await tenant.ok("setstatus", convoID=found["waiting"], status="waiting")
    await alex.reply(found["active"])
    await alex.ok("POST", f"{OPERATOR}/close/{found['resolved']}")
    return found


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", ["open"]),
        ("open,active", ["active", "open"]),
        ("resolved,waiting,open", ["resolved", "waiting", "open"]),
        ("active,active", ["active"]),
        ("", ["resolved", "active", "waiting", "open"]),
        (",", ["resolved", "active", "waiting", "open"]),
    ],
)
async def test_status_filter_takes_a_comma_list(
    tenant: Tenant, alex: Panel, status: str, expected: list[str]
) -> None:
    by_status = await _one_per_status(tenant, alex)
    listed = await alex.listing(status=status)
    assert [r["id"] for r in listed] == [by_status[s] for s in expected]
    assert [r["status"] for r in listed] == expected


async def test_owner_filter(tenant: Tenant, services: Services, alex: Panel) -> None:
    bea = await another_operator(tenant, services, "Bea")
    mine, theirs, nobodys = [await tenant.visitor_says(t) for t in ("a", "b", "c")]
    await alex.reply(mine)
    await bea.reply(theirs)
    assert await alex.inbox(owner="mine") == [mine]
    assert await bea.inbox(owner="mine") == [theirs]
    assert await alex.inbox(owner="unassigned") == [nobodys]
    assert await alex.inbox(owner="all") == await alex.inbox() == [theirs, mine, nobodys]


async def test_team_and_site_filters(tenant: Tenant, alex: Panel) -> None:
    sales = await team(tenant, tenant.operator_id)
    shop = await site(tenant, team_id=sales)
    blog = await site(tenant, "Blog")
    home = await tenant.visitor_says("home")
    in_shop = await tenant.visitor_says("shop", siteID=shop)
    in_blog = await tenant.visitor_says("blog", siteID=blog)
    rows = {r["id"]: r for r in await alex.listing()}
    assert [(rows[c]["site_id"], rows[c]["team_id"]) for c in (home, in_shop, in_blog)] == [
        (1, None),
        (shop, sales),
        (blog, None),
    ]
    assert await alex.inbox(site_id=1) == [home]
    assert await alex.inbox(site_id=shop) == [in_shop]
    assert await alex.inbox(team_id=sales) == [in_shop]
    assert await alex.inbox(site_id=blog, team_id=sales) == []


async def test_filters_combine(tenant: Tenant, alex: Panel) -> None:
    sms = await tenant.visitor_says("parcel", sourceApp="smsbroadcast")
    await tenant.visitor_says("parcel", sourceApp="emailbroadcast")
    taken = await tenant.visitor_says("parcel", sourceApp="smsbroadcast")
    await alex.reply(taken)
    assert await alex.inbox(channel="sms", status="open", q="parcel", owner="unassigned") == [sms]
    assert await alex.inbox(channel="sms", owner="mine") == [taken]


BAD_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"status": "pending"}, "invalid_field"),
    ({"status": "open,closed"}, "invalid_field"),
    ({"status": "OPEN"}, "invalid_field"),
    ({"channel": "fax"}, "invalid_field"),
    ({"channel": "sms,whatsapp"}, "invalid_field"),
    ({"owner": "everyone"}, "invalid_field"),
    ({"owner": "MINE"}, "invalid_field"),
    ({"team_id": "sales"}, "invalid_field"),
    ({"team_id": 0}, "invalid_field"),
    ({"site_id": -1}, "invalid_field"),
    ({"site_id": "1.5"}, "invalid_field"),
    ({"limit": 0}, "invalid_field"),
    ({"limit": PAGE_MAX + 1}, "invalid_field"),
    ({"limit": -5}, "invalid_field"),
    ({"limit": "ten"}, "invalid_field"),
    ({"q": "x" * (SEARCH_MAX_CHARS + 1)}, "invalid_field"),
    ({"q": " ".join(["w"] * (SEARCH_WORDS_MAX + 1))}, "invalid_field"),
    ({"cursor": "garbage"}, "invalid_cursor"),
]


@pytest.mark.parametrize(("params", "code"), BAD_FILTERS)
async def test_bad_filters_are_rejected(
    tenant: Tenant, alex: Panel, params: dict[str, Any], code: str
) -> None:
    await tenant.visitor_says("hello")
    assert_error(await alex.get("inbox", **params), 400, code)


@pytest.mark.parametrize(
    ("params", "code"),
    [({"team_id": 99}, "team_not_found"), ({"site_id": 99}, "site_not_found")],
)
async def test_filtering_by_an_unknown_team_or_site_is_not_found(
    alex: Panel, params: dict[str, Any], code: str
) -> None:
    assert_error(await alex.get("inbox", **params), 404, code)


# search


@pytest.fixture
async def searchable(tenant: Tenant, alex: Panel) -> dict[str, str]:
    jane = await tenant.visitor_says(
        "My order #42 is LATE",
        userInfo={"fname": "Jane", "lname": "Doe", "email": "jane@example.com", "phone": "+1 555"},
    )
    bob = await tenant.visitor_says("Refund please", userInfo={"fname": "Bob"})
    await alex.ok("POST", f"{OPERATOR}/conversation/{bob}/visitor", {"info": "VIP 100%_off"})
    other = await tenant.visitor_says("100 xoff, saved in C:\\temp")
    await alex.ok("POST", f"{OPERATOR}/note", {"conversation_id": other, "content": "escalated"})
    return {"jane": jane, "bob": bob, "other": other}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("order", ["jane"]),
        ("ORDER late", ["jane"]),  # words ANDed, ASCII case ignored
        ("jane order", ["jane"]),  # one word in the details, one in a message
        ("jane refund", []),
        ("doe", ["jane"]),
        ("EXAMPLE.COM", ["jane"]),
        ("555", ["jane"]),
        ("vip", ["bob"]),
        ("100", ["other", "bob"]),
        ("100%", ["bob"]),  # % is a character, not a wildcard
        ("%_off", ["bob"]),
        ("_", ["bob"]),  # _ likewise
        ("C:\\temp", ["other"]),
        ("escalated", ["other"]),  # operators' notes are searchable by operators
        ("#42", ["jane"]),
        ("   ", ["other", "bob", "jane"]),
    ],
)
async def test_search_matches_every_word_in_messages_or_visitor_details(
    alex: Panel, searchable: dict[str, str], q: str, expected: list[str]
) -> None:
    assert await alex.inbox(q=q) == [searchable[name] for name in expected]


async def test_search_at_the_limits_is_accepted(alex: Panel, searchable: dict[str, str]) -> None:
    assert await alex.inbox(q="o" * SEARCH_MAX_CHARS) == []
    assert await alex.inbox(q=" ".join(["order"] * SEARCH_WORDS_MAX)) == [searchable["jane"]]


# pages


async def _conversations(tenant: Tenant, count: int) -> list[str]:
    """``count`` conversations, newest first."""
    made = [await tenant.visitor_says(f"number {i}") for i in range(count)]
    return made[::-1]


async def _walk(
    panel: Panel, limit: int, cursor: str | None = None, **params: Any
) -> list[list[str]]:
    """Every page from ``cursor`` (or the top) to the last, as lists of ids."""
    pages: list[list[str]] = []
    while True:
        at = {"cursor": cursor} if cursor else {}
        page = await panel.ok("GET", f"{OPERATOR}/inbox", limit=limit, **params, **at)
        pages.append([c["id"] for c in page["conversations"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_pages_walk_every_conversation_once_in_order(tenant: Tenant, alex: Panel) -> None:
    newest_first = await _conversations(tenant, 7)
    pages = await _walk(alex, 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [c for p in pages for c in p] == newest_first
    assert await _walk(alex, 7) == [newest_first]  # an exactly full page is the last
    assert await _walk(alex, PAGE_MAX) == [newest_first]
    assert await _walk(alex, 1, q="number") == [[c] for c in newest_first]


async def test_a_page_default_is_fifty(tenant: Tenant, alex: Panel) -> None:
    await _conversations(tenant, 51)
    first = await alex.ok("GET", f"{OPERATOR}/inbox")
    assert len(first["conversations"]) == 50 and first["next_cursor"]
    rest = await alex.ok("GET", f"{OPERATOR}/inbox", cursor=first["next_cursor"])
    assert len(rest["conversations"]) == 1 and rest["next_cursor"] is None


async def test_activity_while_paging_moves_a_conversation_to_the_top_never_repeating_it(
    tenant: Tenant, alex: Panel
) -> None:
    """The cursor is a position in the activity order. A conversation that gets a message
    while the operator pages moves above the cursor: a later page neither repeats it (if it
    was already listed) nor reaches it (if it was not yet); the SSE stream announces it and
    a reload from the top shows it first."""
    c6, c5, c4, c3, c2, c1, c0 = await _conversations(tenant, 7)
    first = await alex.ok("GET", f"{OPERATOR}/inbox", limit=3)
    assert [c["id"] for c in first["conversations"]] == [c6, c5, c4]
    await tenant.visitor_says("news", convoID=c1)  # not listed yet
    await tenant.visitor_says("news", convoID=c5)  # already listed
    rest = await _walk(alex, 3, cursor=first["next_cursor"])
    assert rest == [[c3, c2, c0]]
    assert await alex.inbox() == [c5, c1, c6, c4, c3, c2, c0]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "é",
        base64.urlsafe_b64encode(b'{"at": 1}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'["x", 1]').decode(),
        base64.urlsafe_b64encode(b'[1, "a", "b"]').decode(),
        base64.urlsafe_b64encode(b"null").decode(),
        base64.urlsafe_b64encode(b'[1e400, "a"]').decode(),
    ],
)
async def test_a_cursor_this_server_did_not_issue_is_refused(
    tenant: Tenant, alex: Panel, cursor: str
) -> None:
    await tenant.visitor_says("hello")
    assert_error(await alex.get("inbox", cursor=cursor), 400, "invalid_cursor")


# teams: routing, visibility, transfer


@pytest.fixture
async def bea(tenant: Tenant, services: Services) -> Panel:
    """An operator in no team."""
    return await another_operator(tenant, services, "Bea")


async def test_a_sites_team_gets_its_new_conversations_and_only_members_see_them(
    tenant: Tenant, alex: Panel, ada: Panel, bea: Panel
) -> None:
    sales = await team(tenant, tenant.operator_id)
    shop = await site(tenant, team_id=sales)
    everyone = await tenant.visitor_says("on the default site")
    routed = await tenant.visitor_says("in the shop", siteID=shop)
    waiting = await tenant.visitor_says("in the shop too", siteID=shop)
    await tenant.ok("setstatus", convoID=waiting, status="waiting")

    for member in (alex, ada):  # a member, and an admin (who is in no team)
        assert await member.inbox() == [waiting, routed, everyone]
        assert await member.inbox(team_id=sales) == [waiting, routed]
        active = await member.ok("GET", f"{OPERATOR}/active-chats", site_id=shop)
        assert [c["id"] for c in active["chats"]] == [waiting, routed]
        every = await member.ok("GET", f"{OPERATOR}/all-active-chats")
        assert [c["id"] for c in every["chats"]] == [waiting, routed, everyone]
        assert await member.counts() == (3, 0)

    assert await bea.inbox() == [everyone]
    assert await bea.inbox(team_id=sales) == []
    assert (await bea.ok("GET", f"{OPERATOR}/active-chats", site_id=shop))["chats"] == []
    every = await bea.ok("GET", f"{OPERATOR}/all-active-chats")
    assert [c["id"] for c in every["chats"]] == [everyone]
    assert every["current_user_id"] == bea.operator_id
    assert await bea.counts() == (1, 0)

    # The owner always sees theirs, whatever team it is routed to.
    await ada.ok("POST", f"{OPERATOR}/transfer/{routed}", {"operator_id": bea.operator_id})
    assert await bea.inbox() == [routed, everyone]
    assert await bea.inbox(owner="mine") == [routed]
    assert await bea.counts() == (2, 0)


async def test_promoting_an_operator_to_admin_shows_them_every_team(
    tenant: Tenant, bea: Panel
) -> None:
    sales = await team(tenant, tenant.operator_id)
    routed = await tenant.visitor_says("hi", siteID=await site(tenant, team_id=sales))
    assert await bea.inbox() == []
    promoted = await tenant.client.patch(
        f"{ADMIN}/operators/{bea.operator_id}",
        json={"role": "admin"},
        headers={"X-Api-Key": tenant.api_key},
    )
    assert promoted.json()["operator"]["role"] == "admin"
    assert await bea.inbox() == [routed]


async def test_transfer_to_a_team_puts_it_back_in_the_members_queue_unowned(
    tenant: Tenant, services: Services, alex: Panel, ada: Panel, bea: Panel
) -> None:
    carl = await another_operator(tenant, services, "Carl")
    support = await team(tenant, tenant.operator_id, carl.operator_id, name="Support")
    convo = await tenant.visitor_says("my parcel is lost")
    await bea.reply(convo, "Let me check")
    assert (await bea.row(convo))["operator_id"] == bea.operator_id

    moved = await bea.ok("POST", f"{OPERATOR}/transfer/{convo}", {"team_id": support})
    assert moved["conversation"]["operator_id"] is None
    assert moved["conversation"]["team_id"] == support
    assert moved["conversation"]["mode"] == "operator"  # the bot stays stopped
    assert moved["conversation"]["status"] == "open"  # waiting for an operator again
    assert await alex.counts() == (1, 0)
    assert await bea.inbox() == []  # neither a member nor the owner any more
    assert await alex.inbox(owner="unassigned") == [convo]
    assert await carl.inbox(team_id=support, owner="unassigned") == [convo]

    # Two members answer at once: the first reply committed claims it, for good.
    await asyncio.gather(alex.reply(convo, "Alex here"), carl.reply(convo, "Carl here"))
    view = await ada.ok("GET", f"{OPERATOR}/conversation/{convo}")
    first_reply = next(m for m in view["messages"] if m["seq"] > 2)
    owner = view["conversation"]["operator_id"]
    assert owner == first_reply["operator_id"] in (alex.operator_id, carl.operator_id)
    assert view["conversation"]["status"] == "active"
    await ada.reply(convo, "Admin here")
    assert (await ada.row(convo))["operator_id"] == owner
    assert await alex.inbox(owner="unassigned") == []


async def test_only_the_owner_or_an_admin_transfers_an_owned_conversation(
    tenant: Tenant, alex: Panel, ada: Panel, bea: Panel
) -> None:
    sales = await team(tenant, tenant.operator_id)
    convo = await tenant.visitor_says("hi")
    await bea.reply(convo)
    refused = await alex.post(f"transfer/{convo}", {"team_id": sales})
    assert_error(refused, 403, "not_owner")
    assert (await ada.row(convo))["operator_id"] == bea.operator_id
    await ada.ok("POST", f"{OPERATOR}/transfer/{convo}", {"team_id": sales})
    assert (await alex.row(convo))["team_id"] == sales


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_field"),
        ({"team_id": 1, "operator_id": 1}, 400, "invalid_field"),
        ({"team_id": 0}, 400, "invalid_field"),
        ({"team_id": "sales"}, 400, "invalid_field"),
        ({"team_id": [1]}, 400, "invalid_field"),
        ({"team_id": 99}, 404, "team_not_found"),
    ],
)
async def test_bad_team_transfers_are_refused(
    tenant: Tenant, alex: Panel, body: dict[str, Any], status: int, code: str
) -> None:
    await team(tenant, tenant.operator_id)
    convo = await tenant.visitor_says("hi")
    assert_error(await alex.post(f"transfer/{convo}", body), status, code)
    assert (await alex.row(convo))["team_id"] is None


async def test_transfer_of_an_unknown_conversation_is_not_found(
    tenant: Tenant, alex: Panel
) -> None:
    sales = await team(tenant, tenant.operator_id)
    assert_error(
        await alex.post("transfer/no-such-convo", {"team_id": sales}),
        404,
        "conversation_not_found",
    )


async def test_a_deleted_team_releases_its_conversations_and_sites(
    tenant: Tenant, ada: Panel, bea: Panel
) -> None:
    sales = await team(tenant, tenant.operator_id)
    shop = await site(tenant, team_id=sales)
    before = await tenant.visitor_says("hi", siteID=shop)
    assert await bea.inbox() == []
    await ada.ok("DELETE", f"{ADMIN}/teams/{sales}")
    sites = (await bea.ok("GET", f"{OPERATOR}/sites"))["sites"]
    assert [s["team_id"] for s in sites if s["id"] == shop] == [None]
    after = await tenant.visitor_says("hello", siteID=shop)
    assert (await ada.row(after))["team_id"] is None
    assert await bea.inbox() == [after, before]


# counts, blocked


async def test_counts_split_pending_from_active(tenant: Tenant, alex: Panel) -> None:
    assert await alex.counts() == (0, 0)
    by_status = await _one_per_status(tenant, alex)
    assert await alex.counts() == (2, 1)  # open + waiting; active; resolved is neither
    await alex.reply(by_status["open"])
    assert await alex.counts() == (1, 2)
    await alex.ok(
        "POST",
        f"{OPERATOR}/conversation/{by_status['waiting']}/block",
        {"blocked": True, "block_type": "operator"},
    )
    assert await alex.counts() == (0, 2)
    await tenant.visitor_says("back", convoID=by_status["resolved"])
    assert await alex.counts() == (1, 2)


async def test_blocked_lists_every_block_and_the_queues_hide_operator_blocks(
    tenant: Tenant, alex: Panel
) -> None:
    both, ai, hidden, free = [await tenant.visitor_says(t) for t in ("b", "a", "h", "f")]
    for convo, kind in ((both, "both"), (ai, "ai"), (hidden, "operator")):
        await alex.ok(
            "POST",
            f"{OPERATOR}/conversation/{convo}/block",
            {"blocked": True, "block_type": kind},
        )
    blocked = (await alex.ok("GET", f"{OPERATOR}/blocked"))["visitors"]
    assert [(c["id"], c["block_type"], c["blocked"]) for c in blocked] == [
        (hidden, "operator", True),
        (ai, "ai", True),
        (both, "both", True),
    ]
    assert await alex.inbox() == [free, ai, both]
    active = (await alex.ok("GET", f"{OPERATOR}/all-active-chats"))["chats"]
    assert [c["id"] for c in active] == [free, ai, both]

    await alex.ok("POST", f"{OPERATOR}/conversation/{hidden}/block", {"blocked": False})
    assert [c["id"] for c in (await alex.ok("GET", f"{OPERATOR}/blocked"))["visitors"]] == [
        ai,
        both,
    ]
    assert hidden in await alex.inbox()


async def test_blocked_respects_team_visibility(tenant: Tenant, ada: Panel, bea: Panel) -> None:
    sales = await team(tenant, tenant.operator_id)
    routed = await tenant.visitor_says("hi", siteID=await site(tenant, team_id=sales))
    await ada.ok("POST", f"{OPERATOR}/conversation/{routed}/block", {"blocked": True})
    assert [c["id"] for c in (await ada.ok("GET", f"{OPERATOR}/blocked"))["visitors"]] == [routed]
    assert (await bea.ok("GET", f"{OPERATOR}/blocked"))["visitors"] == []


# online visitors, operators


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def test_online_visitors_are_listed_per_site(base: str, tenant: Tenant, alex: Panel) -> None:
    shop = await site(tenant)
    polled = await tenant.visitor_says("hi", sourceApp="liveoperator")
    window = f"/{tenant.account_id}/liveoperator"
    await tenant.client.post(f"{window}/chatpoll", data={"convoID": polled, "since": 0})
    await tenant.client.post(
        f"{window}/chatpoll", data={"siteID": shop, "sessionID": "sess-polling-1"}
    )
    async with websocket(f"ws://{base}{window}/ws") as ws:
        await ws.send(type="hello", siteID=shop, sessionID="sess-socket-1")
        await ws.until("ready")
        # Frames are read only once the socket waits in its session (and is online).
        await ws.send(type="ping")
        await ws.until("pong")
        on_home = await alex.ok("GET", f"{OPERATOR}/online-visitors")
        assert on_home["site_id"] == 1
        assert [(v["conversation_id"], v["channel"]) for v in on_home["visitors"]] == [
            (polled, "chat")
        ]
        in_shop = await alex.ok("GET", f"{OPERATOR}/online-visitors", site_id=shop)
        assert {(v["session_id"], v["conversation_id"]) for v in in_shop["visitors"]} == {
            ("sess-socket-1", None),
            ("sess-polling-1", None),
        }
        assert all(v["site_id"] == shop for v in in_shop["visitors"])
        everywhere = (await alex.ok("GET", f"{OPERATOR}/all-online-visitors"))["visitors"]
        assert {v["session_id"] or v["conversation_id"] for v in everywhere} == {
            polled,
            "sess-socket-1",
            "sess-polling-1",
        }

        # The socket's visitor writes: now listed by their conversation, once.
        await ws.send(type="send", message="Hello from the shop", clientMsgID="c1")
        ack = await ws.until("ack")
        in_shop = await alex.ok("GET", f"{OPERATOR}/online-visitors", site_id=shop)
        rows = [(v["session_id"], v["conversation_id"], v["status"]) for v in in_shop["visitors"]]
        assert sorted(rows, key=str) == sorted(
            [("sess-socket-1", ack["convoID"], "open"), ("sess-polling-1", None, None)], key=str
        )


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("online-visitors", {"site_id": 0}, 400, "invalid_field"),
        ("online-visitors", {"site_id": "shop"}, 400, "invalid_field"),
        ("online-visitors", {"site_id": 99}, 404, "site_not_found"),
        ("active-chats", {"site_id": -1}, 400, "invalid_field"),
        ("active-chats", {"site_id": 99}, 404, "site_not_found"),
    ],
)
async def test_site_listings_refuse_bad_sites(
    alex: Panel, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    assert_error(await alex.get(path, **params), status, code)


async def test_operators_are_listed_with_whether_they_are_online(
    tenant: Tenant, alex: Panel
) -> None:
    before = (await alex.ok("GET", f"{OPERATOR}/operators"))["operators"]
    assert [(o["id"], o["role"], o["online"]) for o in before] == [
        (tenant.admin_id, "admin", False),
        (tenant.operator_id, "operator", False),
    ]
    assert set(before[0]) == {
        "id",
        "name",
        "email",
        "is_admin",
        "role",
        "lang",
        "avatar_url",
        "active",
        "online",
        "away",
    }
    await alex.ok("POST", f"{OPERATOR}/heartbeat", {"site_ids": [1]})
    after = (await alex.ok("GET", f"{OPERATOR}/operators"))["operators"]
    assert [(o["id"], o["online"]) for o in after] == [
        (tenant.admin_id, False),
        (tenant.operator_id, True),
    ]


# sites

# A site's widget settings (issue 17), tested in tests/server/test_widgets.py, and its hours
# and away message (issue 18), in tests/server/test_business_hours.py.
WIDGET_FIELDS = {
    "widget_id", "logo_url", "assistant_id", "allowed_origins", "voice_number",
    "time_zone", "business_hours", "away_message", "reply_time",
}  # fmt: skip


def _looks(sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sites' look and routing, without their widget settings (each has them)."""
    assert all(set(site) >= WIDGET_FIELDS for site in sites)
    return [{k: v for k, v in site.items() if k not in WIDGET_FIELDS} for site in sites]


async def test_operators_list_sites_and_admins_manage_them(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    default = {
        "id": 1, "name": "Default", "color": "#2563eb", "position": "right", "greeting": "",
        "team_id": None, "ask_rating": True,
    }  # fmt: skip
    assert _looks((await alex.ok("GET", f"{OPERATOR}/sites"))["sites"]) == [default]
    sales = await team(tenant, tenant.operator_id)
    created = await ada.ok(
        "POST",
        f"{ADMIN}/sites",
        {"name": "Shop", "color": "#FF8800", "position": "left", "greeting": " Hi! ",
         "team_id": sales},
    )  # fmt: skip
    shop = {
        "id": 2, "name": "Shop", "color": "#ff8800", "position": "left", "greeting": "Hi!",
        "team_id": sales, "ask_rating": True,
    }  # fmt: skip
    assert _looks([created["site"]]) == [shop]
    assert _looks((await alex.ok("GET", f"{OPERATOR}/sites"))["sites"]) == [default, shop]
    assert _looks((await alex.ok("GET", f"{ADMIN}/sites"))["sites"]) == [default, shop]

    patched = await ada.ok("PATCH", f"{ADMIN}/sites/2", {"greeting": "Hello", "team_id": 0})
    assert _looks([patched["site"]])[0] == {**shop, "greeting": "Hello", "team_id": None}
    kept = await ada.ok("PATCH", f"{ADMIN}/sites/2", {"name": "Store"})
    assert _looks([kept["site"]])[0] == {
        **shop,
        "name": "Store",
        "greeting": "Hello",
        "team_id": None,
    }
    minimal = await ada.ok("POST", f"{ADMIN}/sites", {"name": "Blog"})
    assert _looks([minimal["site"]])[0] == {**default, "id": 3, "name": "Blog"}

    assert await ada.ok("DELETE", f"{ADMIN}/sites/2") == {"success": True}
    assert [s["id"] for s in (await alex.ok("GET", f"{OPERATOR}/sites"))["sites"]] == [1, 3]
    assert_error(
        await tenant.client.delete(f"{ADMIN}/sites/2", headers=ada.headers), 404, "site_not_found"
    )
    assert_error(
        await tenant.client.delete(f"{ADMIN}/sites/1", headers=ada.headers), 409, "default_site"
    )


SITE_REJECTS: list[tuple[dict[str, Any], int, str]] = [
    ({}, 400, "missing_field"),
    ({"name": "  "}, 400, "invalid_field"),
    ({"name": "n" * 101}, 400, "invalid_field"),
    ({"name": "Shop", "color": "red"}, 400, "invalid_field"),
    ({"name": "Shop", "color": "#12345"}, 400, "invalid_field"),
    ({"name": "Shop", "color": "#1234567"}, 400, "invalid_field"),
    ({"name": "Shop", "color": "#GGGGGG"}, 400, "invalid_field"),
    ({"name": "Shop", "color": "#123456\n"}, 400, "invalid_field"),
    ({"name": "Shop", "color": 123456}, 400, "invalid_field"),
    ({"name": "Shop", "position": "top"}, 400, "invalid_field"),
    ({"name": "Shop", "position": "Left"}, 400, "invalid_field"),
    ({"name": "Shop", "greeting": "g" * 301}, 400, "invalid_field"),
    ({"name": "Shop", "greeting": "Hi\x07"}, 400, "invalid_field"),
    ({"name": "Shop", "greeting": ["Hi"]}, 400, "invalid_field"),
    ({"name": "Shop", "team_id": 99}, 404, "team_not_found"),
    ({"name": "Shop", "team_id": 0}, 400, "invalid_field"),
    ({"name": "Shop", "team_id": "sales"}, 400, "invalid_field"),
]


@pytest.mark.parametrize(("body", "status", "code"), SITE_REJECTS)
async def test_bad_sites_are_refused(
    alex: Panel, ada: Panel, body: dict[str, Any], status: int, code: str
) -> None:
    assert_error(
        await ada.client.post(f"{ADMIN}/sites", json=body, headers=ada.headers), status, code
    )
    assert [s["id"] for s in (await alex.ok("GET", f"{OPERATOR}/sites"))["sites"]] == [1]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("sites/2", {"color": "blue"}, 400, "invalid_field"),
        ("sites/2", {"position": "middle"}, 400, "invalid_field"),
        ("sites/2", {"greeting": "g" * 301}, 400, "invalid_field"),
        ("sites/2", {"name": ""}, 400, "invalid_field"),
        ("sites/2", {"team_id": 99}, 404, "team_not_found"),
        ("sites/2", {"team_id": -1}, 400, "invalid_field"),
        ("sites/99", {"name": "Nowhere"}, 404, "site_not_found"),
        ("sites/99999999999999999999", {"name": "Huge"}, 404, "site_not_found"),
        ("sites/shop", {"name": "Word"}, 404, "not_found"),
    ],
)
async def test_bad_site_updates_are_refused(
    tenant: Tenant, ada: Panel, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    await site(tenant)
    before = (await ada.ok("GET", f"{ADMIN}/sites"))["sites"]
    assert_error(
        await ada.client.patch(f"{ADMIN}/{path}", json=body, headers=ada.headers), status, code
    )
    assert (await ada.ok("GET", f"{ADMIN}/sites"))["sites"] == before


async def test_a_plain_operator_reads_sites_but_cannot_change_them(
    tenant: Tenant, alex: Panel
) -> None:
    await site(tenant)
    for method, path in (("POST", "sites"), ("PATCH", "sites/2"), ("DELETE", "sites/2")):
        body = {"name": "Mine"} if method != "DELETE" else None
        attempt = await alex.client.request(
            method, f"{ADMIN}/{path}", json=body, headers=alex.headers
        )
        assert_error(attempt, 403, "admin_required")
    assert [s["name"] for s in (await alex.ok("GET", f"{ADMIN}/sites"))["sites"]] == [
        "Default",
        "Shop",
    ]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"siteID": 99}, 404, "site_not_found"),
        ({"siteID": 0}, 400, "invalid_field"),
        ({"siteID": "shop"}, 400, "invalid_field"),
        ({"sessionID": "short"}, 400, "invalid_session_id"),
        ({"sessionID": "has spaces in it"}, 400, "invalid_session_id"),
        ({"sessionID": "sess-0123456789\n"}, 400, "invalid_session_id"),
    ],
)
async def test_a_conversation_needs_a_site_of_its_account(
    tenant: Tenant, alex: Panel, fields: dict[str, Any], status: int, code: str
) -> None:
    assert_error(await tenant.command("sendmessage", message="hi", **fields), status, code)
    window = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage", data={"message": "hi", **fields}
    )
    assert_error(window, status, code)
    assert await alex.inbox() == []


async def test_a_conversation_remembers_its_site_and_session(tenant: Tenant, alex: Panel) -> None:
    shop = await site(tenant)
    convo = await tenant.visitor_says("hi", siteID=shop, sessionID="sess-0123456789")
    row = await alex.row(convo)
    assert (row["site_id"], row["session_id"]) == (shop, "sess-0123456789")
    # An existing conversation stays where it started.
    await tenant.visitor_says("again", convoID=convo, siteID=1)
    assert (await alex.row(convo))["site_id"] == shop


# roles


async def test_role_names_admins_and_operators(tenant: Tenant, ada: Panel) -> None:
    made = await ada.ok(
        "POST",
        f"{ADMIN}/operators",
        {"name": "Bea", "email": "bea@example.test", "password": "bea-password", "role": "admin"},
    )
    assert (made["operator"]["role"], made["operator"]["is_admin"]) == ("admin", True)
    bea = made["operator"]["id"]
    demoted = await ada.ok("PATCH", f"{ADMIN}/operators/{bea}", {"role": "operator"})
    assert (demoted["operator"]["role"], demoted["operator"]["is_admin"]) == ("operator", False)
    plain = await ada.ok(
        "POST",
        f"{ADMIN}/operators",
        {"name": "Cy", "email": "cy@example.test", "password": "cy-password"},
    )
    assert plain["operator"]["role"] == "operator"
    # role wins over the older is_admin when both are sent
    both = await ada.ok("PATCH", f"{ADMIN}/operators/{bea}", {"role": "admin", "is_admin": False})
    assert both["operator"]["role"] == "admin"


@pytest.mark.parametrize("role", ["owner", "Admin", "", 1, True])
async def test_a_bad_role_is_refused(tenant: Tenant, ada: Panel, role: Any) -> None:
    new = {"name": "Bea", "email": "bea@example.test", "password": "bea-password", "role": role}
    created = await ada.client.post(f"{ADMIN}/operators", json=new, headers=ada.headers)
    assert_error(created, 400, "invalid_field")
    patched = await ada.client.patch(
        f"{ADMIN}/operators/{tenant.operator_id}", json={"role": role}, headers=ada.headers
    )
    assert_error(patched, 400, "invalid_field")
    operators = (await ada.ok("GET", f"{ADMIN}/operators"))["operators"]
    assert [(o["id"], o["role"]) for o in operators] == [
        (tenant.admin_id, "admin"),
        (tenant.operator_id, "operator"),
    ]


# who may call


LISTINGS = [
    "inbox",
    "active-chats",
    "all-active-chats",
    "all-chat-counts",
    "online-visitors",
    "all-online-visitors",
    "operators",
    "blocked",
    "sites",
]


@pytest.mark.parametrize("path", LISTINGS)
async def test_listings_need_an_operator(tenant: Tenant, path: str) -> None:
    url = f"{OPERATOR}/{path}"
    assert_error(await tenant.client.get(url), 401, "missing_credentials")
    assert_error(await tenant.client.get(url, headers=bearer("not-a-jwt")), 401, "invalid_token")
    with_key = await tenant.client.get(url, headers={"X-Api-Key": tenant.api_key})
    assert_error(with_key, 400, "operator_required")
