-- Operator emails are unique within an account (still regardless of case), no longer across
-- the installation: refusing an email because another account uses it told an admin who else
-- uses the product (issue 21 item 9). Login without an account checks every operator with the
-- email; this index, email first, finds them, and one account's by (email, account).
DROP INDEX operators_email;
CREATE UNIQUE INDEX operators_email ON operators (lower(email), account_id);
