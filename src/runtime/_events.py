"""One structured log line per lifecycle event.

Each record carries ``event`` and ``actor`` (the path) as extra fields, so a JSON
formatter can emit them as keys and a human formatter can print a plain sentence.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__.rpartition(".")[0])


def _emit(level: int, event: str, path: str, text: str, exc: BaseException | None = None, **fields: object) -> None:
    if not log.isEnabledFor(level):
        return
    extra = {"event": event, "actor": path, **fields}
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    log.log(level, "%s %s", path, text, extra=extra, exc_info=exc_info)


def started(path: str, kind: str, incarnation: int, *, quiet: bool = False) -> None:
    """``quiet``: at debug level (``Node.comes_and_goes``)."""
    again = "" if incarnation == 1 else f" (incarnation {incarnation})"
    _emit(logging.DEBUG if quiet else logging.INFO, "started", path, f"started [{kind}]{again}", kind=kind, incarnation=incarnation)


def crashed(path: str, kind: str, exc: BaseException, message: object = None, *,
            told_elsewhere: bool = False) -> None:
    """``told_elsewhere`` (``Node.told_elsewhere``): one line at warning level, without the traceback."""
    about = f" handling {type(message).__name__}" if message is not None else ""
    _emit(logging.WARNING if told_elsewhere else logging.ERROR, "crashed", path,
          f"crashed{about}: {type(exc).__name__}: {exc}", None if told_elsewhere else exc,
          kind=kind, error=type(exc).__name__)


def refused(path: str, kind: str, refusal: Exception, message: object) -> None:
    _emit(logging.DEBUG, "refused", path, f"refused {type(message).__name__} (told, nobody to answer): "
          f"{type(refusal).__name__}: {refusal}", kind=kind, error=type(refusal).__name__)


def start_failed(path: str, kind: str, exc: BaseException, *, told_elsewhere: bool = False) -> None:
    """``told_elsewhere``: as ``crashed``'s."""
    _emit(logging.WARNING if told_elsewhere else logging.ERROR, "start_failed", path,
          f"failed to start: {type(exc).__name__}: {exc}", None if told_elsewhere else exc,
          kind=kind, error=type(exc).__name__)


def restarting(path: str, restarts: int, delay: float, because: str) -> None:
    when = f" in {delay:.3g}s" if delay > 0 else ""
    _emit(logging.WARNING, "restarted", path, f"restarting{when} (restart {restarts}; {because})",
          restarts=restarts, delay=delay)


def gave_up(path: str, why: str) -> None:
    _emit(logging.ERROR, "gave_up", path, f"gave up: {why}", why=why)


def stopped(path: str, kind: str, reason: str, *, quiet: bool = False) -> None:
    """``quiet``: at debug level (``Node.comes_and_goes``)."""
    _emit(logging.DEBUG if quiet else logging.INFO, "stopped", path, f"stopped ({reason})", kind=kind, reason=reason)


def killed(path: str, timeout: float) -> None:
    _emit(logging.WARNING, "killed", path, f"did not stop within {timeout:g}s; cancelled", timeout=timeout)
