"""Durable state: deployments, agents, commands, audit.

The rest of the server sees one protocol: writes as data (``Write``s) that the
store actor (``trioscope.actors.store``) commits in groups through a
``StoreWriter`` (``open_writer``), and named reads on a ``StoreReader``. SQLite
is the implementation behind them; only this package and the composition root
(``server.py``, ``cli.py``) name it.
"""

from ._ops import AuditEntry as AuditEntry
from ._ops import Conflict as Conflict
from ._ops import ForgetAgents as ForgetAgents
from ._ops import Rejected as Rejected
from ._ops import SaveAgent as SaveAgent
from ._ops import SaveCommand as SaveCommand
from ._ops import SaveDeployment as SaveDeployment
from ._ops import Write as Write
from ._limits import AgentAndUserLimits as AgentAndUserLimits
from ._limits import RateBudget as RateBudget
from ._limits import ReplayIds as ReplayIds
from ._limits import open_limits as open_limits
from ._limits import postgres_url as postgres_url
from ._migrations import NewerSchema as NewerSchema
from ._reader import StoreReader as StoreReader
from ._reader import StoreWriter as StoreWriter
from ._reader import open_writer as open_writer
from ._reads import AuditRecord as AuditRecord
from ._reads import BulkPart as BulkPart
from ._reads import CommandPart as CommandPart
from ._reads import StoredCommand as StoredCommand
from ._secret import load_or_create_secret as load_or_create_secret
from ._secret import token_secret as token_secret
from ._sqlite import DATABASE_FILE as DATABASE_FILE
from ._sqlite import SqliteReader as SqliteReader
from ._sqlite import SqliteWriter as SqliteWriter

__all__ = [
    "DATABASE_FILE", "AgentAndUserLimits", "AuditEntry", "AuditRecord", "BulkPart", "CommandPart", "Conflict", "ForgetAgents", "NewerSchema", "RateBudget", "Rejected", "ReplayIds",
    "SaveAgent", "SaveCommand", "SaveDeployment", "SqliteReader", "SqliteWriter", "StoreReader", "StoreWriter",
    "StoredCommand", "Write", "load_or_create_secret", "open_limits", "open_writer", "postgres_url", "token_secret",
]
