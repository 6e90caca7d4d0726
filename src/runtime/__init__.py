"""A supervised actor runtime for Trio, after Erlang/OTP.

Actors handle one message at a time from a bounded mailbox; supervisors start
them in order, restart them per strategy and restart type within a restart
intensity, and stop them in reverse order. The mailbox belongs to the supervisor,
so messages queued behind a crash are handled by the restarted actor.

Nothing here knows about trioscope.
"""

from ._actor import Actor as Actor
from ._actor import ActorContext as ActorContext
from ._actor import Forward as Forward
from ._actor import Later as Later
from ._actor import Terminated as Terminated
from ._cutoff import Cutoff as Cutoff
from ._exceptions import ActorFailed as ActorFailed
from ._exceptions import ActorNotFound as ActorNotFound
from ._exceptions import ActorStopped as ActorStopped
from ._exceptions import ActorSystemError as ActorSystemError
from ._exceptions import AskTimeout as AskTimeout
from ._exceptions import DuplicateChild as DuplicateChild
from ._exceptions import LinkedActorTerminated as LinkedActorTerminated
from ._exceptions import MailboxFull as MailboxFull
from ._exceptions import RestartIntensityExceeded as RestartIntensityExceeded
from ._exceptions import StartFailed as StartFailed
from ._exceptions import TooManyChildren as TooManyChildren
from ._exceptions import UnhandledMessage as UnhandledMessage
from ._exceptions import WorkAbandoned as WorkAbandoned
from ._handoff import Handoff as Handoff
from ._intensity import Backoff as Backoff
from ._intensity import RestartHistory as RestartHistory
from ._intensity import intensity_exceeded as intensity_exceeded
from ._intensity import record_restart as record_restart
from ._kept import Kept as Kept
from ._published import Published as Published
from ._ref import ActorRef as ActorRef
from ._specs import ActorSpec as ActorSpec
from ._specs import ChildSpec as ChildSpec
from ._specs import IntensityScope as IntensityScope
from ._specs import Restart as Restart
from ._specs import Strategy as Strategy
from ._specs import SupervisorSpec as SupervisorSpec
from ._specs import dynamic_supervisor as dynamic_supervisor
from ._stats import ActorStats as ActorStats
from ._stats import SupervisorStats as SupervisorStats
from ._stats import SystemStats as SystemStats
from ._steps import Slicer as Slicer
from ._steps import in_steps as in_steps
from ._supervisor import SupervisorRef as SupervisorRef
from ._timers import MIN_TIMER as MIN_TIMER
from ._timers import Alarm as Alarm
from ._timers import Sweep as Sweep
from ._timers import Timer as Timer
from ._timers import Waiting as Waiting
from ._system import ActorSystem as ActorSystem
from ._system import open_actor_system as open_actor_system
from ._threads import in_thread as in_thread

__all__ = [
    "Actor",
    "ActorContext",
    "ActorFailed",
    "ActorNotFound",
    "ActorRef",
    "ActorSpec",
    "ActorStats",
    "ActorStopped",
    "ActorSystem",
    "ActorSystemError",
    "Alarm",
    "AskTimeout",
    "Backoff",
    "ChildSpec",
    "Cutoff",
    "DuplicateChild",
    "Forward",
    "Handoff",
    "IntensityScope",
    "Kept",
    "Later",
    "LinkedActorTerminated",
    "MIN_TIMER",
    "MailboxFull",
    "Published",
    "Restart",
    "RestartHistory",
    "RestartIntensityExceeded",
    "Slicer",
    "StartFailed",
    "Strategy",
    "SupervisorRef",
    "SupervisorSpec",
    "SupervisorStats",
    "Sweep",
    "SystemStats",
    "Terminated",
    "Timer",
    "TooManyChildren",
    "UnhandledMessage",
    "Waiting",
    "WorkAbandoned",
    "dynamic_supervisor",
    "in_steps",
    "in_thread",
    "intensity_exceeded",
    "open_actor_system",
    "record_restart",
]
