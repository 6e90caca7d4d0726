-- The tables as trioscope 4fabadb (2026-12-06) created them: schema version 2.
-- Copied from src/store/_sqlite.py at that commit; never edit: it is what such databases hold.
CREATE TABLE IF NOT EXISTS deployments (
    hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    enrollment_hash TEXT,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_tenant ON deployments (tenant, created_at);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    token_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    decommissioned_at REAL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    tenant TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL,
    document BLOB NOT NULL,  -- the small fields; the rest in columns of their own (_command_rows)
    error BLOB,
    history BLOB,
    result BLOB,
    -- After the result (where version 2 added it): only its index is read.
    finished_at REAL  -- NULL while open
);
-- Pages of a deployment's commands, newest first, with or without a status:
-- walked in order, not sorted (a deployment may hold hundreds of thousands).
CREATE INDEX IF NOT EXISTS commands_deployment_status_sequence ON commands (deployment_hash, status, sequence);
CREATE INDEX IF NOT EXISTS commands_deployment_sequence ON commands (deployment_hash, sequence);
CREATE INDEX IF NOT EXISTS commands_deployment_created ON commands (deployment_hash, created_at);
CREATE INDEX IF NOT EXISTS commands_finished ON commands (finished_at);  -- pruning
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    tenant TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    outcome TEXT NOT NULL,
    address TEXT,
    user_agent TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, id);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);  -- pruning
