-- Issue 15: a customer's mail keeps its attachments as stored files, not as a line of text.
-- A JSON list of {name, content_type, size, url} (url null when the file was not kept).
ALTER TABLE messages ADD COLUMN attachments TEXT;
