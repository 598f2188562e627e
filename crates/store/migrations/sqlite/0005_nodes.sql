-- Nodes and their leases (one node on the embedded backend; the table keeps the Store
-- contract the same on every backend).
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY NOT NULL,
    roles        TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_ts   INTEGER NOT NULL,
    heartbeat_ts INTEGER NOT NULL
);
