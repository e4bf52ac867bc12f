-- SQLite's 0005 makes operator emails unique case-insensitively, as 0001 made them here
-- (operators_email on lower(email)): nothing to do. This step keeps the dialects' numbers
-- aligned.
SELECT 1;
