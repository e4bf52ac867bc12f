-- Issue 18/19: a site's business hours (a JSON list of [weekday 0-6 from Monday, open minute,
-- close minute] in its IANA time zone; an empty list is always open), the away message its
-- widget shows when nobody can answer, and when the visitor may expect a reply.
ALTER TABLE sites ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE sites ADD COLUMN business_hours TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sites ADD COLUMN away_message TEXT NOT NULL DEFAULT '';
ALTER TABLE sites ADD COLUMN reply_time TEXT NOT NULL DEFAULT '';
