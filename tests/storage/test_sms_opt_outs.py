"""The Store's SMS opt-outs (issue 14), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import secrets

from storage.base import Store

CUSTOMER = "+15557654321"


async def test_the_store_keeps_opt_outs_per_channel_and_phone(store: Store) -> None:
    account = secrets.token_hex(8)
    await store.create_account(account, "acme", secrets.token_hex(32))
    assert await store.set_sms_opt_out(account, 1, CUSTOMER, 100.0)
    # A second STOP changes nothing and keeps the first time.
    assert not await store.set_sms_opt_out(account, 1, CUSTOMER, 200.0)
    assert await store.set_sms_opt_out(account, 2, CUSTOMER, 300.0)
    assert await store.set_sms_opt_out(account, 1, "+15550009999", 400.0)
    assert await store.sms_opt_outs(account, [CUSTOMER]) == [
        (1, CUSTOMER, 100.0),
        (2, CUSTOMER, 300.0),
    ]
    assert await store.sms_opt_outs(account, []) == []
    assert await store.sms_opt_outs("another-account", [CUSTOMER]) == []
    assert await store.set_sms_opt_out(account, 1, CUSTOMER, None)
    assert not await store.set_sms_opt_out(account, 1, CUSTOMER, None)
    assert await store.sms_opt_outs(account, [CUSTOMER, "+15550009999"]) == [
        (1, "+15550009999", 400.0),
        (2, CUSTOMER, 300.0),
    ]
