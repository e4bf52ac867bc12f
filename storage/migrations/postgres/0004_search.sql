-- Inbox search (storage/inbox.py) looks for `%word%` in every message of an account. Without
-- an index that is a scan of the whole messages table for any word found in few conversations
-- (300 ms at 500,000 messages); a trigram index answers it from the few matching rows.
--
-- pg_trgm ships with PostgreSQL's contrib and is trusted from PostgreSQL 13, so a database
-- owner may create it. Where it cannot be created (contrib not installed, an older server, a
-- role without CREATE on the database), search still gives the same answers, only by scanning:
-- this step then warns instead of failing, so no installation stops starting because of it.
-- After installing pg_trgm, the index can be added by hand with the CREATE INDEX below.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    -- About as large as the table. GIN's pending list (fastupdate) keeps most inserts as cheap
    -- as without the index, at the price of an occasional merge (docs/benchmarks.md).
    CREATE INDEX IF NOT EXISTS messages_text_trgm ON messages USING gin (text gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'inbox search stays unindexed: pg_trgm is unavailable (%)', SQLERRM;
END
$$;
