-- The tables as trioscope 784eb92 (2026-12-06) created them: schema version 4.
-- Copied from src/store/_sqlite.py at that commit (its tenant_usage part from src/store/_tenant_usage.py, its
-- idempotency_keys part from src/store/_idempotency_keys.py); never edit: it is what such databases hold.
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

CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant TEXT PRIMARY KEY,
    command_bytes INTEGER NOT NULL  -- of its rows in commands (_tenant_usage)
);
CREATE TRIGGER IF NOT EXISTS commands_usage_inserted AFTER INSERT ON commands BEGIN
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, (length(NEW.document) + coalesce(length(NEW.error), 0) + coalesce(length(NEW.history), 0) + coalesce(length(NEW.result), 0)))
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS commands_usage_updated AFTER UPDATE OF tenant, document, error, history, result
ON commands BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - (length(OLD.document) + coalesce(length(OLD.error), 0) + coalesce(length(OLD.history), 0) + coalesce(length(OLD.result), 0))
        WHERE tenant = OLD.tenant;
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, (length(NEW.document) + coalesce(length(NEW.error), 0) + coalesce(length(NEW.history), 0) + coalesce(length(NEW.result), 0)))
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS commands_usage_deleted AFTER DELETE ON commands BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - (length(OLD.document) + coalesce(length(OLD.error), 0) + coalesce(length(OLD.history), 0) + coalesce(length(OLD.result), 0))
        WHERE tenant = OLD.tenant;
END;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,  -- 1-255 printable ASCII characters
    fingerprint TEXT NOT NULL,  -- of the request that created the command (domain.idempotency)
    command_id TEXT NOT NULL,
    status INTEGER NOT NULL,  -- its answer's HTTP status
    answer BLOB NOT NULL,  -- and body
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant, user_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);  -- pruning

CREATE TRIGGER IF NOT EXISTS idempotency_keys_usage_inserted AFTER INSERT ON idempotency_keys BEGIN
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, (length(CAST(NEW.user_id AS BLOB)) + length(CAST(NEW.key AS BLOB)) + length(NEW.fingerprint) + length(NEW.command_id) + length(NEW.answer)))
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS idempotency_keys_usage_updated AFTER UPDATE OF tenant, user_id, key, fingerprint, command_id, answer
ON idempotency_keys BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - (length(CAST(OLD.user_id AS BLOB)) + length(CAST(OLD.key AS BLOB)) + length(OLD.fingerprint) + length(OLD.command_id) + length(OLD.answer))
        WHERE tenant = OLD.tenant;
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, (length(CAST(NEW.user_id AS BLOB)) + length(CAST(NEW.key AS BLOB)) + length(NEW.fingerprint) + length(NEW.command_id) + length(NEW.answer)))
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS idempotency_keys_usage_deleted AFTER DELETE ON idempotency_keys BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - (length(CAST(OLD.user_id AS BLOB)) + length(CAST(OLD.key AS BLOB)) + length(OLD.fingerprint) + length(OLD.command_id) + length(OLD.answer))
        WHERE tenant = OLD.tenant;
END;
