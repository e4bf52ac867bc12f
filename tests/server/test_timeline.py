"""The conversation's timeline (issue 18): what happened to a conversation, as lines its
operators see live on the stream and again in the conversation's view after a reload; never
the visitor. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette

from tests.conftest import Tenant, assert_error
from tests.server.realtime_clients import serve, sse
from tests.server.test_assignment import _routed_site
from tests.server.test_operator_panel import Panel, chat, chatpoll, login, next_event
from tests.storage.conftest import (
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)


@pytest.fixture
async def alex(tenant: Tenant) -> Panel:
    return await login(tenant, "alex", tenant.operator_id)


@pytest.fixture
async def ada(tenant: Tenant) -> Panel:
    return await login(tenant, "ada", tenant.admin_id)


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


def texts(view: dict[str, Any]) -> list[str]:
    return [line["text"] for line in view["timeline"]]


async def test_what_happened_is_on_the_timeline_after_a_reload(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    convo = await chat(tenant, "My order is late")
    await alex.ok(f"accept/{convo}")
    await alex.ok("message", conversation_id=convo, content="Let me ask Ada")
    await alex.ok(f"transfer/{convo}", operator_id=ada.operator_id, note="Order 1234, VIP")
    await ada.ok(f"conversation/{convo}/status", status="waiting")
    await ada.ok(f"conversation/{convo}/block", blocked=True, block_type="ai")
    await ada.ok(f"close/{convo}")
    await tenant.visitor_says("One more thing", convoID=convo)
    view = await ada.view(convo)
    assert texts(view) == [
        "Alex took over",
        "Alex transferred the conversation to Ada Admin",
        "Ada Admin set the status to Waiting",
        "Ada Admin blocked the visitor (ai)",
        "Resolved by Ada Admin",
        "Reopened: the customer wrote again",
    ]
    transfer = view["timeline"][1]
    assert transfer["kind"] == "transferred"
    assert (transfer["by"], transfer["from_operator"], transfer["operator_id"]) == (
        alex.operator_id,
        alex.operator_id,
        ada.operator_id,
    )
    assert transfer["note"] == "Order 1234, VIP"
    # Each line sits after the message it followed: the transfer after Alex's reply.
    seqs = {m["content"]: m["seq"] for m in view["messages"]}
    assert transfer["after_seq"] == seqs["Let me ask Ada"]
    assert view["timeline"][-1]["after_seq"] == seqs["One more thing"]


async def test_lines_arrive_live_on_the_stream_inside_conversation_updated(
    base: str, tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    convo = await chat(tenant)
    await alex.ok(f"accept/{convo}")
    async with sse(base, ada.token) as stream:
        await alex.ok(f"transfer/{convo}", operator_id=ada.operator_id, note="Wants a refund")
        updated = await next_event(stream, "conversation:updated")
        (line,) = updated["timeline"]
        assert (line["kind"], line["note"], line["by_name"]) == (
            "transferred",
            "Wants a refund",
            "Alex",
        )
        await ada.ok(f"close/{convo}")
        resolved = await next_event(stream, "conversation:updated")
        assert [x["text"] for x in resolved["timeline"]] == ["Resolved by Ada Admin"]


async def test_reads_replies_and_the_statuses_they_move_add_no_line(
    tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    await alex.ok("message", conversation_id=convo, content="Hi")
    await alex.view(convo)
    await alex.ok(f"conversation/{convo}/status", status="waiting")
    await tenant.visitor_says("Thanks", convoID=convo)  # waiting ends: back to open
    await alex.view(convo)
    await alex.ok("message", conversation_id=convo, content="Glad to help")  # open: active
    await alex.ok("note", conversation_id=convo, content="Nice customer")
    view = await alex.view(convo)
    assert view["conversation"]["status"] == "active"
    assert texts(view) == ["Alex took over", "Alex set the status to Waiting"]


async def test_a_transfer_to_a_team_names_the_team(tenant: Tenant, alex: Panel, ada: Panel) -> None:
    created = await tenant.client.post(
        "/api/v1/admin/teams", json={"name": "Billing", "member_ids": []}, headers=ada.headers
    )
    team_id = created.json()["team"]["id"]
    convo = await chat(tenant)
    await alex.ok(f"accept/{convo}")
    await alex.ok(f"transfer/{convo}", team_id=team_id)
    (line,) = (await alex.view(convo))["timeline"][1:]
    assert line["text"] == "Alex transferred the conversation to team Billing"
    assert (line["operator_id"], line["team_id"], line["note"]) == (None, team_id, "")


async def test_the_visitor_never_sees_a_line_or_a_hand_over_note(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    convo = await chat(tenant)
    await alex.ok(f"accept/{convo}")
    await alex.ok(f"transfer/{convo}", operator_id=ada.operator_id, note="secret-hand-over")
    await ada.ok(f"close/{convo}")
    polled = await chatpoll(tenant, convoID=convo)
    assert "secret-hand-over" not in str(polled)
    assert [m["message"] for m in polled["messages"]] == ["Hello"]
    history = await tenant.ok("gethistory", convoID=convo)
    assert "secret-hand-over" not in str(history)


async def test_an_older_page_brings_the_lines_among_its_messages(
    tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant, "one")
    await alex.ok(f"accept/{convo}")
    for n in range(3):
        await tenant.visitor_says(f"more {n}", convoID=convo)
    newest = await alex.view(convo, limit=2)
    assert newest["timeline"] == []
    older = await alex.view(convo, limit=2, before_seq=newest["messages"][0]["seq"])
    assert texts(older) == ["Alex took over"]


@pytest.mark.parametrize(
    ("note", "status", "code"),
    [
        pytest.param("a\x00b", 400, "invalid_characters", id="nul"),
        pytest.param("x" * 1001, 400, "message_too_long", id="too-long"),
        pytest.param(["a", "b"], 400, "invalid_field", id="list"),
        pytest.param({"a": 1}, 400, "invalid_field", id="object"),
    ],
)
async def test_a_bad_hand_over_note_is_refused_and_nothing_moves(
    tenant: Tenant, alex: Panel, ada: Panel, note: Any, status: int, code: str
) -> None:
    convo = await chat(tenant)
    await alex.ok(f"accept/{convo}")
    response = await alex.post(f"transfer/{convo}", operator_id=ada.operator_id, note=note)
    assert_error(response, status, code)
    view = await alex.view(convo)
    assert view["conversation"]["operator_id"] == alex.operator_id
    assert texts(view) == ["Alex took over"]


async def test_a_turn_of_an_auto_assigning_team_is_a_line(tenant: Tenant, alex: Panel) -> None:
    _, site = await _routed_site(tenant, auto_assign=True)
    convo = await chat(tenant, "Anyone there?", siteID=site)
    await alex.ok("heartbeat", site_ids=[site])  # he comes in: what waits is his
    view = await alex.view(convo)
    assert view["conversation"]["operator_id"] == alex.operator_id
    (line,) = view["timeline"]
    assert (line["kind"], line["text"], line["by"]) == ("assigned", "Assigned automatically", None)


async def test_deactivating_an_operator_says_who_moved_their_conversations_and_to_whom(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    created = await tenant.client.post(
        "/api/v1/admin/operators",
        json={"name": "Sam", "email": f"sam@{tenant.account_id}.test", "password": "pw-12345678"},
        headers=ada.headers,
    )
    assert created.status_code == 201, created.text
    sam = created.json()["operator"]["id"]
    first, second = await chat(tenant, "First"), await chat(tenant, "Second")
    for convo in (first, second):
        await alex.ok(f"accept/{convo}")
    for leaving, to in ((alex.operator_id, {"to_operator_id": sam}), (sam, {})):
        answer = await tenant.client.post(
            f"/api/v1/admin/operators/{leaving}/deactivate", json=to, headers=ada.headers
        )
        assert answer.status_code == 200, answer.text
    assert texts(await ada.view(first))[-2:] == [
        "Ada Admin transferred the conversation to Sam",
        "Back in the queue",
    ]
