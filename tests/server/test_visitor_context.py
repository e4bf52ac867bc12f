"""Issue 18: where the widget's visitor is, as the chat window reports it with each message
and the operators read it on the conversation; what no browser sends is refused whole."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.visitor_context import (
    TITLE_MAX_CHARS,
    URL_MAX_CHARS,
    USER_AGENT_MAX_CHARS,
    browser_and_os,
)
from tests.conftest import Tenant, assert_error
from tests.server.test_inbox import Panel, operator_of

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)


async def _post(tenant: Tenant, agent: str = CHROME_LINUX, **fields: Any) -> httpx.Response:
    return await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage",
        data=fields,
        headers={"User-Agent": agent},
    )


async def _context(panel: Panel, convo_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await panel.row(convo_id))["visitor_context"]
    return found


async def test_the_start_page_stays_the_current_page_follows(tenant: Tenant) -> None:
    first = await _post(
        tenant,
        message="Hi",
        pageURL="https://shop.example/pricing?plan=team",
        pageTitle="Pricing · Shop",
        referrer="https://search.example/?q=shop",
        timeZone="Europe/Paris",
    )
    convo = first.json()["convoID"]
    await _post(
        tenant,
        message="Still there?",
        convoID=convo,
        pageURL="https://shop.example/checkout",
        pageTitle="Checkout",
        referrer="https://shop.example/pricing?plan=team",
    )
    panel = await operator_of(tenant)
    assert await _context(panel, convo) == {
        "start_url": "https://shop.example/pricing?plan=team",
        "start_title": "Pricing · Shop",
        "url": "https://shop.example/checkout",
        "title": "Checkout",
        # The site's own page that linked to the checkout is not where the visitor came from.
        "referrer": "https://search.example/?q=shop",
        "browser": "Chrome 131",
        "os": "Linux",
        "time_zone": "Europe/Paris",
    }


async def test_a_conversation_without_context_shows_none(tenant: Tenant) -> None:
    convo = (await tenant.ok("sendmessage", message="From the API"))["convoID"]
    assert await _context(await operator_of(tenant), convo) == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pageURL", "javascript:alert(1)"),
        ("pageURL", "data:text/html,hi"),
        ("pageURL", "https://shop.example/a b"),
        ("pageURL", "https://shop.example/\x00"),
        ("pageURL", "https://shop.example/" + "a" * URL_MAX_CHARS),
        ("referrer", "ftp://files.example/"),
        ("pageTitle", "Pricing\x00"),
        ("pageTitle", "Line\nbreak"),
        ("pageTitle", "\x85"),
        ("pageTitle", "t" * (TITLE_MAX_CHARS + 1)),
        ("timeZone", "Europe/Paris\x00"),
        ("timeZone", "../../etc/passwd"),
        ("timeZone", "Europe/" + "x" * 64),
        ("timeZone", "١٢"),
    ],
)
async def test_what_no_browser_reports_is_refused_and_writes_nothing(
    tenant: Tenant, field: str, value: str
) -> None:
    response = await _post(tenant, message="Hi", **{field: value})
    assert_error(response, 400, "invalid_context")
    panel = await operator_of(tenant)
    assert await panel.listing() == []


async def test_a_list_where_one_page_belongs_is_refused(tenant: Tenant) -> None:
    response = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage",
        json={"message": "Hi", "pageURL": ["https://a.example/", "https://b.example/"]},
    )
    assert_error(response, 400, "invalid_field")


@pytest.mark.parametrize(
    ("agent", "browser", "system"),
    [
        (CHROME_LINUX, "Chrome 131", "Linux"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68",
            "Edge 130",
            "Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:132.0) Gecko/20100101 Firefox/132.0",
            "Firefox 132",
            "macOS",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
            "Safari 17",
            "iOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome 131",
            "Android",
        ),
        ("curl/8.5.0", "", ""),
        ("", "", ""),
        # A header longer than any browser's is read up to the limit, never refused.
        ("x" * USER_AGENT_MAX_CHARS + " Firefox/132.0", "", ""),
    ],
)
def test_browser_and_os_read_from_the_user_agent(agent: str, browser: str, system: str) -> None:
    assert browser_and_os(agent) == (browser, system)
