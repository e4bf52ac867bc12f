-- Reports and satisfaction ratings (issue 19). New columns go last so rows.py's positional
-- mapping stays one list.

-- The visitor's rating of a resolution, and which resolution (its resolved_at) it rates.
ALTER TABLE conversations ADD COLUMN rating INTEGER;
ALTER TABLE conversations ADD COLUMN rating_comment TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN rated_resolved_at REAL;
-- A site may turn the rating question off.
ALTER TABLE sites ADD COLUMN ask_rating INTEGER NOT NULL DEFAULT 1;
