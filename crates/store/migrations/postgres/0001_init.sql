-- Executions: the JSON document plus the columns that queries filter and sort on. Ids are
-- 24-hex and time-ordered; COLLATE "C" keeps their text order byte order.
CREATE TABLE executions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    status      TEXT NOT NULL,
    action_ref  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    parent      TEXT COLLATE "C",
    start_ts    BIGINT NOT NULL,
    end_ts      BIGINT,
    doc         TEXT NOT NULL
);
CREATE INDEX executions_start ON executions (start_ts, id);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_action ON executions (action_ref, start_ts);
CREATE INDEX executions_end ON executions (end_ts);
CREATE INDEX executions_parent ON executions (parent);

-- The output log: one row per record (at most 1 MiB of data), keyed by its per-execution
-- sequence number. `len` lets a page stop at a byte budget without reading the data.
CREATE TABLE output (
    execution_id TEXT COLLATE "C" NOT NULL,
    seq          BIGINT NOT NULL,
    stream       BIGINT NOT NULL,
    byte_offset  BIGINT NOT NULL,
    ts           BIGINT NOT NULL,
    host         TEXT,
    len          BIGINT NOT NULL,
    data         BYTEA NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

-- Local users; password hashes are argon2id PHC strings.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts    BIGINT NOT NULL
);

-- Tokens, stored by hash only.
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    id         TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    expiry_ts  BIGINT NOT NULL,
    service    BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expiry_ts);
CREATE INDEX tokens_user ON tokens (user_name);

-- API keys, stored by hash only.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    user_name  TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL,
    metadata   TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- Nodes of the cluster and their leases, judged by this database's clock.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    roles        TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    version      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
