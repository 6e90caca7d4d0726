"""The runtime's exceptions: one type per situation a caller can act on."""

from __future__ import annotations


class ActorSystemError(Exception):
    """Base class of every exception the actor runtime raises on purpose."""


class MailboxFull(ActorSystemError):
    """``tell``/``ask`` found the actor's bounded mailbox full.

    The caller sheds the load (the HTTP edge answers 503 + Retry-After) or uses
    ``await ref.send(...)`` to wait for room instead.
    """

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(f"mailbox of {path} is full ({capacity} messages)")
        self.path = path
        self.capacity = capacity


class ActorStopped(ActorSystemError):
    """The actor has terminated for good: its mailbox accepts nothing more.

    Raised by ``tell``/``send``/``ask`` on a terminated actor, and to every asker
    whose message was still queued when the actor terminated. ``cause``: the
    exception its start failed with, when that is why it terminated (its
    queued messages were never handled: what kept it from starting, a
    database away, is what their askers are answered for); None otherwise.
    """

    def __init__(self, path: str, cause: BaseException | None = None) -> None:
        super().__init__(f"actor {path} is stopped" if cause is None else
                         f"actor {path} is stopped: it failed to start: {type(cause).__name__}: {cause}")
        self.path = path
        self.cause = cause


class ActorFailed(ActorSystemError):
    """The actor raised while handling this ask; it is being restarted (or not,
    per its restart type). ``cause`` is the exception it raised."""

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(f"actor {path} failed: {type(cause).__name__}: {cause}")
        self.path = path
        self.cause = cause


class AskTimeout(ActorSystemError):
    """No reply within the ask's deadline (mailbox wait and handling together).

    ``taken`` says which: False, the actor had not started on the message and
    never will (it is dropped unhandled, a dead letter): nothing happened, a
    retry is safe. True, the actor was handling it: it finishes, its reply is
    discarded, and whether it took effect is unknown to the asker."""

    def __init__(self, path: str, timeout: float, *, taken: bool = False) -> None:
        where = "while handling the message" if taken else "before taking the message"
        super().__init__(f"no reply from {path} within {timeout:g}s ({where})")
        self.path = path
        self.timeout = timeout
        self.taken = taken


class ActorNotFound(ActorSystemError, LookupError):
    """No live actor or supervisor has this path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no actor at {path}")
        self.path = path


class DuplicateChild(ActorSystemError):
    """A supervisor already has a live child of this name."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} already exists")
        self.path = path


class TooManyChildren(ActorSystemError):
    """A dynamic supervisor is at its ``max_children`` limit."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"{path} already supervises its limit of {limit} children")
        self.path = path
        self.limit = limit


class StartFailed(ActorSystemError):
    """An actor's ``on_start`` (or a supervisor's first start of its children) raised.
    ``cause`` is the original exception."""

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(f"{path} failed to start: {type(cause).__name__}: {cause}")
        self.path = path
        self.cause = cause


class RestartIntensityExceeded(ActorSystemError):
    """A supervisor saw more restarts than its intensity allows within its period,
    stopped its children and gave up; its parent decides what happens next."""

    def __init__(self, path: str, intensity: int, period: float) -> None:
        super().__init__(
            f"{path} gave up: more than {intensity} restarts within {period:g}s"
        )
        self.path = path
        self.intensity = intensity
        self.period = period


class UnhandledMessage(ActorSystemError, TypeError):
    """An actor received a message type it has no handling for."""

    def __init__(self, path: str, message: object) -> None:
        super().__init__(f"{path} cannot handle {type(message).__name__}")
        self.path = path
        self.message = message


class LinkedActorTerminated(ActorSystemError):
    """An actor this one is linked to (``ActorContext.link``) terminated
    abnormally: this one crashes with it, and its supervisor decides."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"linked actor {path} terminated: {reason}")
        self.path = path
        self.reason = reason


class WorkAbandoned(ActorSystemError):
    """The system's cutoff came (the end of a shutdown) while an actor waited
    for work it shields from cancellation (``ActorContext.in_thread``): the
    wait was given up, and the work goes on alone, or not, unseen. Whether it
    took effect is unknown: nothing may report it done."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path} gave up waiting for {what} at the system's cutoff, the end of its shutdown")
        self.path = path
        self.what = what
