"""What each tenant's stored commands take: the running total behind the quota
``tenants.max_command_bytes`` (table ``tenant_usage``), in both stores.

A command's bytes are those of its row's four values as stored
(``_command_rows``): the document (its parameters among the small fields),
the error, the history and the result, finished commands' included until they
are pruned. The total is kept by triggers on ``commands``, in the transaction
that writes the row: every insert, change and delete counts (the writer's,
a prune's, a copy's restore, an operator's own SQL), so it is exact after a
crash or a restart, and a new command's check reads one row, never a sum over
the tenant's commands.

SQLite's triggers run once per row. PostgreSQL's run once per statement, on
the rows the statement changed (transition tables), each tenant's row
changed once, in tenant order: the writer's command and audit statement
changes hundreds of commands at once. A transaction of PostgreSQL's writer
that changes a tenant's commands takes that tenant's quota lock first
(``_postgres._quota_locks``), so its row in ``tenant_usage`` is never waited
for half-way through a transaction (no deadlock between replicas), and a new
command's check sees what every replica committed.
"""

from __future__ import annotations

SQLITE_SIZE = ("(length({row}.document) + coalesce(length({row}.error), 0) + coalesce(length({row}.history), 0)"
               " + coalesce(length({row}.result), 0))")
"""A row's bytes in SQLite: ``length`` of a BLOB is its size (the columns
hold bytes); the bulk columns were NULL in rows of version 0."""

SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant TEXT PRIMARY KEY,
    command_bytes INTEGER NOT NULL  -- of its rows in commands (_tenant_usage)
);
CREATE TRIGGER IF NOT EXISTS commands_usage_inserted AFTER INSERT ON commands BEGIN
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, {SQLITE_SIZE.format(row="NEW")})
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS commands_usage_updated AFTER UPDATE OF tenant, document, error, history, result
ON commands BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - {SQLITE_SIZE.format(row="OLD")}
        WHERE tenant = OLD.tenant;
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, {SQLITE_SIZE.format(row="NEW")})
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS commands_usage_deleted AFTER DELETE ON commands BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - {SQLITE_SIZE.format(row="OLD")}
        WHERE tenant = OLD.tenant;
END;
"""
"""The table and its triggers, in a new database's schema and in the step
that adds them (``_migrations._to_3``): the same text, so both read alike."""

SQLITE_FILL = (f"INSERT INTO tenant_usage (tenant, command_bytes)"
               f" SELECT c.tenant, sum({SQLITE_SIZE.format(row='c')}) FROM commands AS c GROUP BY c.tenant")
"""Every tenant's total counted from its rows (what the triggers keep from
then on): the sizes come from the rows' headers, no value is read."""

_POSTGRES_SIZE = ("octet_length({row}.document) + octet_length({row}.error) + octet_length({row}.history)"
                  " + octet_length({row}.result)")
"""A row's bytes in PostgreSQL (``octet_length`` of a value stored out of line
reads its size, not the value)."""

_POSTGRES_ADD = """
    INSERT INTO tenant_usage AS u (tenant, command_bytes)
    SELECT tenant, sum(size) FROM ({rows}) AS changed (tenant, size) GROUP BY tenant ORDER BY tenant
    ON CONFLICT (tenant) DO UPDATE SET command_bytes = u.command_bytes + excluded.command_bytes;
"""


def _postgres_trigger(name: str, event: str, tables: str, rows: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_POSTGRES_ADD.format(rows=rows)}    RETURN NULL;
END $$;
CREATE TRIGGER {name} AFTER {event} ON commands REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""


POSTGRES_SCHEMA = f"""
CREATE TABLE tenant_usage (
    tenant TEXT PRIMARY KEY,
    command_bytes BIGINT NOT NULL  -- of its rows in commands (_tenant_usage)
);
{_postgres_trigger("commands_usage_inserted", "INSERT", "NEW TABLE AS new_rows",
                   f"SELECT tenant, {_POSTGRES_SIZE.format(row='n')} FROM new_rows AS n")}
{_postgres_trigger("commands_usage_updated", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                   f"SELECT tenant, {_POSTGRES_SIZE.format(row='n')} FROM new_rows AS n UNION ALL"
                   f" SELECT tenant, -({_POSTGRES_SIZE.format(row='o')}) FROM old_rows AS o")}
{_postgres_trigger("commands_usage_deleted", "DELETE", "OLD TABLE AS old_rows",
                   f"SELECT tenant, -({_POSTGRES_SIZE.format(row='o')}) FROM old_rows AS o")}
INSERT INTO tenant_usage (tenant, command_bytes)
SELECT c.tenant, sum({_POSTGRES_SIZE.format(row='c')}) FROM commands AS c GROUP BY c.tenant;
"""
"""Schema version 4: the table, filled from the rows already stored, and its
triggers. The step runs in one transaction, and creating a trigger locks
``commands`` against writes until it commits: no row is missed or counted twice."""

TENANT_COMMAND_BYTES = "SELECT command_bytes FROM tenant_usage WHERE tenant = {mark}"
"""A tenant's bytes of stored commands (no row: none)."""
