-- As sqlite/0009, in PostgreSQL types. Reports and satisfaction ratings (issue 19).

-- The visitor's rating of a resolution, and which resolution (its resolved_at) it rates.
ALTER TABLE conversations ADD COLUMN rating SMALLINT;
ALTER TABLE conversations ADD COLUMN rating_comment TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN rated_resolved_at DOUBLE PRECISION;
-- A site may turn the rating question off.
ALTER TABLE sites ADD COLUMN ask_rating BOOLEAN NOT NULL DEFAULT TRUE;
