"""Migration 0004 gives PostgreSQL's inbox search a trigram index on message text, and the
search the inbox runs is answered from it rather than by reading every message."""

from __future__ import annotations

import asyncpg

from storage.base import Store


async def test_messages_carry_a_trigram_index(postgres_store: Store, postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        extension = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        definition = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_text_trgm'"
        )
        # Without sequential scans allowed, a plan that still reads messages through the index
        # shows the index serves the inbox's `ILIKE '%word%'`.
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "EXPLAIN SELECT 1 FROM messages WHERE text ILIKE '%parcel%'"
                )
            )
    finally:
        await conn.close()
    assert extension == 1
    assert definition is not None and "gin_trgm_ops" in definition
    assert "messages_text_trgm" in plan
