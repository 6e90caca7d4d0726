"""``trioscope serve --workers N``: N serving processes on one port, supervised
by a small parent process (see ``_parent`` for how the port is shared)."""

from ._child import WorkerStart as WorkerStart
from ._child import worker_main as worker_main
from ._parent import run_workers as run_workers
from ._policy import GiveUp as GiveUp
from ._policy import Restart as Restart
from ._policy import after_exit as after_exit
from ._policy import describe_exit as describe_exit
from ._policy import pool_exit_code as pool_exit_code
from ._policy import workers_refusal as workers_refusal

__all__ = [
    "GiveUp",
    "Restart",
    "WorkerStart",
    "after_exit",
    "describe_exit",
    "pool_exit_code",
    "run_workers",
    "worker_main",
    "workers_refusal",
]
