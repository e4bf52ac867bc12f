"""Every bad input gets a clear 4xx JSON error and writes nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from server.services import Services
from tests.conftest import Tenant, assert_error

CONVO = "{convo}"  # replaced by a real conversation of the tenant
FOREIGN = "{foreign}"  # replaced by a conversation of another account
OK = {"message": "hi"}

# (case id, envelope overrides, command fields or raw json string, status, code)
COMMAND_CASES: list[tuple[str, dict[str, Any], Any, int, str]] = [
    ("unknown account", {"accountID": "nope"}, OK, 401, "invalid_credentials"),
    ("wrong key", {"key": "lok_wrong"}, OK, 401, "invalid_credentials"),
    ("missing key", {"key": None}, OK, 401, "missing_credentials"),
    ("missing account", {"accountID": None}, OK, 400, "missing_field"),
    ("unknown app", {"app": "smsbroadcast"}, OK, 400, "unknown_app"),
    ("missing app", {"app": None}, OK, 400, "missing_field"),
    ("unknown command", {"command": "deleteall"}, OK, 400, "unknown_command"),
    ("missing command", {"command": None}, OK, 400, "missing_field"),
    ("malformed json", {}, '{"message": "hi"', 400, "invalid_json"),
    ("json not an object", {}, "[1, 2]", 400, "invalid_field"),
    ("empty message", {}, {"message": "   "}, 400, "empty_message"),
    ("message too long", {}, {"message": "x" * 5001}, 400, "message_too_long"),
    ("message not text", {}, {"message": {"a": 1}}, 400, "invalid_field"),
    ("nul in message", {}, {"message": "a\u0000b"}, 400, "invalid_characters"),
    ("control in name", {}, {"userInfo": {"fname": "J\u001b[31m"}, **OK}, 400, "invalid_user_info"),
    ("unknown convo", {}, {"convoID": "nope", **OK}, 404, "conversation_not_found"),
    ("foreign convo", {}, {"convoID": FOREIGN, **OK}, 404, "conversation_not_found"),
    ("unknown operator", {}, {"convoID": CONVO, "operatorID": 99, **OK}, 404, "operator_not_found"),
    ("operator id not a number", {}, {"operatorID": "abc", **OK}, 400, "invalid_field"),
    ("operator id zero", {}, {"operatorID": 0, **OK}, 400, "invalid_field"),
    ("operator id boolean", {}, {"operatorID": True, **OK}, 400, "invalid_field"),
    (
        "unknown canned",
        {},
        {"convoID": CONVO, "operatorID": 1, "canned": 7},
        404,
        "canned_not_found",
    ),
    ("canned from visitor", {}, {"convoID": CONVO, "canned": 1}, 400, "canned_requires_operator"),
    ("invalid source app", {}, {"sourceApp": "fax", **OK}, 400, "invalid_source_app"),
    ("invalid sender", {}, {"sender": "operator", **OK}, 400, "invalid_field"),
    ("user info not an object", {}, {"userInfo": "jane", **OK}, 400, "invalid_json"),
    ("user info list", {}, {"userInfo": [1], **OK}, 400, "invalid_field"),
    ("bad email", {}, {"userInfo": {"email": "jane"}, **OK}, 400, "invalid_user_info"),
    ("bad phone", {}, {"userInfo": {"phone": "call me"}, **OK}, 400, "invalid_user_info"),
    ("long name", {}, {"userInfo": {"fname": "j" * 101}, **OK}, 400, "invalid_user_info"),
    ("long client id", {}, {"clientMsgID": "c" * 129, **OK}, 400, "invalid_field"),
    ("long convo id", {}, {"convoID": "c" * 65, **OK}, 400, "invalid_field"),
]
STATUS_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("invalid status", {"convoID": CONVO, "status": "closed"}, 400, "invalid_status"),
    ("missing status", {"convoID": CONVO}, 400, "missing_field"),
    ("missing convo", {"status": "open"}, 400, "missing_field"),
    ("foreign convo", {"convoID": FOREIGN, "status": "open"}, 404, "conversation_not_found"),
]
READ_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("history none", "gethistory", {"convoID": CONVO, "numMessages": 0}, 400, "invalid_field"),
    ("history many", "gethistory", {"convoID": CONVO, "numMessages": 201}, 400, "invalid_field"),
    ("history foreign", "gethistory", {"convoID": FOREIGN}, 404, "conversation_not_found"),
    ("poll since text", "poll", {"convoID": CONVO, "since": "yesterday"}, 400, "invalid_field"),
    ("poll since nan", "poll", {"convoID": CONVO, "since": "nan"}, 400, "invalid_field"),
    ("poll since negative", "poll", {"convoID": CONVO, "since": -1}, 400, "invalid_field"),
    ("poll foreign", "poll", {"convoID": FOREIGN}, 404, "conversation_not_found"),
    (
        "poll unknown operator",
        "poll",
        {"convoID": CONVO, "operatorID": 50},
        404,
        "operator_not_found",
    ),
    ("typing foreign", "settyping", {"convoID": FOREIGN}, 404, "conversation_not_found"),
    ("typing no convo", "settyping", {}, 400, "missing_field"),
]


def _fill(value: Any, convo: str, foreign: str) -> Any:
    if isinstance(value, str):
        return value.replace(CONVO, convo).replace(FOREIGN, foreign)
    if isinstance(value, dict):
        return {k: _fill(v, convo, foreign) for k, v in value.items()}
    return value


@pytest.fixture
async def convos(tenant: Tenant, other_tenant: Tenant) -> tuple[str, str]:
    return await tenant.visitor_says("mine"), await other_tenant.visitor_says("theirs")


async def _snapshot(services: Services, *tenants: Tenant) -> list[int]:
    return [await t.event_seq(services) for t in tenants]


async def _post(tenant: Tenant, envelope: dict[str, Any], payload: Any) -> Any:
    form = {
        "accountID": tenant.account_id,
        "key": tenant.api_key,
        "app": "liveoperator",
        "command": "sendmessage",
        "json": payload if isinstance(payload, str) else orjson.dumps(payload).decode(),
    }
    form.update(envelope)
    return await tenant.client.post("/", data={k: v for k, v in form.items() if v is not None})


@pytest.mark.parametrize(
    ("envelope", "payload", "status", "code"),
    [case[1:] for case in COMMAND_CASES],
    ids=[case[0] for case in COMMAND_CASES],
)
async def test_bad_sendmessage(
    tenant: Tenant,
    other_tenant: Tenant,
    services: Services,
    convos: tuple[str, str],
    envelope: dict[str, Any],
    payload: Any,
    status: int,
    code: str,
) -> None:
    before = await _snapshot(services, tenant, other_tenant)
    response = await _post(tenant, envelope, _fill(payload, *convos))
    assert_error(response, status, code)
    assert await _snapshot(services, tenant, other_tenant) == before


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [case[1:] for case in STATUS_CASES],
    ids=[case[0] for case in STATUS_CASES],
)
async def test_bad_setstatus(
    tenant: Tenant,
    other_tenant: Tenant,
    services: Services,
    convos: tuple[str, str],
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = await _snapshot(services, tenant, other_tenant)
    response = await _post(tenant, {"command": "setstatus"}, _fill(fields, *convos))
    assert_error(response, status, code)
    assert await _snapshot(services, tenant, other_tenant) == before


@pytest.mark.parametrize(
    ("command", "fields", "status", "code"),
    [case[1:] for case in READ_CASES],
    ids=[case[0] for case in READ_CASES],
)
async def test_bad_reads(
    tenant: Tenant,
    services: Services,
    convos: tuple[str, str],
    command: str,
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = await _snapshot(services, tenant)
    response = await _post(tenant, {"command": command}, _fill(fields, *convos))
    assert_error(response, status, code)
    assert await _snapshot(services, tenant) == before


async def test_oversized_body_is_refused_before_parsing(tenant: Tenant, services: Services) -> None:
    before = await _snapshot(services, tenant)
    response = await _post(tenant, {}, {"message": "x" * (70 * 1024)})
    assert_error(response, 413, "body_too_large")
    assert await _snapshot(services, tenant) == before


async def test_oversized_chunked_body_is_refused(tenant: Tenant) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"message=" + b"x" * 1024

    response = await tenant.client.post(
        "/", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_error(response, 413, "body_too_large")


async def test_non_utf8_form_is_refused(tenant: Tenant, services: Services) -> None:
    before = await _snapshot(services, tenant)
    body = (
        f"accountID={tenant.account_id}&key={tenant.api_key}&app=liveoperator"
        "&command=sendmessage&message=caf%E9"
    ).encode()
    response = await tenant.client.post(
        "/", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_error(response, 400, "invalid_encoding")
    assert await _snapshot(services, tenant) == before


async def test_non_utf8_json_is_refused(tenant: Tenant) -> None:
    body = b'{"accountID": "' + tenant.account_id.encode() + b'", "message": "caf\xe9"}'
    response = await tenant.client.post(
        "/", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


async def test_non_utf8_multipart_is_refused(tenant: Tenant) -> None:
    boundary = "XyZ"
    parts = []
    for name, value in (
        ("accountID", tenant.account_id.encode()),
        ("key", tenant.api_key.encode()),
        ("app", b"liveoperator"),
        ("command", b"sendmessage"),
        ("message", b"caf\xe9"),
    ):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    response = await tenant.client.post(
        "/", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_error(response, 400, "invalid_encoding")


async def test_multipart_form_is_understood(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/",
        files={
            "accountID": (None, tenant.account_id),
            "key": (None, tenant.api_key),
            "app": (None, "liveoperator"),
            "command": (None, "sendmessage"),
            "json": (None, '{"message": "caf\u00e9"}'),
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["message"]["message"] == "caf\u00e9"


async def test_unsupported_media_type(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/", content=b"<xml/>", headers={"content-type": "application/xml"}
    )
    assert_error(response, 415, "unsupported_media_type")


async def test_wrong_method_and_unknown_path(tenant: Tenant) -> None:
    assert_error(await tenant.client.get("/"), 405, "method_not_allowed")
    assert_error(await tenant.client.get("/no/such/path"), 404, "not_found")


async def test_integers_beyond_64_bits_are_refused_not_crashed(tenant: Tenant) -> None:
    for field in ("operatorID", "canned"):
        form = tenant.envelope("sendmessage", message="hi", **{field: "99999999999999999999"})
        response = await tenant.client.post("/", data=form)
        assert_error(response, 400, "invalid_field")
