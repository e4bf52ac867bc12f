"""Push notifications end to end: operators register devices over the API, visitors write,
and the pushes arrive at a local server speaking Google's OAuth2 and FCM HTTP v1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from realtime.presence import MemoryPresence
from server.adapters.fcm import FcmV1
from server.app import create_app
from server.cli import main
from server.events import EventFeed
from server.push import PREVIEW_CHARS, RETRY_AFTER_S, PushNotifier
from server.services import Services
from server.settings import Settings, SettingsError, load_settings
from storage.models import Committed
from tests.adapters.providers import FakeGoogle
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer

TOKEN_PATH = "/api/v1/operator/fcm-token"


@pytest.fixture
def settings(tmp_path: Path, credentials: str, google: FakeGoogle) -> Settings:
    return load_settings(
        {
            "LIVEOP_DATA_DIR": str(tmp_path / "data"),
            "LIVEOP_FCM_CREDENTIALS": credentials,
            "LIVEOP_FCM_URL": google.url,
        }
    )


@pytest.fixture
def notifier(app: Starlette) -> PushNotifier:
    found = app.state.push
    assert isinstance(found, PushNotifier)
    return found


async def _login(tenant: Tenant, who: str) -> dict[str, str]:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"{who}@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    return bearer(response.json()["token"])


async def _devices(tenant: Tenant, who: str, *tokens: str) -> dict[str, str]:
    """Logs ``who`` in and registers their devices; returns their auth headers."""
    headers = await _login(tenant, who)
    for token in tokens:
        response = await tenant.client.post(TOKEN_PATH, json={"token": token}, headers=headers)
        assert response.json() == {"success": True}
    return headers


async def _pushes(google: FakeGoogle, notifier: PushNotifier) -> dict[str, dict[str, Any]]:
    """What each device received since the last call, once every push under way is done."""
    await notifier.idle()
    received = [body["message"] for body in google.received]
    google.received.clear()
    by_device = {m["token"]: m for m in received}
    assert len(by_device) == len(received), "a device got more than one push"
    return by_device


def _expected(
    tenant: Tenant, convo: str, kind: str, title: str, body: str, *devices: str
) -> dict[str, dict[str, Any]]:
    data = {"conversation_id": convo, "account_id": tenant.account_id, "kind": kind}
    notification = {"title": title, "body": body}
    return {d: {"token": d, "notification": notification, "data": data} for d in devices}


async def _says(tenant: Tenant, text: str, **fields: Any) -> str:
    """A visitor in a live chat: every message of theirs is news to the operators."""
    return await tenant.visitor_says(text, **{"sourceApp": "liveoperator", **fields})


async def _reply(
    tenant: Tenant, headers: dict[str, str], convo: str, path: str = "message"
) -> None:
    response = await tenant.client.post(
        f"/api/v1/operator/{path}",
        json={"conversation_id": convo, "content": "On it."},
        headers=headers,
    )
    assert response.status_code == 200, response.json()


async def test_a_new_conversation_pushes_every_offline_operators_devices_once(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "ada", "ada-phone")
    await _devices(tenant, "alex", "alex-phone", "alex-tablet")
    convo = await _says(tenant, "Hello, is anyone there?", userInfo={"fname": "Jane"})
    assert await _pushes(google, notifier) == _expected(
        tenant,
        convo,
        "new_conversation",
        "Jane started a conversation",
        "Hello, is anyone there?",
        "ada-phone",
        "alex-phone",
        "alex-tablet",
    )
    await _says(tenant, "x " * 200, convoID=convo)
    again = await _pushes(google, notifier)
    assert sorted(again) == ["ada-phone", "alex-phone", "alex-tablet"]
    message = again["ada-phone"]
    assert message["notification"]["title"] == "Jane"
    assert message["notification"]["body"] == ("x " * 200)[: PREVIEW_CHARS - 1] + "…"
    assert message["data"]["kind"] == "new_message"


async def test_an_operator_who_is_online_gets_no_push(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "ada", "ada-phone")
    alex = await _devices(tenant, "alex", "alex-phone")
    beat = await tenant.client.post("/api/v1/operator/heartbeat", json={}, headers=alex)
    assert beat.status_code == 200
    convo = await _says(tenant, "hi")
    assert await _pushes(google, notifier) == _expected(
        tenant, convo, "new_conversation", "Visitor started a conversation", "hi", "ada-phone"
    )


async def test_once_an_operator_owns_the_conversation_only_they_are_pushed(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    ada = await _devices(tenant, "ada", "ada-phone")
    alex = await _devices(tenant, "alex", "alex-phone")
    convo = await _says(tenant, "hi", userInfo={"email": "jane@example.com"})
    assert sorted(await _pushes(google, notifier)) == ["ada-phone", "alex-phone"]
    await _reply(tenant, alex, convo)
    await _reply(tenant, ada, convo, "note")
    assert await _pushes(google, notifier) == {}
    await _says(tenant, "thanks", convoID=convo)
    assert await _pushes(google, notifier) == _expected(
        tenant, convo, "new_message", "jane@example.com", "thanks", "alex-phone"
    )


async def test_bot_answers_push_nobody_but_the_visitor_does(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "alex", "alex-phone")
    convo = await _says(tenant, "hi")
    await _pushes(google, notifier)
    await tenant.ok("sendmessage", convoID=convo, message="I am a bot", sender="bot")
    assert await _pushes(google, notifier) == {}
    await _says(tenant, "a human, please", convoID=convo)
    assert list(await _pushes(google, notifier)) == ["alex-phone"]


async def test_a_chatbot_conversation_pushes_once_until_a_human_takes_over(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    alex = await _devices(tenant, "alex", "alex-phone")
    convo = await tenant.visitor_says("hi")  # sourceApp chatbot: the bot answers
    assert list(await _pushes(google, notifier)) == ["alex-phone"]
    await tenant.ok("sendmessage", convoID=convo, message="Hello! I am a bot", sender="bot")
    await tenant.visitor_says("what are your hours?", convoID=convo)
    assert await _pushes(google, notifier) == {}
    await _reply(tenant, alex, convo)
    await tenant.visitor_says("thanks, human", convoID=convo)
    assert list(await _pushes(google, notifier)) == ["alex-phone"]


async def test_a_conversation_opened_by_the_bot_is_new_to_the_operators(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "alex", "alex-phone")
    body = await tenant.ok("sendmessage", message="How can I help?", sender="bot")
    assert await _pushes(google, notifier) == _expected(
        tenant,
        body["convoID"],
        "new_conversation",
        "Visitor started a conversation",
        "How can I help?",
        "alex-phone",
    )


async def test_a_proactive_message_pushes_nobody(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "ada", "ada-phone")
    alex = await _devices(tenant, "alex", "alex-phone")
    session = "sess_0123456789"
    await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/chatpoll", data={"sessionID": session, "siteID": 1}
    )
    response = await tenant.client.post(
        "/api/v1/operator/proactive-message",
        json={"site_id": 1, "session_id": session, "content": "Can I help?"},
        headers=alex,
    )
    assert response.status_code == 200, response.json()
    assert await _pushes(google, notifier) == {}


async def test_team_conversations_push_only_the_team(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    ada = await _devices(tenant, "ada", "ada-phone")
    await _devices(tenant, "alex", "alex-phone")
    team = await tenant.client.post(
        "/api/v1/admin/teams",
        json={"name": "Billing", "member_ids": [tenant.operator_id]},
        headers=ada,
    )
    site = await tenant.client.post(
        "/api/v1/admin/sites",
        json={"name": "billing.example.com", "team_id": team.json()["team"]["id"]},
        headers=ada,
    )
    convo = await _says(tenant, "my invoice", siteID=site.json()["site"]["id"])
    assert list(await _pushes(google, notifier)) == ["alex-phone"]
    await _says(tenant, "hello?", convoID=convo)
    assert list(await _pushes(google, notifier)) == ["alex-phone"]
    # Once the team is gone, only admins see its conversations.
    gone = await tenant.client.delete(
        f"/api/v1/admin/teams/{team.json()['team']['id']}", headers=ada
    )
    assert gone.status_code == 200
    await _says(tenant, "anybody?", convoID=convo)
    assert list(await _pushes(google, notifier)) == ["ada-phone"]


@pytest.mark.parametrize(("block_type", "pushed"), [("operator", []), ("ai", ["alex-phone"])])
async def test_a_conversation_hidden_from_operators_pushes_nobody(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier, block_type: str, pushed: list[str]
) -> None:
    alex = await _devices(tenant, "alex", "alex-phone")
    convo = await _says(tenant, "hi")
    await _pushes(google, notifier)
    blocked = await tenant.client.post(
        f"/api/v1/operator/conversation/{convo}/block",
        json={"blocked": True, "block_type": block_type},
        headers=alex,
    )
    assert blocked.status_code == 200
    await _says(tenant, "still there?", convoID=convo)
    assert list(await _pushes(google, notifier)) == pushed


async def test_a_dead_device_token_is_forgotten(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier, services: Services
) -> None:
    google.dead.add("alex-old-phone")
    await _devices(tenant, "alex", "alex-old-phone", "alex-phone")
    await _says(tenant, "hi")
    assert list(await _pushes(google, notifier)) == ["alex-phone"]
    tokens = await services.store.push_tokens(tenant.account_id, [tenant.operator_id])
    assert tokens == {tenant.operator_id: ["alex-phone"]}


async def test_a_push_fcm_cannot_take_is_retried_once_without_holding_up_the_request(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier, services: Services
) -> None:
    google.flaky.add("alex-phone")
    await _devices(tenant, "alex", "alex-phone")
    started = time.monotonic()
    await _says(tenant, "hi")
    # The retry waits RETRY_AFTER_S; a request that waited for it would take longer.
    assert time.monotonic() - started < RETRY_AFTER_S
    assert await _pushes(google, notifier) == {}
    assert google.send_attempts == 2
    tokens = await services.store.push_tokens(tenant.account_id, [tenant.operator_id])
    assert tokens == {tenant.operator_id: ["alex-phone"]}


async def test_removed_devices_get_no_more_pushes(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "ada", "ada-phone")
    alex = await _devices(tenant, "alex", "alex-phone", "alex-tablet")
    one = await tenant.client.request(
        "DELETE", TOKEN_PATH, json={"token": "alex-tablet"}, headers=alex
    )
    assert one.json() == {"success": True, "removed": 1}
    convo = await _says(tenant, "hi")
    assert sorted(await _pushes(google, notifier)) == ["ada-phone", "alex-phone"]
    await _devices(tenant, "alex", "alex-tablet")
    every = await tenant.client.delete(TOKEN_PATH, headers=alex)
    assert every.json() == {"success": True, "removed": 2}
    unknown = await tenant.client.request(
        "DELETE", TOKEN_PATH, json={"token": "never-registered"}, headers=alex
    )
    assert unknown.json() == {"success": True, "removed": 0}
    await _says(tenant, "hello?", convoID=convo)
    assert list(await _pushes(google, notifier)) == ["ada-phone"]


async def test_registering_a_device_twice_pushes_it_once(
    tenant: Tenant, google: FakeGoogle, notifier: PushNotifier
) -> None:
    await _devices(tenant, "alex", "alex-phone", "alex-phone")
    await _says(tenant, "hi")
    assert list(await _pushes(google, notifier)) == ["alex-phone"]


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [
        ("POST", {}, "missing_field"),
        ("POST", {"token": ""}, "missing_field"),
        ("POST", {"token": "x" * 4097}, "invalid_field"),
        ("POST", {"token": ["a", "b"]}, "invalid_field"),
        ("DELETE", {"token": "x" * 4097}, "invalid_field"),
    ],
)
async def test_bad_device_tokens_are_refused(
    tenant: Tenant, method: str, body: dict[str, Any], code: str
) -> None:
    headers = await _login(tenant, "alex")
    response = await tenant.client.request(method, TOKEN_PATH, json=body, headers=headers)
    assert_error(response, 400, code)


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_device_tokens_need_an_operator(tenant: Tenant, method: str) -> None:
    body = {"token": "alex-phone"}
    anonymous = await tenant.client.request(method, TOKEN_PATH, json=body)
    assert_error(anonymous, 401, anonymous.json()["error"]["code"])
    with_key = await tenant.client.request(
        method, TOKEN_PATH, json=body, headers={"X-Api-Key": tenant.api_key}
    )
    assert_error(with_key, 400, "operator_required")


async def test_pushes_past_the_backlog_limit_are_dropped(
    tenant: Tenant,
    google: FakeGoogle,
    notifier: PushNotifier,
    services: Services,
    credentials: str,
) -> None:
    await _devices(tenant, "alex", "alex-phone")
    convo = await _says(tenant, "hi")
    await _pushes(google, notifier)
    committed = await services.engine.send(tenant.account_id, convo_id=convo, text="again")
    assert len(await _pushes(google, notifier)) == 1
    sender = FcmV1.from_file(credentials, fcm_url=google.url)
    backlog = PushNotifier(sender, services.store, MemoryPresence(), max_pending=1)
    try:
        # No await in between: the first push cannot have finished when the second comes.
        await backlog.committed(committed)
        await backlog.committed(committed)
        assert list(await _pushes(google, backlog)) == ["alex-phone"]
    finally:
        await backlog.aclose()
        await sender.aclose()


async def test_a_failing_listener_neither_reaches_the_caller_nor_stops_the_next(
    tenant: Tenant, services: Services
) -> None:
    heard: list[Committed] = []

    async def broken(committed: Committed) -> None:
        raise RuntimeError("listener bug")

    async def listening(committed: Committed) -> None:
        heard.append(committed)

    feed = EventFeed(services.hub, services.store, [broken, listening])
    committed = await services.engine.send(tenant.account_id, convo_id=None, text="hi")
    await feed.committed(committed)
    assert heard == [committed]


async def test_pushes_are_on_only_with_credentials(
    tmp_path: Path, settings: Settings, credentials: str
) -> None:
    assert settings.fcm_credentials == credentials
    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(tmp_path)}))
    async with app.router.lifespan_context(app):
        assert app.state.push is None


def test_a_bad_credentials_file_stops_the_start_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "service-account.json"
    broken.write_text("{not json")
    env = {"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_FCM_CREDENTIALS": str(broken)}
    with pytest.raises(SettingsError, match=r"LIVEOP_FCM_CREDENTIALS: .* not a JSON file"):
        load_settings(env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 2
    assert "not a JSON file" in capsys.readouterr().err
