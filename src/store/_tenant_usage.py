"""What each tenant's stored commands take: the running total behind the quota
``tenants.max_command_bytes`` (table ``tenant_usage``), in both stores.

A command's bytes are those of its row's four values as stored
(``_command_rows``): the document (its parameters among the small fields),
the error, the history and the result, finished commands' included until they
are pruned; and, from schema version 4 (PostgreSQL's 5), the bytes of the
idempotency keys kept with them (``_idempotency_keys``: what a client stores
with its keys is bounded as its commands are). App statuses (``app_statuses``,
schema version 5, PostgreSQL's 6) are not counted and have no trigger: they
are no commands, and each deployment keeps at most ``commands.max_apps`` of
them (``_ops.SaveAppStatus``). The total is kept by triggers
on those tables (``sqlite_triggers``, ``postgres_triggers``), in the transaction
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


def sqlite_triggers(table: str, size: str, columns: str) -> str:
    """SQLite's triggers that keep the bytes of ``table``'s rows (``size``,
    of a row named ``{row}``; changed when ``columns`` are) in their tenant's total."""
    return f"""
CREATE TRIGGER IF NOT EXISTS {table}_usage_inserted AFTER INSERT ON {table} BEGIN
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, {size.format(row="NEW")})
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS {table}_usage_updated AFTER UPDATE OF {columns}
ON {table} BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - {size.format(row="OLD")}
        WHERE tenant = OLD.tenant;
    INSERT INTO tenant_usage (tenant, command_bytes) VALUES (NEW.tenant, {size.format(row="NEW")})
        ON CONFLICT (tenant) DO UPDATE SET command_bytes = command_bytes + excluded.command_bytes;
END;
CREATE TRIGGER IF NOT EXISTS {table}_usage_deleted AFTER DELETE ON {table} BEGIN
    UPDATE tenant_usage SET command_bytes = command_bytes - {size.format(row="OLD")}
        WHERE tenant = OLD.tenant;
END;
"""


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant TEXT PRIMARY KEY,
    command_bytes INTEGER NOT NULL  -- of its rows in commands (_tenant_usage)
);""" + sqlite_triggers("commands", SQLITE_SIZE, "tenant, document, error, history, result")
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


def postgres_triggers(table: str, size: str) -> str:
    """PostgreSQL's triggers that keep the bytes of ``table``'s rows (``size``,
    of a row named ``{row}``) in their tenant's total: a function and a
    trigger for each of insert, update and delete."""
    def trigger(event: str, done: str, tables: str, rows: str) -> str:
        name = f"{table}_usage_{done}"
        return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_POSTGRES_ADD.format(rows=rows)}    RETURN NULL;
END $$;
CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""
    new, old = size.format(row="n"), size.format(row="o")
    return (trigger("INSERT", "inserted", "NEW TABLE AS new_rows", f"SELECT tenant, {new} FROM new_rows AS n")
            + trigger("UPDATE", "updated", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                      f"SELECT tenant, {new} FROM new_rows AS n UNION ALL SELECT tenant, -({old}) FROM old_rows AS o")
            + trigger("DELETE", "deleted", "OLD TABLE AS old_rows", f"SELECT tenant, -({old}) FROM old_rows AS o"))


POSTGRES_SCHEMA = f"""
CREATE TABLE tenant_usage (
    tenant TEXT PRIMARY KEY,
    command_bytes BIGINT NOT NULL  -- of its rows in commands (_tenant_usage)
);
{postgres_triggers("commands", _POSTGRES_SIZE)}
INSERT INTO tenant_usage (tenant, command_bytes)
SELECT c.tenant, sum({_POSTGRES_SIZE.format(row='c')}) FROM commands AS c GROUP BY c.tenant;
"""
"""Schema version 4: the table, filled from the rows already stored, and its
triggers. The step runs in one transaction, and creating a trigger locks
``commands`` against writes until it commits: no row is missed or counted twice."""

TENANT_COMMAND_BYTES = "SELECT command_bytes FROM tenant_usage WHERE tenant = {mark}"
"""A tenant's bytes of stored commands (no row: none)."""
