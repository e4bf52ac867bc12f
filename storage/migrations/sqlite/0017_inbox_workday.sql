-- Issue 18: an operator who leaves is deactivated, not deleted, so their name stays on their
-- past messages and their conversations are handed on; a deactivated operator cannot sign in.
ALTER TABLE operators ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
