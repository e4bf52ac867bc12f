"""Issue 21 item 14: bidi overrides and zero-width characters in names rendered them
reversed or made two operators look alike. Names holding them are refused (400), not
stripped; the joiners that scripts and emoji need between their own characters pass."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer

ADMIN = "/api/v1/admin"
# Right-to-left override, isolates, a mark, zero-width space, ZWJ and ZWNJ inside Latin, word
# joiner, soft hyphen, BOM.
DISGUISED = [
    "\u202eAlex",
    "Ada \u2067Admin\u2069",
    "Alex\u200f",
    "Al\u200bex",
    "Al\u200dex",
    "Al\u200cex",
    "Al\u2060ex",
    "Al\u00adex",
    "\ufeffAlex",
]
# Persian with a ZWNJ, a family emoji joined by ZWJ, accents.
GENUINE = [
    "\u0645\u0647\u200c\u0631\u0646\u0627\u0632",
    "Sam \U0001f468\u200d\U0001f469",
    "Jos\u00e9",
]


async def _admin(tenant: Tenant) -> dict[str, str]:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"ada@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    return bearer(response.json()["token"])


def _name_writes(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", "operators", {"name": name, "email": "bo@x.test", "password": "bo-password"}),
        ("PATCH", "operators/2", {"name": name}),
        ("POST", "teams", {"name": name}),
        ("POST", "canned", {"name": name, "message": "Hello"}),
        ("POST", "sites", {"name": name}),
        ("PATCH", "sites/1", {"name": name}),
    ]


@pytest.mark.parametrize("name", DISGUISED)
async def test_bidi_overrides_and_zero_width_characters_in_names_are_refused(
    tenant: Tenant, name: str
) -> None:
    headers = await _admin(tenant)
    for method, path, body in _name_writes(name):
        response = await tenant.client.request(
            method, f"{ADMIN}/{path}", json=body, headers=headers
        )
        assert_error(response, 400, "invalid_field")
    visitor = await tenant.command("sendmessage", message="hi", userInfo={"fname": name})
    assert_error(visitor, 400, "invalid_user_info")
    window = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage", data={"message": "hi", "fname": name}
    )
    assert_error(window, 400, "invalid_user_info")
    convo = await tenant.visitor_says("hello")
    renamed = await tenant.client.patch(
        f"/api/v1/operator/conversation/{convo}/visitor", json={"name": name}, headers=headers
    )
    assert_error(renamed, 400, "invalid_user_info")


@pytest.mark.parametrize("name", GENUINE)
async def test_names_that_need_joiners_or_accents_are_kept(tenant: Tenant, name: str) -> None:
    team = await tenant.client.post(
        f"{ADMIN}/teams", json={"name": name}, headers=await _admin(tenant)
    )
    assert team.status_code == 201 and team.json()["team"]["name"] == name
    convo = await tenant.visitor_says("hi", userInfo={"fname": name})
    assert (await tenant.ok("gethistory", convoID=convo))["userInfo"]["fname"] == name
