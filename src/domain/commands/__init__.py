"""Commands for agents: the status state machine, command values, one
deployment's delivery order, what each request changes of a command, and the
wire requests. Pure: time and ids are passed in."""

from ._changes import ACKNOWLEDGED_BY_POLL as ACKNOWLEDGED_BY_POLL
from ._changes import ACKNOWLEDGED_BY_REPORT as ACKNOWLEDGED_BY_REPORT
from ._changes import AGENT_GONE as AGENT_GONE
from ._changes import AGENT_RETIRED as AGENT_RETIRED
from ._changes import NOT_ACKNOWLEDGED as NOT_ACKNOWLEDGED
from ._changes import POLL_CLOSED as POLL_CLOSED
from ._changes import TARGET_RETIRED as TARGET_RETIRED
from ._changes import UNACKNOWLEDGED_TWICE as UNACKNOWLEDGED_TWICE
from ._changes import Change as Change
from ._changes import Executed as Executed
from ._changes import ReportConflict as ReportConflict
from ._changes import cancel_change as cancel_change
from ._changes import confirm_change as confirm_change
from ._changes import deadline_change as deadline_change
from ._changes import delivery_change as delivery_change
from ._changes import next_sequence as next_sequence
from ._changes import orphaned_change as orphaned_change
from ._changes import report_change as report_change
from ._changes import return_change as return_change
from ._changes import undelivered_change as undelivered_change
from ._changes import untargetable_change as untargetable_change
from ._deadline_watch import DeadlineWatch as DeadlineWatch
from ._events import DEADLINE_EXPIRY as DEADLINE_EXPIRY
from ._events import EVENT_OUTCOME_BYTES as EVENT_OUTCOME_BYTES
from ._events import TIMED_OUT as TIMED_OUT
from ._events import announced_events as announced_events
from ._events import change_events as change_events
from ._events import command_event as command_event
from ._model import HISTORY_FIRST as HISTORY_FIRST
from ._model import HISTORY_LAST as HISTORY_LAST
from ._model import Command as Command
from ._model import History as History
from ._model import command_document as command_document
from ._model import command_from_document as command_from_document
from ._model import Priority as Priority
from ._model import StatusChange as StatusChange
from ._model import new_command as new_command
from ._outcome import FINAL_STATUSES as FINAL_STATUSES
from ._outcome import ReportOutcome as ReportOutcome
from ._outcome import delivered_to as delivered_to
from ._outcome import given_back_to as given_back_to
from ._outcome import holder_of as holder_of
from ._outcome import report_outcome as report_outcome
from ._outcome import repeats_outcome as repeats_outcome
from ._outcome import returned_undelivered as returned_undelivered
from ._queue import CANCEL_PREFIX as CANCEL_PREFIX
from ._queue import CancelNotice as CancelNotice
from ._queue import Delivery as Delivery
from ._queue import FINISHED_KEPT as FINISHED_KEPT
from ._queue import DeploymentQueue as DeploymentQueue
from ._queue import cancel_notice_id as cancel_notice_id
from ._queue import next_wake as next_wake
from ._queue import parameters_bytes as parameters_bytes
from ._status import OPEN_STATUSES as OPEN_STATUSES
from ._status import TRANSITIONS as TRANSITIONS
from ._status import CommandEvent as CommandEvent
from ._status import CommandStatus as CommandStatus
from ._status import IllegalTransition as IllegalTransition
from ._status import next_status as next_status
from ._wire import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from ._wire import MAX_PARAMETERS_BYTES as MAX_PARAMETERS_BYTES
from ._wire import MAX_ESTIMATED_DURATION as MAX_ESTIMATED_DURATION
from ._wire import MAX_SCHEDULE_AHEAD as MAX_SCHEDULE_AHEAD
from ._wire import AgentRegistration as AgentRegistration
from ._wire import CommandMetadata as CommandMetadata
from ._wire import CommandReport as CommandReport
from ._wire import CreateCommand as CreateCommand
from ._wire import MAX_LOG_BATCH as MAX_LOG_BATCH
from ._wire import LogBatch as LogBatch
from ._wire import LogEntry as LogEntry

__all__ = [
    "ACKNOWLEDGED_BY_POLL", "ACKNOWLEDGED_BY_REPORT", "AGENT_GONE", "AGENT_RETIRED", "NOT_ACKNOWLEDGED", "POLL_CLOSED",
    "TARGET_RETIRED", "UNACKNOWLEDGED_TWICE", "FINISHED_KEPT", "Change", "Executed", "ReportConflict",
    "cancel_change", "confirm_change", "deadline_change", "delivery_change", "given_back_to", "holder_of",
    "next_sequence", "next_wake", "orphaned_change", "report_change", "return_change", "undelivered_change",
    "untargetable_change",
    "CANCEL_PREFIX", "DEADLINE_EXPIRY", "EVENT_OUTCOME_BYTES", "FINAL_STATUSES", "HISTORY_FIRST", "HISTORY_LAST", "MAX_JSON_DEPTH", "MAX_LOG_BATCH", "MAX_ESTIMATED_DURATION", "MAX_PARAMETERS_BYTES", "MAX_SCHEDULE_AHEAD",
    "OPEN_STATUSES", "TRANSITIONS", "AgentRegistration",
    "CancelNotice", "Command", "CommandEvent", "CommandMetadata", "CommandReport", "CommandStatus", "CreateCommand",
    "DeadlineWatch", "Delivery", "DeploymentQueue", "History", "IllegalTransition", "LogBatch", "LogEntry", "Priority", "ReportOutcome", "StatusChange",
    "TIMED_OUT",
    "announced_events", "cancel_notice_id", "change_events", "command_document", "command_event", "command_from_document", "delivered_to",
    "new_command", "next_status", "parameters_bytes", "repeats_outcome", "report_outcome", "returned_undelivered",
]
