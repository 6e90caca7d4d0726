"""The probe as its deployment's command agent: enrollment, then a signed long
poll, each command run against the container engine under its timeout, and a
progress report and a result for each — the requests of the TryDirect ``status``
agent (``Authorization: Bearer``, ``X-Agent-Id``), signed over the whole request
(RFC 9421, ``trioscope.wire.request_signing``) rather than the body alone."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from . import _signing
from ._answers import json_of
from ._command_item import MAX_COMMAND_ID, kind_of, timeout_of, usable_id
from ._engine import EngineUnreachable, connect
from ._executor import CHANGES_CONTAINERS, DEFAULT_ALLOWED, MAX_EXEC_SECONDS, ControlError, check, execute
from ._follow import MAX_FOLLOWS, STREAM_TIMEOUT, LogFollow
from ._pending import PendingReports
from ._refusals import (
    REFUSED_RETRY, REFUSING, RETRIABLE, Backoff, Link, Refused, ServerUnavailable, Standing, answer_shown, error_of,
    error_text, has_answered, refusal, report_refused_for_good, report_taken, send, transport_problem,
)
from ._state_dir import read_private_file

if TYPE_CHECKING:
    import docker  # loaded by the first command's client (``_engine.connect``)

log = logging.getLogger("trioscope_probe")

POLL_SECONDS = 60
RECOVERY_POLL_SECONDS = 1
"""The poll after a failure: the server's answer within a second says polling
works again (a long poll would say it only when it ends)."""
EARLY_IN_A_ROW = 3
"""Polls in a row answered early (``PollPace``) before the probe says so: one
may end early as a server stops."""
REPORT_PATIENCE = 15 * 60
"""Seconds a report is tried again while the server is away or busy (backoff
capped at 30 s). Twelve attempts were ~100 s: a server restarted or upgraded
for longer lost the result of a command that had run. A final report not
taken by then stays in the state directory (``PendingReports``), sent again
when the probe starts."""
PROGRESS_PATIENCE = 120
"""The same for a progress report (``executing``): the command waits for it
before it runs, and one that runs much later than it was sent may act on a
container the operator has given up on."""
FINAL = ("completed", "failed", "cancelled")
EXEC_GRACE = 5
"""Seconds an exec's thread is waited for past its time limit, in which it
kills the exec's process and says so (``_executor.exec_``)."""
COMMAND_THREADS = 8
"""Worker threads commands may hold, apart from Trio's default pool (the
collection's). A command that timed out leaves its thread waiting on the
engine (a stop of a container that ignores SIGTERM waits out its grace
period): 42 of them took every default thread, and no report went for a
minute; now they wait on each other only."""


@attrs.define
class PollPace:
    """How soon the next poll goes after one that brought no command. A
    trioscope server holds such a poll for the time asked; one that answers
    sooner than half of it (a proxy, another server at ``--server``, answering
    204 or ``{"item": null}`` at once) was polled ~320 times a second, each
    signed, in silence. Early answers are waited between with backoff (at
    most a minute), and said once ``EARLY_IN_A_ROW`` came in a row."""

    backoff: Backoff = attrs.field(factory=Backoff)
    early: int = 0
    """Empty answers in a row that came early."""

    def note(self, asked: float, held: float) -> bool:
        """A poll of ``asked`` seconds answered without a command after ``held``
        seconds; whether the probe now says that the server answers early."""
        if held >= asked / 2:
            self.early = 0
            self.backoff.reset()
            return False
        self.early += 1
        return self.early == EARLY_IN_A_ROW

    def command(self) -> None:
        """A poll brought a command: the next goes at once."""
        self.early = 0
        self.backoff.reset()

    def delay(self) -> float:
        """Seconds before the next poll: none after one held as asked."""
        return self.backoff.next() if self.early else 0.0


@attrs.frozen
class Credentials:
    deployment_hash: str
    agent_id: str
    agent_token: str = attrs.field(repr=False)


def token_fingerprint(enrollment_token: str) -> str:
    """What the credentials file keeps of the enrollment token that made them:
    enough to tell a new token from the spent one, nothing to enroll with."""
    return hashlib.sha256(enrollment_token.encode()).hexdigest()


def load_credentials(path: Path, deployment_hash: str, enrollment_token: str | None = None) -> Credentials | None:
    """The saved credentials for ``deployment_hash``; None if there are none, or
    they are another deployment's, or ``enrollment_token`` is not the token
    they were enrolled with (a new token given to a probe whose agent was
    decommissioned or replaced: it must be used, not the dead credentials).

    Raises:
        ControlError: the file exists but is not a credentials file, or not
            one of this user's that only it may read (``read_private_file``).
    """
    try:
        raw = read_private_file(path)
        if raw is None:
            return None  # (a state dir that cannot be used is said before enrolling)
        saved = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read {path}: {exc}; fix or delete it (then enroll again)") from None
    fields = ("deployment_hash", "agent_id", "agent_token")
    if not (isinstance(saved, dict) and all(isinstance(saved.get(f), str) for f in fields)):
        raise ControlError(f"{path} is not a credentials file (it needs {', '.join(fields)}); "
                           "fix or delete it (then enroll again)")
    if saved["deployment_hash"] != deployment_hash:
        return None
    if enrollment_token is not None and saved.get("enrollment_token_sha256") != token_fingerprint(enrollment_token):
        return None
    return Credentials(deployment_hash, saved["agent_id"], saved["agent_token"])


def check_writable(directory: Path) -> None:
    """Fail before enrolling, not after: an enrollment token works once, and
    credentials that cannot be saved would be lost with it.

    Raises:
        ControlError: ``directory`` cannot be created or written.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds agent tokens: the owner's only
        # A name of its own, made O_EXCL: never written through whatever stands at a name known in advance.
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ControlError(f"cannot keep credentials in {directory}: {exc}") from None


def save_credentials(path: Path, credentials: Credentials, enrollment_token: str | None = None) -> None:
    """Written 0600 (in a directory created 0700) and renamed into place: a crash
    leaves the old file or the new one. With the fingerprint of the
    ``enrollment_token`` used, so that a new token is told from it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)  # a leftover one keeps its own mode: O_CREAT would not apply 0600
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        fingerprint = {} if enrollment_token is None else {"enrollment_token_sha256": token_fingerprint(enrollment_token)}
        json.dump({**attrs.asdict(credentials), **fingerprint}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


async def enroll(client: httpx.AsyncClient, deployment_hash: str, enrollment_token: str,
                 capabilities: list[str]) -> Credentials:
    """One enrollment attempt.

    Raises:
        ServerUnavailable: the server is away or asks us to come back (try again).
        ControlError: the server refused the enrollment (trying again will not help).
    """
    try:
        response = await client.post("/api/v1/agent/register", json={
            "deployment_hash": deployment_hash, "enrollment_token": enrollment_token, "capabilities": capabilities,
            "agent_version": "trioscope-probe", "system_info": {"os": os.uname().sysname}})
    except httpx.TransportError as exc:
        raise ServerUnavailable(transport_problem(exc)) from None
    if response.status_code in RETRIABLE:
        raise ServerUnavailable(f"enrollment answered {response.status_code}")
    if response.status_code != 201:
        raise ControlError(f"enrollment refused ({response.status_code}): {error_text(response)}")
    body = _json_object(response)
    if not (isinstance(body.get("agent_id"), str) and isinstance(body.get("agent_token"), str)):
        raise ControlError(f"enrollment answered without agent_id and agent_token: {error_text(response)}")
    return Credentials(deployment_hash, body["agent_id"], body["agent_token"])


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object (a proxy's HTML page, say, is a ControlError)."""
    try:
        body = json_of(response)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ControlError(f"{response.request.url.path} answered {response.status_code} without a JSON object: "
                           f"{error_text(response)[:200]}")
    return body


def signed_request(client: httpx.AsyncClient, method: str, path: str, credentials: Credentials, body: bytes = b"",
                   *, headers: dict[str, str] | None = None, timeout: float | None = None) -> httpx.Request:
    """``_signing.signed_request`` with these credentials."""
    return _signing.signed_request(client, method, path, agent_id=credentials.agent_id, token=credentials.agent_token,
                                   body=body, headers=headers, timeout=timeout)


class CommandAgent:
    """Polls for the deployment's commands and runs them.

    Args:
        containers_changed: called once a control that changes containers
            (``CHANGES_CONTAINERS``) has run, failed or timed out (a stop that
            timed out here may still have stopped the container): the probe's
            publisher then reports at once (``ReportRequests.ask``), so the
            topology shows the new state without waiting for the interval.
    """

    def __init__(self, client: httpx.AsyncClient, credentials: Credentials, docker_host: str | None,
                 allowed: tuple[str, ...] = DEFAULT_ALLOWED, *,
                 containers_changed: Callable[[], None] | None = None,
                 pending: PendingReports | None = None) -> None:
        self.client = client
        self.pending = pending
        """Where final reports wait until the server has them (None: in memory only)."""
        self.credentials = credentials
        self.docker_host = docker_host
        self.allowed = allowed
        self.containers_changed = containers_changed
        self.threads = trio.CapacityLimiter(COMMAND_THREADS)
        """What commands' calls to the engine run in (``COMMAND_THREADS``)."""
        self.follows: dict[str, trio.CancelScope] = {}
        """Log follows running beside the poll (``docker.logs`` with ``follow``), by command id."""
        self.cancel_asked: set[str] = set()
        """Follows stopped by a cancel from the server (reported ``cancelled``, not ``completed``)."""

    async def run(self) -> None:
        # Follows run for minutes beside the poll loop, which goes on taking
        # commands (their cancels among them); they end with it.
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            if self.pending is not None:
                nursery.start_soon(self._send_kept, self.pending)
            await self._poll_loop()

    async def _send_kept(self, pending: PendingReports) -> None:
        """The final reports an earlier run of the probe could not send."""
        for path in await trio.to_thread.run_sync(pending.waiting):
            raw = await trio.to_thread.run_sync(pending.read, path)  # one at a time in memory
            try:
                body = json.loads(raw) if raw is not None else None
            except ValueError:
                continue
            if isinstance(body, dict) and isinstance(body.get("command_id"), str):
                log.info("sending the report of %s kept since an earlier run", body["command_id"])
                await self._report(body, kept=True)

    async def _poll_loop(self) -> None:
        log.info("polling for commands for deployment %s as agent %s", self.credentials.deployment_hash,
                 self.credentials.agent_id)
        standing = Standing(Link.CONNECTED)
        pace = PollPace()
        while True:
            asked = POLL_SECONDS if standing.state is Link.CONNECTED else RECOVERY_POLL_SECONDS
            started = trio.current_time()
            try:
                item = await self._poll(asked)
            except Refused as exc:
                if standing.note(exc, trio.current_time()):
                    hint = ("; enroll the probe again (restart it with a new enrollment token: "
                            "--enrollment-token-file or the env TRIOSCOPE_PROBE_ENROLLMENT_TOKEN)"
                            if exc.for_good and exc.status in (401, 410) else "")
                    log.error("command polling refused (%s)%s; %s%s", exc, hint, exc.plan, standing.summary)
                await trio.sleep(standing.delay())
                continue
            except (httpx.TransportError, ControlError) as exc:
                if standing.note(Link.UNREACHABLE, trio.current_time()):
                    problem = (transport_problem(exc, answered=has_answered(self.client))
                               if isinstance(exc, httpx.TransportError) else str(exc))
                    log.warning("command polling failed (%s); retrying with backoff%s", problem, standing.summary)
                await trio.sleep(standing.delay())
                continue
            if standing.note(Link.CONNECTED, trio.current_time()):
                log.info("command polling works again%s", standing.summary)
            if item is None:
                if pace.note(asked, trio.current_time() - started):
                    log.warning("the server answers the command poll at once, with no command, where it holds it "
                                "up to %d s (a proxy in front of it, or no trioscope server at --server?); polling "
                                "with backoff, up to a minute apart, while it does", asked)
                await trio.sleep(pace.delay())
            else:
                pace.command()
                try:
                    await self._run_command(item)
                except Exception as exc:  # one command must never end the probe
                    log.error("command %s could not be run: %s: %s", item.get("command_id"), type(exc).__name__,
                              exc, exc_info=exc)

    async def _poll(self, seconds: int = POLL_SECONDS) -> dict[str, Any] | None:
        """The next command, or None if none came within ``seconds``.

        Raises:
            Refused: the server refuses this agent (``REFUSING``).
            ControlError: any other answer but a command or none.
            httpx.TransportError: the server is away.
        """
        path = f"/api/v1/agent/commands/wait/{self.credentials.deployment_hash}?timeout={seconds}"
        response = await send(self.client, lambda: signed_request(self.client, "GET", path, self.credentials,
                                                                   timeout=seconds + 10))
        if response.status_code == 204:
            return None
        if response.status_code in REFUSING:
            raise refusal(response, "command poll")
        if response.status_code != 200:
            raise ControlError(f"poll answered {response.status_code}: {error_text(response)[:200]}")
        item = _json_object(response).get("item")
        return item if isinstance(item, dict) and item.get("command_id") else None

    async def _report(self, body: dict[str, Any], *, kept: bool = False) -> None:
        """Send a progress or final report until the server takes it
        (``report_taken``: its own answer, not any 2xx) or says it never will
        (``report_refused_for_good``); meanwhile (the server away or busy, a
        proxy's page, even one answered 200, a redirect, a refusal that time mends)
        try again with backoff, and every ``REFUSED_RETRY`` while the agent's
        credentials are refused, for ``REPORT_PATIENCE`` (a progress report
        ``PROGRESS_PATIENCE``): a lost final report leaves the command
        executing until it times out. A final one is kept in the state
        directory meanwhile (``pending``), and after, until a start of the
        probe sends it."""
        raw = json.dumps({"deployment_hash": self.credentials.deployment_hash, **body}).encode()
        final = body.get("status") in FINAL and self.pending is not None
        if final and not kept:
            assert self.pending is not None
            await trio.to_thread.run_sync(self.pending.keep, body["command_id"], raw)  # written and synced
        backoff = Backoff(cap=30.0)
        give_up = trio.current_time() + (REPORT_PATIENCE if body.get("status") in FINAL else PROGRESS_PATIENCE)
        while trio.current_time() < give_up:
            try:
                response = await send(self.client, lambda: signed_request(
                    self.client, "POST", "/api/v1/agent/commands/report", self.credentials, raw,
                    headers={"Content-Type": "application/json"}))
            except httpx.TransportError as exc:
                problem = transport_problem(exc, answered=has_answered(self.client))
            else:
                never = report_refused_for_good(response.status_code, error_of(response)[0])
                if report_taken(response, body["command_id"]) or never:
                    if never:
                        log.warning("report of %s refused (%s): %s", body["command_id"], response.status_code,
                                    error_text(response)[:200])
                    if final:
                        assert self.pending is not None
                        await trio.to_thread.run_sync(self.pending.taken, body["command_id"])
                    return
                refused = refusal(response, "report") if response.status_code in REFUSING else None
                problem = (str(refused) if refused is not None
                           else f"not trioscope's answer, {answer_shown(response)}" if response.is_success
                           else f"answered {response.status_code}: {error_text(response)[:200]}")
                if refused is not None and refused.for_good:
                    # Only an operator mends it (new credentials): asked rarely, kept meanwhile.
                    if backoff.attempts == 0:
                        log.warning("report of %s failed (%s); %s", body["command_id"], problem, refused.plan)
                    backoff.attempts += 1
                    await trio.sleep(REFUSED_RETRY)
                    continue
            if backoff.attempts == 0:
                log.warning("report of %s failed (%s); retrying with backoff", body["command_id"], problem)
            await trio.sleep(backoff.next())
        log.error("report of %s (%s) given up after %d attempts%s", body["command_id"], body["status"],
                  backoff.attempts,
                  "; kept in the state directory, sent again when the probe starts" if final else "")

    async def _run_command(self, item: dict[str, Any]) -> None:
        command_id = usable_id(item)
        if command_id is None:  # nothing to name in a report: the command cannot even be failed
            log.error("dropped a command whose command_id is no id (a string of 1 to %d characters): %s",
                      MAX_COMMAND_ID, str(item.get("command_id"))[:80])
            return
        try:  # checked before anything acts on the container: a bad one fails whole
            kind, timeout = kind_of(item), timeout_of(item)
        except ValueError as exc:
            log.warning("refused %s: %s", command_id, exc)
            await self._report({"command_id": command_id, "status": "failed", "error": str(exc),
                                "completed_at": _now()})
            return
        if kind == "cancel":
            # Commands run one at a time, but for follows: by the time a cancel
            # arrives any other command has finished.
            target = self.follows.get(command_id.removeprefix("cancel:"))
            if target is not None:
                self.cancel_asked.add(command_id.removeprefix("cancel:"))
                target.cancel(reason="cancelled by the user")
            await self._report({"command_id": command_id, "status": "completed",
                                "result": {"note": "follow stopped" if target else "nothing running to cancel"}})
            return
        parameters = item.get("parameters")
        if kind == "docker.logs" and isinstance(parameters, dict) and parameters.get("follow") is True:
            await self._start_follow(command_id, parameters, timeout)
            return
        own = parameters.get("timeout") if isinstance(parameters, dict) and kind == "docker.exec" else None
        if type(own) is int and 0 < own < timeout:
            timeout = own  # exec's own limit; the command's timeout bounds everything
        grace = 0
        if kind == "docker.exec" and isinstance(parameters, dict):
            # The exec ends itself at its limit (its process killed, the thread given
            # back) and says how; the wait below is only for an engine that does not answer.
            parameters = {**parameters, "timeout": min(max(1, int(timeout)), MAX_EXEC_SECONDS)}
            grace = EXEC_GRACE
        try:
            check(kind, parameters, self.allowed)
        except ControlError as exc:
            log.warning("refused %s (%s): %s", kind, command_id, exc)
            await self._report({"command_id": command_id, "status": "failed", "error": str(exc),
                                "completed_at": _now()})
            return
        log.info("running %s (%s)", kind, command_id)
        await self._report({"command_id": command_id, "status": "executing", "progress": 0, "stage": "started"})
        result: dict[str, Any] | None = None
        error: str | None = None
        ran: list[bool] = []

        def execute() -> dict[str, Any]:
            ran.append(True)
            return self._execute(kind, parameters)

        with trio.move_on_after(timeout + grace) as scope:
            try:
                result = await trio.to_thread.run_sync(execute, abandon_on_cancel=True, limiter=self.threads)
            except ControlError as exc:
                error = str(exc)
            except Exception as exc:  # a bug of ours: said to the operator, logged with its traceback
                log.error("%s (%s) raised", kind, command_id, exc_info=exc)
                error = f"the probe failed running it: {type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"timed out after {timeout}s" + ("" if ran else f", never run: the probe's {COMMAND_THREADS} "
                                                     "engine threads were all held by commands stuck on the engine")
        if kind in CHANGES_CONTAINERS and self.containers_changed is not None:
            self.containers_changed()  # before the result is sent: that may take retries
        stamp = _now()
        if error is None:
            await self._report({"command_id": command_id, "status": "completed", "result": result,
                                "completed_at": stamp})
        else:
            log.warning("%s (%s) failed: %s", kind, command_id, error)
            await self._report({"command_id": command_id, "status": "failed", "error": error,
                                "completed_at": stamp})

    def _engine(self, timeout: int = 30) -> docker.DockerClient:
        try:
            return connect(self.docker_host, timeout)
        except EngineUnreachable as exc:
            raise ControlError(f"the container engine cannot be reached: {exc}") from None

    def _execute(self, kind: str, parameters: Any) -> dict[str, Any]:
        client = self._engine()
        try:
            return execute(client, kind, parameters, self.allowed)
        finally:
            client.close()

    async def _start_follow(self, command_id: str, parameters: dict[str, Any], timeout: float) -> None:
        """Start following a container's log beside the poll loop (or fail the command at once)."""
        stamp = _now()
        error: str | None = None
        if "docker.logs" not in self.allowed:
            error = "command type 'docker.logs' is not allowed on this probe"
        elif len(self.follows) >= MAX_FOLLOWS:
            error = f"this probe already follows {MAX_FOLLOWS} logs (its limit)"
        client: docker.DockerClient | None = None
        follow: LogFollow | None = None
        if error is None:
            import docker.errors  # a follow uses the engine: loaded now if not yet

            # Bounded: the poll loop waits for it, and the engine threads may all be held.
            with trio.move_on_after(min(timeout, STREAM_TIMEOUT * 2)):
                try:
                    client = await trio.to_thread.run_sync(self._engine, STREAM_TIMEOUT, limiter=self.threads)
                    follow = await trio.to_thread.run_sync(LogFollow, client, command_id,
                                                           self.credentials.deployment_hash, parameters,
                                                           self._post_logs, limiter=self.threads)
                except ControlError as exc:
                    error = str(exc)
                except docker.errors.DockerException as exc:
                    error = f"the engine refused: {exc}"
            if error is None and follow is None:
                error = "the engine did not answer in time to start following the log"
        if error is not None or follow is None or client is None:
            if client is not None:
                client.close()
            log.warning("docker.logs (%s) failed: %s", command_id, error or "not started")
            await self._report({"command_id": command_id, "status": "failed", "error": error or "not started",
                                "completed_at": stamp})
            return
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self.follows[command_id] = scope
        await self._report({"command_id": command_id, "status": "executing", "progress": 0, "stage": "following"})
        self.nursery.start_soon(self._follow, follow, client, scope)

    async def _follow(self, follow: LogFollow, client: docker.DockerClient, scope: trio.CancelScope) -> None:
        import docker.errors  # loaded with ``client``: a lookup

        result: dict[str, Any] = {}
        error: str | None = None
        with scope:
            try:
                result = await follow.run()
            except (ControlError, docker.errors.DockerException) as exc:
                error = str(exc)
            except Exception as exc:  # a bug of ours: one command must never end the probe
                log.error("docker.logs (%s) raised", follow.command_id, exc_info=exc)
                error = f"the probe failed following it: {type(exc).__name__}: {exc}"
        self.follows.pop(follow.command_id, None)
        client.close()
        cancelled = follow.command_id in self.cancel_asked
        self.cancel_asked.discard(follow.command_id)
        if scope.cancelled_caught:
            result = {"container_id": follow.container.id, "lines": follow.sent, "dropped": follow.dropped,
                      "ended": "cancelled" if cancelled else "time_limit"}
        stamp = _now()
        if error is not None:
            await self._report({"command_id": follow.command_id, "status": "failed", "error": error,
                                "completed_at": stamp})
        else:
            await self._report({"command_id": follow.command_id, "status": "cancelled" if cancelled else "completed",
                                "result": result, "completed_at": stamp})

    async def _post_logs(self, raw: bytes) -> httpx.Response:
        return await send(self.client, lambda: signed_request(
            self.client, "POST", "/api/v1/agent/commands/logs", self.credentials, raw,
            headers={"Content-Type": "application/json"}, timeout=30))


def _now() -> str:
    """A command's times as the server takes them (RFC 3339, UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
