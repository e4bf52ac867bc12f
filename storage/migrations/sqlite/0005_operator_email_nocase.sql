-- Emails are logins, unique across accounts and compared case-insensitively, as PostgreSQL's
-- 0001 has had them from the start; until this step SQLite compared them exactly.
--
-- A store may already hold case-variants of one email (`SAME@x.test` beside `same@x.test`).
-- Login lowercases what it is given, and SQLite compared exactly, so at most the all-lowercase
-- variant could log in. That one keeps the email (else the oldest, then the lowest account and
-- id); every other variant is renamed `duplicate-<account>-<id>+<email>`, which no login
-- matches and an admin sees and can correct. No operator, team membership or message is lost.
UPDATE operators SET email = 'duplicate-' || account_id || '-' || id || '+' || email
WHERE EXISTS (
    SELECT 1 FROM operators keeper
    WHERE lower(keeper.email) = lower(operators.email)
    AND (keeper.email <> lower(keeper.email), keeper.created, keeper.account_id, keeper.id)
        < (operators.email <> lower(operators.email), operators.created, operators.account_id,
           operators.id)
);
DROP INDEX operators_email;
CREATE UNIQUE INDEX operators_email ON operators (lower(email));
