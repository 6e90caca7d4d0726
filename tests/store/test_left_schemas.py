"""Test schemas a killed run left are dropped when a run begins
(``tests.postgres.forget_left_schemas``): a test drops its own when it ends,
but a run killed midway left its servers' schemas, tables and rows for good."""

from __future__ import annotations

import time

import psycopg

from tests.postgres import create_schema, drop_schema, forget_left_schemas, schema_name


def _schemas(base: str) -> set[str]:
    with psycopg.connect(base) as db:
        return {name for (name,) in db.execute("SELECT nspname FROM pg_namespace")}


def test_only_test_schemas_older_than_the_limit_are_dropped(postgres: str) -> None:
    left = f"t_{int(time.time()) - 7200}_0123456789ab"
    module_left = f"it_{int(time.time()) - 7200}_01234567_0123456789ab"
    recent, other = schema_name("t"), "left_alone_0123456789ab"
    for name in (left, module_left, recent, other):
        create_schema(postgres, name)
    try:
        dropped = forget_left_schemas(postgres)
        assert {left, module_left} <= set(dropped)
        assert recent not in dropped and other not in dropped
        present = _schemas(postgres)
        assert left not in present and module_left not in present
        assert {recent, other} <= present  # made just now (a running test's, perhaps), or no test schema
    finally:
        for name in (left, module_left, recent, other):
            drop_schema(postgres, name)
