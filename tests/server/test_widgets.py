"""Seed 003's widget API with AI assistants (issue 17), against a real OpenAI-compatible server:
LLMock (from PyPI) on loopback, scripted per test, and for the one case it cannot produce (a
completion without ``usage``) a small local server speaking the same API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from llmock.pytest_plugin import LLMock

from server.services import Services
from server.settings import Settings, load_settings
from server.widgets import HANDOVER_TEXT
from tests.conftest import Tenant, assert_error, bearer, make_tenant
from tests.server.test_inbox import ADMIN, OPERATOR, admin_of, operator_of

SESSION = "visitor-session-0001"
ORIGIN = "https://shop.example.test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A model slower than 5 s is "down" here: the slow case waits that long, not 30 s, and a
    # busy machine still answers the others well within it.
    return load_settings(
        {"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_ASSISTANT_TIMEOUT_S": "5"}
    )


@pytest.fixture
def model(llmock: LLMock) -> LLMock:
    # LLMock calls an offered tool unless told otherwise; the tests say when the model does.
    return llmock.tool_mode("off")


@dataclass
class Widget:
    tenant: Tenant
    widget_id: str
    token: str
    assistant_id: int

    @property
    def base(self) -> str:
        return f"/api/widgets/{self.widget_id}"

    async def chat(self, message: str, **fields: Any) -> httpx.Response:
        body = {"sessionId": SESSION, "message": message, **fields}
        return await self.tenant.client.post(
            f"{self.base}/chat", json=body, headers=bearer(self.token)
        )

    async def ok(self, message: str, **fields: Any) -> dict[str, Any]:
        response = await self.chat(message, **fields)
        found: dict[str, Any] = response.json()
        assert response.status_code == 200, found
        assert found["success"] is True
        return found


async def admin(tenant: Tenant, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = await tenant.client.request(
        method, f"{ADMIN}/{path}", json=body, headers={"X-Api-Key": tenant.api_key}
    )
    found: dict[str, Any] = response.json()
    assert response.status_code in (200, 201), found
    return found


async def make_widget(
    tenant: Tenant, base_url: str, *, api_key: str = "sk-acme", budget: int = 100_000
) -> Widget:
    assistant = await admin(
        tenant,
        "POST",
        "assistants",
        {
            "name": "Concierge",
            "base_url": base_url,
            "model": "gpt-4o-mini",
            "api_key": api_key,
            "system_prompt": "You help shoppers of Acme.",
            "max_tokens": 200,
            "monthly_token_budget": budget,
        },
    )
    assistant_id = assistant["assistant"]["id"]
    site = await admin(
        tenant,
        "PATCH",
        "sites/1",
        {
            "name": "Acme Shop",
            "logo_url": "https://cdn.example.test/logo.png",
            "assistant_id": assistant_id,
            "allowed_origins": [ORIGIN],
            "voice_number": "+14165559999",
        },
    )
    token = await admin(tenant, "POST", "sites/1/widget-tokens")
    return Widget(tenant, site["site"]["widget_id"], token["token"]["token"], assistant_id)


@pytest.fixture
async def widget(tenant: Tenant, model: LLMock) -> Widget:
    return await make_widget(tenant, model.base_url("openai"))


async def test_config_is_the_seeds_shape_and_public(widget: Widget, client: httpx.AsyncClient):
    response = await client.get(f"{widget.base}/config")
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "config": {
            "name": "Acme Shop",
            "assistantId": widget.assistant_id,
            "widget": {"primaryColor": "#2563eb", "position": "bottom-right"},
            "branding": {"logo": "https://cdn.example.test/logo.png"},
        },
    }
    assert_error(await client.get("/api/widgets/no-such-widget/config"), 404, "widget_not_found")
    assert_error(await client.get("/api/widgets/" + "w" * 500 + "/config"), 400, "invalid_field")


async def test_cors_grants_only_the_sites_origins(widget: Widget, client: httpx.AsyncClient):
    allowed = await client.get(f"{widget.base}/config", headers={"Origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    other = await client.get(f"{widget.base}/config", headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    # Errors carry the grant too, so the widget can read why it failed.
    refused = await client.post(f"{widget.base}/chat", headers={"Origin": ORIGIN})
    assert_error(refused, 401, "invalid_widget_token")
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    ok = await client.options(f"{widget.base}/chat", headers=preflight)
    assert ok.status_code == 204
    assert "Authorization" in ok.headers["access-control-allow-headers"]
    evil = {**preflight, "Origin": "https://evil.test"}
    refused = await client.options(f"{widget.base}/chat", headers=evil)
    assert_error(refused, 403, "origin_not_allowed")


async def test_a_visitor_chats_with_the_assistant_until_a_human_takes_over(
    widget: Widget, model: LLMock, services: Services
) -> None:
    model.reply("Our plans start at $10 a month.")
    first = await widget.ok("Hello, I need help with pricing")
    convo = first["conversationId"]
    assert first["message"] == "Our plans start at $10 a month."
    assert first["metadata"]["model"] == "gpt-4o-mini"
    assert first["metadata"]["tokens"] > 0
    assert first["humanActive"] is False
    sent = model.last_request
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["max_tokens"] == 200
    assert sent.body["messages"] == [
        {"role": "system", "content": "You help shoppers of Acme."},
        {"role": "user", "content": "Hello, I need help with pricing"},
    ]
    assert [t["function"]["name"] for t in sent.body["tools"]] == ["handover"]

    model.reply("The yearly plan saves two months.")
    second = await widget.ok("And yearly?", conversationId=convo)
    assert second["conversationId"] == convo
    assert [m["role"] for m in model.last_request.body["messages"]] == [
        "system", "user", "assistant", "user",
    ]  # fmt: skip

    # The visitor asks for a person: the assistant hands over by rule, with no model call.
    calls = len(model.requests)
    handed = await widget.ok("Can I talk to a human please?", conversationId=convo)
    assert handed["message"] == HANDOVER_TEXT and handed["humanActive"] is True
    assert handed["metadata"] == {"model": None, "tokens": 0}
    assert len(model.requests) == calls

    # The operator sees the whole AI dialogue, the assistant's lines marked as the bot's.
    operator = await operator_of(widget.tenant)
    view = await operator.ok("GET", f"{OPERATOR}/conversation/{convo}")
    assert view["conversation"]["mode"] == "operator"
    assert [(m["sender"], m["model"]) for m in view["messages"]] == [
        ("visitor", None), ("bot", "gpt-4o-mini"), ("visitor", None), ("bot", "gpt-4o-mini"),
        ("visitor", None), ("bot", None),
    ]  # fmt: skip
    await operator.reply(convo, "Hi, this is Alex. How can I help?")

    # From now on the assistant never answers; the visitor's messages are kept.
    later = await widget.ok("Thanks Alex, about my invoice...", conversationId=convo)
    assert later == {
        "success": True,
        "conversationId": convo,
        "message": None,
        "metadata": None,
        "humanActive": True,
    }
    assert len(model.requests) == calls
    # The operator's reply reaches the visitor through chatpoll of the same conversation id.
    poll = await widget.tenant.client.post(
        f"/{widget.tenant.account_id}/liveoperator/chatpoll", data={"convoID": convo, "since": 0}
    )
    texts = [(m["sender"], m["message"]) for m in poll.json()["messages"]]
    assert ("operator", "Hi, this is Alex. How can I help?") in texts
    assert texts[-1] == ("visitor", "Thanks Alex, about my invoice...")


async def test_the_model_hands_over_through_its_tool_and_operators_are_told(
    widget: Widget, model: LLMock, services: Services
) -> None:
    model.call_tool("handover", {"reason": "refund request"})
    head = await widget.tenant.event_seq(services)
    answer = await widget.ok("I want my money back for order 1234")
    assert answer["message"] == HANDOVER_TEXT and answer["humanActive"] is True
    events = await services.store.list_events(widget.tenant.account_id, after_seq=head, limit=100)
    # The operators' stream: the new conversation, both messages, and its move to the queue.
    kinds = [e.kind for e in events]
    assert kinds.count("message:new") == 2 and "conversation:new" in kinds
    updated = [json.loads(e.data or "{}") for e in events if e.kind == "conversation:updated"]
    assert updated[-1]["mode"] == "operator"
    convo = await services.store.get_conversation(
        widget.tenant.account_id, answer["conversationId"]
    )
    assert convo is not None and convo.mode == "operator" and convo.status == "open"


async def test_an_operator_who_accepts_stops_the_assistant(widget: Widget, model: LLMock):
    model.reply("Hello!")
    convo = (await widget.ok("Hi"))["conversationId"]
    admin_panel = await admin_of(widget.tenant)
    await admin_panel.ok("POST", f"{OPERATOR}/accept/{convo}")
    calls = len(model.requests)
    answer = await widget.ok("Are you there?", conversationId=convo)
    assert answer["message"] is None and answer["humanActive"] is True
    assert len(model.requests) == calls


@pytest.mark.parametrize("fault", ["500", "429", "slow"])
async def test_a_failing_provider_gives_503_keeps_the_message_and_queues_it(
    widget: Widget, model: LLMock, services: Services, fault: str
) -> None:
    if fault == "500":
        model.fail(500)
    elif fault == "429":
        model.rate_limit(retry_after=30)
    else:
        model.delay(8)
    response = await widget.chat("Is anyone there?")
    body = response.json()
    # Not 429: the widget tells "your quota" from "provider down" by the status.
    assert_error(response, 503, "assistant_unavailable")
    assert body["humanActive"] is True
    account = widget.tenant.account_id
    convo = await services.store.get_conversation(account, body["conversationId"])
    assert convo is not None and convo.mode == "operator" and convo.status == "open"
    messages = await services.store.list_messages(account, convo.id)
    assert [(m.sender, m.text) for m in messages] == [("visitor", "Is anyone there?")]


async def test_a_spent_budget_gives_429_with_retry_after_and_stores_nothing(
    tenant: Tenant, model: LLMock, services: Services
) -> None:
    widget = await make_widget(tenant, model.base_url("openai"), budget=1)
    model.reply("First and last answer this month.")
    first = await widget.ok("Hello")
    assert first["metadata"]["tokens"] >= 1
    calls = len(model.requests)
    response = await widget.chat("Hello again", conversationId=first["conversationId"])
    assert_error(response, 429, "token_budget_spent")
    assert 0 < int(response.headers["retry-after"]) <= 31 * 86_400
    assert len(model.requests) == calls
    messages = await services.store.list_messages(tenant.account_id, first["conversationId"])
    assert [m.sender for m in messages] == ["visitor", "bot"]
    # Raising the budget lets the assistant answer again.
    raised = {"monthly_token_budget": 10**6}
    await admin(tenant, "PATCH", f"assistants/{widget.assistant_id}", raised)
    model.reply("Back again.")
    assert (await widget.ok("Hello again", conversationId=first["conversationId"]))["message"]


class _NoUsage(BaseHTTPRequestHandler):
    """A Chat Completions server that reports no `usage`, as some local servers do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({
            "id": "c1", "object": "chat.completion", "model": "local-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello from a local model."}}],
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def no_usage_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoUsage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_a_reply_without_usage_is_still_counted(
    tenant: Tenant, no_usage_server: str, services: Services
) -> None:
    widget = await make_widget(tenant, no_usage_server)
    answer = await widget.ok("Hi there")
    assert answer["message"] == "Hello from a local model."
    assert answer["metadata"]["model"] == "local-model"
    # Estimated at four characters a token: never free, so budgets hold.
    assert answer["metadata"]["tokens"] > 0
    spent = await services.store.assistant_tokens_since(tenant.account_id, widget.assistant_id, 0)
    assert spent == answer["metadata"]["tokens"]


async def test_tokens_rotate_and_a_revoked_one_is_refused_at_once(widget: Widget, model: LLMock):
    tenant = widget.tenant
    second = (await admin(tenant, "POST", "sites/1/widget-tokens"))["token"]
    listed = (await admin(tenant, "GET", "sites/1/widget-tokens"))["tokens"]
    assert [t["id"] for t in listed] == [1, 2]
    assert all("token" not in t for t in listed)
    model.reply("One.")
    convo = (await widget.ok("Hi"))["conversationId"]
    model.reply("Two.")
    rotated = Widget(tenant, widget.widget_id, second["token"], widget.assistant_id)
    assert (await rotated.ok("Still me", conversationId=convo))["message"] == "Two."
    await admin(tenant, "DELETE", "sites/1/widget-tokens/1")
    assert_error(await widget.chat("Hi", conversationId=convo), 401, "invalid_widget_token")
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("x" * 500), bearer("nope")):
        response = await tenant.client.post(
            f"{widget.base}/chat", json={"sessionId": SESSION, "message": "Hi"}, headers=headers
        )
        assert_error(response, 401, "invalid_widget_token")
    response = await tenant.client.delete(
        f"{ADMIN}/sites/1/widget-tokens/1", headers={"X-Api-Key": tenant.api_key}
    )
    assert_error(response, 404, "widget_token_not_found")


async def test_two_accounts_assistants_keys_and_budgets_never_mix(
    tenant: Tenant, client: httpx.AsyncClient, services: Services, model: LLMock
) -> None:
    acme = await make_widget(tenant, model.base_url("openai"), api_key="sk-acme", budget=1)
    globex_tenant = await make_tenant(client, services, "Globex")
    globex = await make_widget(globex_tenant, model.base_url("openai"), api_key="sk-globex")
    model.reply("Acme answers.")
    acme_convo = (await acme.ok("Hi"))["conversationId"]
    assert model.last_request.body["messages"][0]["content"] == "You help shoppers of Acme."
    # Acme's budget is spent; Globex's is not, and its own key is sent.
    assert_error(await acme.chat("Again", conversationId=acme_convo), 429, "token_budget_spent")
    model.reply("Globex answers.")
    assert (await globex.ok("Hi"))["message"] == "Globex answers."
    assert [r.body["messages"][-1]["content"] for r in model.requests] == ["Hi", "Hi"]
    # A's token does not open B's widget, A's assistant is not B's, and A's conversation is
    # not found through B's widget.
    cross = Widget(globex_tenant, globex.widget_id, acme.token, globex.assistant_id)
    assert_error(await cross.chat("Hi"), 401, "invalid_widget_token")
    response = await globex.chat("Hi", assistantId=acme.assistant_id + 1)
    assert_error(response, 404, "assistant_not_found")
    response = await globex.chat("Hi", conversationId=acme_convo)
    assert_error(response, 404, "conversation_not_found")
    # Keys never come out, and are sealed at rest.
    listed = await admin(tenant, "GET", "assistants")
    assert "sk-acme" not in json.dumps(listed)
    stored = await services.store.list_assistants(tenant.account_id)
    assert all("sk-acme" not in a.credentials for a in stored)


async def test_the_api_key_reaches_the_model_as_a_bearer(widget: Widget, model: LLMock) -> None:
    seen: list[str] = []

    class Check(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.headers["authorization"])
            return httpx.Response(500)

    from server.adapters.assistant import AssistantFailed, ChatCompletions, Turn

    completions = ChatCompletions(timeout_s=1, transport=Check())
    with pytest.raises(AssistantFailed):
        await completions.complete(
            base_url="http://127.0.0.1:9/v1",
            api_key="sk-acme",
            model="m",
            turns=[Turn("user", "hi")],
            max_tokens=5,
        )
    await completions.aclose()
    assert seen == ["Bearer sk-acme"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": "Hi"}, 400, "missing_field"),
        ({"sessionId": SESSION}, 400, "missing_field"),
        ({"sessionId": SESSION, "message": ""}, 400, "missing_field"),
        ({"sessionId": SESSION, "message": ["Hi", "there"]}, 400, "invalid_field"),
        ({"sessionId": SESSION, "message": "Hi\x00"}, 400, "invalid_characters"),
        ({"sessionId": "bad session!", "message": "Hi"}, 400, "invalid_session_id"),
        ({"sessionId": ["a" * 10], "message": "Hi"}, 400, "invalid_field"),
        ({"sessionId": SESSION, "message": "Hi", "assistantId": "\u0661"}, 400, "invalid_field"),
        ({"sessionId": SESSION, "message": "Hi", "assistantId": 10**30}, 400, "invalid_field"),
        ({"sessionId": SESSION, "message": "Hi", "assistantId": 99}, 404, "assistant_not_found"),
        ({"sessionId": SESSION, "message": "Hi", "conversationId": "nope"}, 404,
         "conversation_not_found"),
        ({"sessionId": SESSION, "message": "Hi", "conversationId": "a\x01"}, 400,
         "invalid_characters"),
        ({"sessionId": SESSION, "message": "x" * 6000}, 400, "message_too_long"),
    ],
)  # fmt: skip
async def test_bad_chat_input_is_a_clear_4xx_and_writes_nothing(
    widget: Widget, model: LLMock, services: Services, body: dict[str, Any], status: int, code: str
) -> None:
    response = await widget.tenant.client.post(
        f"{widget.base}/chat", json=body, headers=bearer(widget.token)
    )
    assert_error(response, status, code)
    assert model.requests == []
    assert await widget.tenant.event_seq(services) == 0


async def test_no_assistant_is_400(tenant: Tenant, services: Services) -> None:
    site = (await admin(tenant, "GET", "sites"))["sites"][0]
    token = (await admin(tenant, "POST", "sites/1/widget-tokens"))["token"]["token"]
    response = await tenant.client.post(
        f"/api/widgets/{site['widget_id']}/chat",
        json={"sessionId": SESSION, "message": "Hi"},
        headers=bearer(token),
    )
    assert_error(response, 400, "no_assistant")


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"allowed_origins": ["https://shop.test/path"]}, "invalid_field"),
        ({"allowed_origins": "https://shop.test"}, "invalid_field"),
        ({"allowed_origins": ["javascript:alert(1)"]}, "invalid_field"),
        ({"allowed_origins": ["https://a.test\x00"]}, "invalid_field"),
        ({"allowed_origins": [f"https://s{i}.test" for i in range(21)]}, "invalid_field"),
        ({"voice_number": "+1 416 555"}, "invalid_field"),
        ({"voice_number": "+\u0661\u0664\u0661\u0666\u0665\u0665\u0665"}, "invalid_field"),
        ({"logo_url": "ftp://x.test/logo.png"}, "invalid_field"),
        ({"logo_url": ["https://x.test/a.png"]}, "invalid_field"),
        ({"assistant_id": 7}, "assistant_not_found"),
        ({"assistant_id": -1}, "invalid_field"),
        ({"assistant_id": 2**70}, "invalid_field"),
    ],
)
async def test_bad_site_widget_settings_are_refused(
    tenant: Tenant, patch: dict[str, Any], code: str
) -> None:
    response = await tenant.client.patch(
        f"{ADMIN}/sites/1", json=patch, headers={"X-Api-Key": tenant.api_key}
    )
    assert_error(response, 404 if code.endswith("not_found") else 400, code)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"base_url": "http://m.test/v1", "model": "m", "monthly_token_budget": 1},
         "missing_field"),
        ({"name": "A", "base_url": "file:///etc", "model": "m", "monthly_token_budget": 1},
         "invalid_field"),
        ({"name": "A", "base_url": "http://m.test/v1", "model": "m\x00",
          "monthly_token_budget": 1}, "invalid_field"),
        ({"name": "A", "base_url": "http://m.test/v1", "model": "m", "monthly_token_budget": -1},
         "invalid_field"),
        ({"name": "A", "base_url": "http://m.test/v1", "model": "m",
          "monthly_token_budget": "\u0665"}, "invalid_field"),
        ({"name": "A", "base_url": "http://m.test/v1", "model": "m", "monthly_token_budget": 1,
          "max_tokens": 10**9}, "invalid_field"),
        ({"name": "A", "base_url": "http://m.test/v1", "model": "m", "monthly_token_budget": 1,
          "api_key": "a b"}, "invalid_field"),
        ({"name": "A", "base_url": "http://m.test/v1", "model": "m", "monthly_token_budget": 1,
          "system_prompt": "\x00"}, "invalid_characters"),
        ({"name": ["A"], "base_url": "http://m.test/v1", "model": "m",
          "monthly_token_budget": 1}, "invalid_field"),
    ],
)  # fmt: skip
async def test_bad_assistants_are_refused(
    tenant: Tenant, services: Services, body: dict[str, Any], code: str
) -> None:
    response = await tenant.client.post(
        f"{ADMIN}/assistants", json=body, headers={"X-Api-Key": tenant.api_key}
    )
    assert_error(response, 400, code)
    assert await services.store.list_assistants(tenant.account_id) == []


async def test_deleting_an_assistant_leaves_its_sites_without_one(widget: Widget) -> None:
    tenant = widget.tenant
    await admin(tenant, "DELETE", f"assistants/{widget.assistant_id}")
    site = (await admin(tenant, "GET", "sites"))["sites"][0]
    assert site["assistant_id"] is None
    cleared = await admin(tenant, "PATCH", "sites/1", {"assistant_id": 0, "logo_url": ""})
    assert cleared["site"]["logo_url"] == ""


async def test_voice_start_gives_the_number_and_records_a_session_code(
    widget: Widget, services: Services
) -> None:
    tenant = widget.tenant
    response = await tenant.client.post(
        f"{widget.base}/voice/start",
        json={"sessionId": SESSION, "assistantId": widget.assistant_id},
        headers=bearer(widget.token),
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["phoneNumber"] == "+14165559999"
    assert body["assistantId"] == widget.assistant_id
    code = body["sessionCode"]
    assert len(code) == 6 and code.isdigit()
    messages = await services.store.list_messages(tenant.account_id, body["conversationId"])
    assert [m.sender for m in messages] == ["system"]
    assert code in messages[0].text and "+14165559999" in messages[0].text
    # The same session's chat continues that conversation.
    model_free = await widget.chat("Can I talk to a human?")
    assert model_free.json()["conversationId"] == body["conversationId"]


async def test_voice_start_without_a_number_is_501_and_writes_nothing(
    widget: Widget, services: Services
) -> None:
    tenant = widget.tenant
    await admin(tenant, "PATCH", "sites/1", {"voice_number": ""})
    url = f"{widget.base}/voice/start"
    response = await tenant.client.post(
        url, json={"sessionId": SESSION}, headers=bearer(widget.token)
    )
    assert_error(response, 501, "voice_not_configured")
    assert await tenant.event_seq(services) == 0
    for body, status, code in (
        ({}, 400, "missing_field"),
        ({"sessionId": ["x" * 10]}, 400, "invalid_field"),
        ({"sessionId": SESSION, "conversationId": "nope"}, 501, "voice_not_configured"),
    ):
        response = await tenant.client.post(url, json=body, headers=bearer(widget.token))
        assert_error(response, status, code)
    assert_error(
        await tenant.client.post(url, json={"sessionId": SESSION}), 401, "invalid_widget_token"
    )


async def test_track_stores_events_bounded_per_session_and_the_summary_counts_them(
    widget: Widget, model: LLMock, services: Services
) -> None:
    tenant = widget.tenant
    url = f"{widget.base}/track"
    event = {
        "sessionId": SESSION,
        "event": "widget_opened",
        "timestamp": "2024-01-15T10:00:00Z",
        "metadata": {"source": "landing_page"},
    }
    response = await tenant.client.post(url, json=event, headers=bearer(widget.token))
    assert response.status_code == 200 and response.json() == {"success": True}
    model.reply("Hi!")
    await widget.ok("Hello")
    await widget.ok("Let me speak to a person")
    stats = await admin(tenant, "GET", "sites/1/widget-stats")
    assert len(stats["days"]) == 1
    today = stats["days"][0]
    assert (today["opened"], today["messages_sent"], today["handovers"]) == (1, 2, 1)
    assert today["events"] == {"widget_opened": 1}
    day = today["date"]
    ranged = await admin(tenant, "GET", f"sites/1/widget-stats?from={day}&to={day}")
    assert ranged["days"] == stats["days"]
    empty = await admin(tenant, "GET", "sites/1/widget-stats?from=2020-01-01&to=2020-01-31")
    assert empty["days"] == []

    # A session holds at most TRACK_PER_SESSION widget events.
    from server.widgets import TRACK_PER_SESSION

    for _ in range(TRACK_PER_SESSION - 1):
        ok = await tenant.client.post(url, json=event, headers=bearer(widget.token))
        assert ok.status_code == 200
    over = await tenant.client.post(url, json=event, headers=bearer(widget.token))
    assert_error(over, 409, "session_event_limit")
    other = {**event, "sessionId": "another-session-01"}
    assert (
        await tenant.client.post(url, json=other, headers=bearer(widget.token))
    ).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"event": "widget_opened"}, "missing_field"),
        ({"sessionId": SESSION}, "missing_field"),
        ({"sessionId": SESSION, "event": "has space"}, "invalid_field"),
        ({"sessionId": SESSION, "event": "e" * 65}, "invalid_field"),
        ({"sessionId": SESSION, "event": ["a", "b"]}, "invalid_field"),
        ({"sessionId": SESSION, "event": "x", "timestamp": "yesterday"}, "invalid_field"),
        ({"sessionId": SESSION, "event": "x", "timestamp": "\u0662\u0660\u0662\u0664-01-15"},
         "invalid_field"),
        ({"sessionId": SESSION, "event": "x", "metadata": [1, 2]}, "invalid_field"),
        ({"sessionId": SESSION, "event": "x", "metadata": {"a": "b" * 3000}}, "invalid_field"),
        ({"sessionId": SESSION, "event": "x", "metadata": {"a": "\x00"}}, "invalid_field"),
    ],
)  # fmt: skip
async def test_bad_track_input_is_400_and_stores_nothing(
    widget: Widget, services: Services, body: dict[str, Any], code: str
) -> None:
    tenant = widget.tenant
    response = await tenant.client.post(
        f"{widget.base}/track", json=body, headers=bearer(widget.token)
    )
    assert_error(response, 400, code)
    assert (await admin(tenant, "GET", "sites/1/widget-stats"))["days"] == []


@pytest.mark.parametrize(
    "query", ["from=2024-13-01", "to=2024-02-30", "from=2024-03-01&to=2024-02-01",
              "from=2020-01-01&to=2024-01-01", "from=%D9%A2024-01-01"],
)  # fmt: skip
async def test_bad_summary_ranges_are_400(tenant: Tenant, query: str) -> None:
    response = await tenant.client.get(
        f"{ADMIN}/sites/1/widget-stats?{query}", headers={"X-Api-Key": tenant.api_key}
    )
    assert_error(response, 400, "invalid_field")


async def _qualified(services: Services, tenant: Tenant) -> list[dict[str, Any]]:
    events = await services.store.list_events(tenant.account_id, after_seq=0, limit=1000)
    return [json.loads(e.data or "{}") for e in events if e.kind == "conversation:qualified"]


async def test_a_visitor_who_leaves_an_email_makes_a_qualified_lead_once(
    widget: Widget, model: LLMock, services: Services
) -> None:
    model.reply("Thanks, we will write to you.")
    answer = await widget.ok("Please email me at dana@example.com about the offer")
    convo = answer["conversationId"]
    model.reply("Noted.")
    await widget.ok("Or call +1 (416) 555-0199", conversationId=convo)
    found = await services.store.get_conversation(widget.tenant.account_id, convo)
    assert found is not None
    assert (found.user_info.email, found.user_info.phone) == (
        "dana@example.com",
        "+1 (416) 555-0199",
    )
    qualified = await _qualified(services, widget.tenant)
    assert [q["id"] for q in qualified] == [convo]
    assert qualified[0]["qualified_at"] == found.qualified_at
    # Marking it again (an operator) announces nothing new.
    operator = await operator_of(widget.tenant)
    marked = await operator.ok("POST", f"{OPERATOR}/conversation/{convo}/qualify")
    assert marked["conversation"]["qualified_at"] == found.qualified_at
    assert len(await _qualified(services, widget.tenant)) == 1


async def test_an_operator_marks_a_conversation_qualified(
    widget: Widget, model: LLMock, services: Services
) -> None:
    model.reply("Hello!")
    convo = (await widget.ok("Just looking, 12 items maybe"))["conversationId"]
    assert await _qualified(services, widget.tenant) == []
    operator = await operator_of(widget.tenant)
    marked = await operator.ok("POST", f"{OPERATOR}/conversation/{convo}/qualify")
    assert marked["conversation"]["qualified_at"] is not None
    assert [q["id"] for q in await _qualified(services, widget.tenant)] == [convo]
    response = await operator.client.post(
        f"{OPERATOR}/conversation/nope/qualify", headers=operator.headers
    )
    assert_error(response, 404, "conversation_not_found")


async def test_an_assistant_blocked_by_an_operator_stays_silent(
    widget: Widget, model: LLMock
) -> None:
    model.reply("Hello!")
    convo = (await widget.ok("Hi"))["conversationId"]
    operator = await operator_of(widget.tenant)
    block = {"blocked": True, "block_type": "ai"}
    await operator.ok("POST", f"{OPERATOR}/conversation/{convo}/block", block)
    calls = len(model.requests)
    answer = await widget.ok("Anyone?", conversationId=convo)
    assert answer["message"] is None and answer["humanActive"] is False
    assert len(model.requests) == calls
