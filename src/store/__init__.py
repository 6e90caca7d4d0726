"""Durable state: deployments, agents, commands, audit.

The rest of the server sees one protocol: writes as data (``Write``s) that the
store actor (``trioscope.actors.store``) commits in groups through a
``StoreWriter`` (``open_writer``), and named reads on a ``StoreReader``. Behind
them is an SQLite file (the default) or PostgreSQL (shared by replicas, which
hear of each other's changes on ``CHANGES_CHANNEL``), chosen by the location
given (``resolve_database``); only this package names either driver.

The names that need psycopg (``PostgresReader``, ``PostgresWriter``,
``follow_changes``, and ``copy_store`` with its outcomes, which reads or
writes either database) are imported when first used (``trioscope.lazy_names``):
a server on SQLite, the embedded default, never loads psycopg. Within the
package the same holds (``_reader``, ``_limits``, ``_ops``).
"""

import typing

import trioscope.lazy_names

from ._ops import AuditEntry as AuditEntry
from ._ops import Conflict as Conflict
from ._ops import ForgetAgents as ForgetAgents
from ._ops import KeyTaken as KeyTaken
from ._ops import MaybeCommitted as MaybeCommitted
from ._ops import NoRoom as NoRoom
from ._ops import StoreMoved as StoreMoved
from ._ops import ForeignDatabase as ForeignDatabase
from ._ops import NewerSchema as NewerSchema
from ._ops import OpenCommandsQuota as OpenCommandsQuota
from ._ops import Outdated as Outdated
from ._ops import OverCommandBytes as OverCommandBytes
from ._ops import OverQuota as OverQuota
from ._ops import Rejected as Rejected
from ._ops import SaveAgent as SaveAgent
from ._ops import SaveAppStatus as SaveAppStatus
from ._ops import SaveCommand as SaveCommand
from ._ops import SaveDeployment as SaveDeployment
from ._ops import SaveIdempotencyKey as SaveIdempotencyKey
from ._ops import Unavailable as Unavailable
from ._ops import Write as Write
from ._ops import database_busy as database_busy
from ._ops import database_down as database_down
from ._ops import store_damaged as store_damaged
from ._ops import store_failing as store_failing
from ._ops import store_full as store_full
from ._changes import CHANGES_CHANNEL as CHANGES_CHANNEL
from ._changes import PAYLOAD_LIMIT as PAYLOAD_LIMIT
from ._changes import Change as Change
from ._changes import ChangeBatch as ChangeBatch
from ._changes import decode_change as decode_change
from ._changes import encode_change as encode_change
from ._limits import AgentAndUserLimits as AgentAndUserLimits
from ._limits import RateBudget as RateBudget
from ._limits import ReplayIds as ReplayIds
from ._limits import open_limits as open_limits
from ._changes import Connected as Connected
from ._changes import FeedEvent as FeedEvent
from ._reader import Database as Database
from ._reader import StoreReader as StoreReader
from ._reader import StoreWriter as StoreWriter
from ._reader import describe_database as describe_database
from ._reader import postgres_url as postgres_url
from ._reader import open_writer as open_writer
from ._reader import resolve_database as resolve_database
from ._reader import sqlite_path as sqlite_path
from ._reader import stored_schema as stored_schema
from ._read_results import AuditRecord as AuditRecord
from ._read_results import BulkPart as BulkPart
from ._read_results import CommandPart as CommandPart
from ._read_results import StoredCommand as StoredCommand
from ._secret import load_or_create_secret as load_or_create_secret
from ._secret import token_secret as token_secret
from ._sqlite import DATABASE_FILE as DATABASE_FILE
from ._disk_room import DiskRoom as DiskRoom
from ._disk_room import disk_note as disk_note
from ._sqlite import SqliteReader as SqliteReader
from ._sqlite import SqliteWriter as SqliteWriter
from ._sqlite import StoreOpen as StoreOpen
from ._secret import open_to_others as open_to_others
from ._secret import store_lost as store_lost
from ._sqlite import lock_sqlite as lock_sqlite

if typing.TYPE_CHECKING:
    from ._copy import CopyCounts as CopyCounts
    from ._copy import CopyFailed as CopyFailed
    from ._copy import CopyRefused as CopyRefused
    from ._copy import copy_store as copy_store
    from ._listen import follow_changes as follow_changes
    from ._postgres import PostgresWriter as PostgresWriter
    from ._postgres_reader import PostgresReader as PostgresReader

__getattr__ = trioscope.lazy_names.lazy_names(__name__, {
    "CopyCounts": "._copy", "CopyFailed": "._copy", "CopyRefused": "._copy", "copy_store": "._copy",
    "follow_changes": "._listen", "PostgresWriter": "._postgres", "PostgresReader": "._postgres_reader",
})
"""The names whose modules import psycopg (see the docstring)."""


__all__ = [
    "CHANGES_CHANNEL", "DATABASE_FILE", "DiskRoom", "disk_note", "lock_sqlite", "StoreOpen", "open_to_others", "PAYLOAD_LIMIT", "AgentAndUserLimits", "AuditEntry", "AuditRecord", "BulkPart", "Change",
    "ChangeBatch",
    "CommandPart", "Conflict", "Connected", "CopyCounts", "CopyFailed", "CopyRefused", "Database", "FeedEvent",
    "ForgetAgents", "KeyTaken", "MaybeCommitted", "NoRoom", "StoreMoved", "store_damaged", "store_failing", "ForeignDatabase", "NewerSchema", "OpenCommandsQuota", "Outdated", "OverCommandBytes", "OverQuota",
    "PostgresReader", "PostgresWriter",
    "RateBudget", "Rejected", "ReplayIds",
    "SaveAgent", "SaveAppStatus", "SaveCommand", "SaveDeployment", "SaveIdempotencyKey", "SqliteReader", "SqliteWriter",
    "StoreReader", "StoreWriter",
    "StoredCommand", "Unavailable", "Write", "copy_store", "database_busy", "database_down", "decode_change",
    "describe_database", "encode_change",
    "follow_changes", "load_or_create_secret", "open_limits", "open_writer", "postgres_url", "resolve_database", "store_full",
    "sqlite_path", "store_lost", "stored_schema", "token_secret",
]
