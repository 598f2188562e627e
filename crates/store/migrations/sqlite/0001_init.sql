-- Executions: the JSON document plus the columns that queries filter and sort on.
CREATE TABLE executions (
    id          TEXT PRIMARY KEY NOT NULL,
    status      TEXT NOT NULL,
    action_ref  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    parent      TEXT,
    start_ts    INTEGER NOT NULL,
    end_ts      INTEGER,
    doc         TEXT NOT NULL
);
CREATE INDEX executions_start ON executions (start_ts, id);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_action ON executions (action_ref, start_ts);
CREATE INDEX executions_end ON executions (end_ts);

-- The output log: one row per record, ordered by its per-execution sequence number.
CREATE TABLE output (
    execution_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    stream       INTEGER NOT NULL,
    byte_offset  INTEGER NOT NULL,
    ts           INTEGER NOT NULL,
    data         BLOB NOT NULL
);
CREATE UNIQUE INDEX output_seq ON output (execution_id, seq);
