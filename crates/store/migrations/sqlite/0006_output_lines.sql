-- The display line each record's first byte lands on (squall_core::lines), numbered by the log
-- writer so that a reader finds line N without reading what comes before it. NULL for records
-- stored before lines were numbered and for the store's own notes.
ALTER TABLE output ADD COLUMN line INTEGER;
