"""A phone that opts out after a reply was queued: the outbound worker, not the engine,
is the last line. The app here runs without its worker, so the reply is still queued when
the STOP arrives; then a worker starts and must refuse it without calling the provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from server.outbound import outbound_worker
from server.services import Services
from server.settings import Settings, load_settings
from server.sms_opt_outs import REFUSED
from tests.conftest import Tenant
from tests.outbound.servers import SmsServer, sms_server
from tests.server.test_sms_opt_out import _final, _last_error, _reply
from tests.server.test_webhooks_twilio import _line, assert_twiml, inbound


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_OUTBOUND_WORKER": "0"})


@pytest.fixture
def provider() -> Any:
    with sms_server() as server:
        yield server


async def test_the_worker_sends_nothing_to_a_phone_that_opted_out_after_the_reply_was_queued(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> None:
    line = await _line(client, services, tenant, api_url=provider.base)
    assert_twiml(await line.post(inbound(1, "Hi")))
    (convo,) = await line.conversations()
    await _reply(client, tenant, convo, "Hello, how can I help?")
    assert_twiml(await line.post(inbound(2, "STOP")))
    running = load_settings({"LIVEOP_DATA_DIR": str(services.settings.data_dir)})
    async with outbound_worker(running, services.store, services.feed, services.channels):
        assert await _final(services, convo, 2) == "failed"
    assert provider.twilio.received == []
    assert await _last_error(services) == [REFUSED]
