-- Issue 18: where the widget's visitor is (start and current page, referrer, browser, OS, time
-- zone), one JSON object kept on the conversation for the inbox's side panel.
ALTER TABLE conversations ADD COLUMN visitor_context TEXT NOT NULL DEFAULT '{}';
