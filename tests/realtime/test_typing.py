from realtime.typing_indicators import TYPING_TTL_S, MemoryTypingIndicators


async def test_typing_expires_five_seconds_after_the_last_heartbeat() -> None:
    now = [100.0]
    typing = MemoryTypingIndicators(clock=lambda: now[0])
    await typing.touch("c1", "visitor")
    assert await typing.is_typing("c1", "visitor")
    assert not await typing.is_typing("c1", "operator")
    now[0] += TYPING_TTL_S - 0.01
    assert await typing.is_typing("c1", "visitor")
    await typing.touch("c1", "visitor")
    now[0] += TYPING_TTL_S - 0.01
    assert await typing.is_typing("c1", "visitor")
    now[0] += 0.02
    assert not await typing.is_typing("c1", "visitor")
