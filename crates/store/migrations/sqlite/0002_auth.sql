-- Local users; password hashes are argon2id PHC strings.
CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    created_ts    INTEGER NOT NULL
);

-- Tokens, stored by hash only.
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    id         TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    expiry_ts  INTEGER NOT NULL,
    service    INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expiry_ts);

-- API keys, stored by hash only.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    user_name  TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    metadata   TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
