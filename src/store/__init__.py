"""Durable state: the SQLite store (deployments, agents, commands, audit).

Writes go through the store actor (``trioscope.actors.store``), which commits
them in groups; reads use ``StoreReader`` on a connection of their own.
"""

from ._ops import AuditEntry as AuditEntry
from ._ops import Conflict as Conflict
from ._ops import ForgetAgents as ForgetAgents
from ._ops import SaveAgent as SaveAgent
from ._ops import SaveCommand as SaveCommand
from ._ops import SaveDeployment as SaveDeployment
from ._ops import Write as Write
from ._reader import StoreReader as StoreReader
from ._reads import BulkPart as BulkPart
from ._reads import CommandPart as CommandPart
from ._reads import StoredCommand as StoredCommand
from ._secret import load_or_create_secret as load_or_create_secret
from ._secret import token_secret as token_secret
from ._sqlite import DATABASE_FILE as DATABASE_FILE
from ._sqlite import SqliteReader as SqliteReader
from ._sqlite import SqliteWriter as SqliteWriter

__all__ = [
    "DATABASE_FILE", "AuditEntry", "BulkPart", "CommandPart", "Conflict", "ForgetAgents", "SaveAgent", "SaveCommand",
    "SaveDeployment", "SqliteReader", "SqliteWriter", "StoreReader", "StoredCommand", "Write", "load_or_create_secret",
    "token_secret",
]
