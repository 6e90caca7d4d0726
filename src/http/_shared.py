"""What several route modules do alike: read query arguments, reach the actor
behind a request (a probe's roster, a deployment's queue, an agent's actor),
hold an agent's long-poll, submit a command.

Route modules (those with a blueprint) import this and the support modules
(``_bodies``, ``_errors``, ``_gate``, ...), never one another:
``tests/http/test_route_imports.py`` checks it. Each function here sends one
message to one actor, or reads what an actor published.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import trio
from quart import Response, request

from trioscope.actors.deployment_queue import Create, Poll, PollRetired, Undeliverable, Withdraw, open_poll
from trioscope.actors.log_follows import Entries, StartFollow, StopFollow
from trioscope.actors.notifier import publish
from trioscope.actors.queue_owner import ForDeployment
from trioscope.actors.refusals import IdempotencyKeyTaken, TooManyAgents
from trioscope.actors.topology import PROCESS_HISTORY
from trioscope.config import Settings, format_duration_compact, format_size
from trioscope.domain.commands import (
    MAX_PARAMETERS_BYTES, MAX_SCHEDULE_AHEAD, POLL_CLOSED, Command, CreateCommand, Delivery, LogBatch, Priority,
    new_command,
)
from trioscope.domain.log_follows import Admission, FollowEnded, FollowLimitReached, UnknownFollow
from trioscope.domain.deployments import AgentAuthFailure, Deployment
from trioscope.domain.principals import Principal
from trioscope.wire import (
    ContainerInfo, ContainerStats, DockerInfo, InvalidDocument, MemoryBudget, ProcessesInfo, ProcessInfo, Report, decode,
    parse_timestamp,
)
from trioscope.runtime import ActorNotFound, ActorRef, ActorStopped, AskTimeout, Handoff, MailboxFull
from trioscope.system import LOG_FOLLOWS, NOTIFIER

from . import _audit_entries, _directory
from ._bodies import invalid
from ._errors import ApiError, field_error
from ._idempotency import Once, answer_of_first
from ._responses import json_bytes_response
from ._services import services

log = logging.getLogger(__name__)

MAX_PAGE = 500
"""Largest page of a listing (commands, audit records, retired agents)."""


# ---- query arguments: a 400 naming the argument -----------------------------------------------

CATCHING_UP_RETRY = "2"
"""Seconds a view asked of a replica still reading the report stream waits."""


def views_caught_up() -> None:
    """Refuse a topology read (views, nodes, an agent's reports and series, a
    live view) while this replica has not read the report stream to its end
    since it started: until then it holds an older, partial state (after a
    restart, a client moving to it would see the cluster go back in time).
    ``/health/ready`` says the same; a replica that caught up once answers
    from its last state even while the bus is away.

    Raises:
        ApiError: 503 ``catching_up`` with Retry-After and how far it is.
    """
    bus = services().bus
    if bus is None or bus.progress.caught_up:
        return
    progress = bus.progress
    where = ("not connected to the report bus yet" if not progress.connected
             else f"reading the report stream: {progress.lag} reports to go" if progress.lag is not None
             else "reading the report stream")
    raise ApiError(503, "catching_up", f"this replica is still rebuilding its topology ({where}); retry shortly "
                   "or ask another replica", details=progress.as_dict(), headers={"Retry-After": CATCHING_UP_RETRY})


def date_argument(name: str, *, end: bool) -> float | None:
    """Query parameter ``name``: a date (the whole day; ``end``: up to its end) or an RFC 3339 time."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:  # a date: the whole day (to_date includes its day)
            day = datetime.fromisoformat(raw + "T00:00:00+00:00").timestamp()
            return day + 86400 if end else day
        return parse_timestamp(raw).timestamp()
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name}: must be a date (2024-01-31) or an RFC 3339 time",
                       details={"field": name}) from None


def boolean_argument(name: str) -> bool:
    """Query parameter ``name``: ``true`` or ``false`` (absent: false)."""
    raw = request.args.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise ApiError(400, "invalid_query", f"{name}: must be true or false", details={"field": name})


def integer_argument(name: str, default: int, low: int, high: int, unit: str = "") -> int:
    """Query parameter ``name``: decimal ASCII digits (not "²", which ``isdigit``
    takes and ``int`` refuses; not thousands of them, which ``int`` refuses too)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_query", f"{name}: must be an integer from {low} to {high}{unit}",
                       details={"field": name})
    return int(raw)


# ---- probes: the roster actor and the probes' own actors ---------------------------------------

async def ask_roster(message: Any) -> Any:
    """A probe's report, registration or heartbeat, to the roster actor (which
    starts the probe's actor and hands the report on); its answer. A probe
    refused for want of room (``TooManyAgents``, 503) is counted."""
    s = services()
    try:
        # Making room for a new probe waits for a forgotten one's actor to stop.
        return await s.roster.ask(message, timeout=10.0)
    except TooManyAgents:
        s.metrics.refused("agents_full")
        raise


SMALL_RESULT = 64 * 1024
"""Bytes of a command report still taken while the disk is short of room
(``refuse_when_disk_short``): a command's outcome and a little of its output."""


LISTINGS_AT_ONCE = 2
"""Store listings (command pages, the audit log) of one user answered at once:
each may take seconds on a large store (a far offset of 2 million commands:
2.5 s), and the store's reader connections are shared by every tenant."""


@contextlib.asynccontextmanager
async def listing_turn(principal: Principal) -> AsyncIterator[None]:
    """One of the user's ``LISTINGS_AT_ONCE`` places for a store listing; 429
    ``too_many_listings`` beyond them (two of one viewer's listings at once held
    another tenant's command reads at 4.8 s, and ``/health/ready`` at 503)."""
    s = services()
    user = (principal.tenant, principal.user_id)
    if s.listings.count(user) >= LISTINGS_AT_ONCE:
        raise ApiError(429, "too_many_listings", f"at most {LISTINGS_AT_ONCE} listings of one user are answered at "
                       "once; send it again when one has been answered", headers={"Retry-After": "1"})
    with s.listings.held(user):
        yield


def refuse_when_disk_short(size: int | None, small: int, what: str) -> None:
    """507 ``insufficient_storage`` for ``what`` (``size`` bytes, None: not
    known) over ``small`` while the embedded store's disk has less than
    ``storage.min_free_bytes`` free (``DiskRoom``): what is kept then is a
    command's outcome and a little of its output, the small writes that keep
    the server working for everyone; the rest waits for room. One place for
    every path that stores what a client sends (a result over HTTP or the
    agent socket, a command's parameters): the socket's results once went
    around it."""
    if services().disk_room.short() and (size is None or size > small):
        raise ApiError(507, "insufficient_storage", f"the server's disk is nearly full: {what} over "
                       f"{small // 1024} KiB cannot be kept now (storage.min_free_bytes); send it again later",
                       headers={"Retry-After": "60"})


def agent_or_404(agent_id: str) -> ActorRef:
    """The actor of probe ``agent_id``, to ask what it holds; 404 if there is none."""
    ref = services().agents.actor(agent_id)
    if ref is None:
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                       details={"agent_id": agent_id})
    return ref


def memory_budget(settings: Settings) -> MemoryBudget:
    """What one agent's report may take (``agents.memory_budget``), with the
    metric history the server keeps for its nodes."""
    history = settings.storage.max_data_age
    return MemoryBudget(limit=settings.agents.memory_budget, history=history,
                        process_history=min(history, PROCESS_HISTORY))


TYPICAL_CONTAINERS, TYPICAL_PROCESSES = 10, 100


def _typical_host() -> Report:
    """A host of ``TYPICAL_CONTAINERS`` containers, each in a pod, and
    ``TYPICAL_PROCESSES`` processes (no connections: less than most such hosts take)."""
    when = datetime(2000, 1, 1, tzinfo=UTC)
    pods = [{"io.kubernetes.pod.name": f"pod-{i}", "io.kubernetes.pod.namespace": "default"}
            for i in range(TYPICAL_CONTAINERS)]
    return Report(
        agent_id="typical-host", timestamp=when, hostname="typical-host",
        docker_info=DockerInfo(containers=[
            ContainerInfo(id=f"{i:064x}", name=f"/app-{i}", image="app:1", labels=labels, stats=ContainerStats())
            for i, labels in enumerate(pods)]),
        processes_info=ProcessesInfo(processes=[
            ProcessInfo(pid=100 + i, ppid=1, name=f"worker-{i % 10}", cmdline=f"/usr/bin/worker-{i % 10}")
            for i in range(TYPICAL_PROCESSES)]))


def typical_host_warning(settings: Settings) -> str | None:
    """What to say at start when a host of a usual size does not fit
    ``agents.memory_budget`` with the metric history ``storage.max_data_age``
    keeps: its reports would get 413 ``memory_budget_exceeded`` (the
    configuration check refuses only a budget a bare host does not fit)."""
    budget = memory_budget(settings)
    needed = budget.footprint(_typical_host(), 0).bytes
    if needed <= budget.limit:
        return None
    mib = 1024**2
    return (f"agents.memory_budget {format_size(budget.limit)} is below what a host of {TYPICAL_CONTAINERS} "
            f"containers in pods and {TYPICAL_PROCESSES} processes is estimated to take with "
            f"storage.max_data_age {format_duration_compact(settings.storage.max_data_age)} of metric history "
            f"({needed / mib:.1f} MiB): such hosts' reports will get 413 memory_budget_exceeded; raise "
            f"--agent-memory-budget to at least {format_size(-(-needed // mib) * mib)} or shorten --max-data-age")


# ---- deployments' command queues ---------------------------------------------------------------

async def ask_queue(deployment_hash: str, message: Any, timeout: float = 10.0) -> Any:
    """Ask the deployment's queue actor, through the queues' owner (which
    starts it if it is not running and forwards the message: the queue answers)."""
    return await services().queue_owner.ask(ForDeployment(deployment_hash, message), timeout)


def user_actor(user_id: str) -> str:
    """How the audit log names a user."""
    return f"user:{user_id}"


def decode_create(document: Any) -> CreateCommand:
    """A command to create, from a request body (400 naming the field)."""
    try:
        create = decode(document, CreateCommand)
    except InvalidDocument as exc:
        raise invalid("invalid_command", exc) from None
    size = len(orjson.dumps(create.parameters))
    if size > MAX_PARAMETERS_BYTES:
        raise field_error("invalid_command", "$.parameters", f"must be at most {MAX_PARAMETERS_BYTES} bytes as JSON, got {size}")
    if create.schedule_at is not None and create.schedule_at.timestamp() > time.time() + MAX_SCHEDULE_AHEAD:
        raise field_error("invalid_command", "$.schedule_at", f"must be at most {MAX_SCHEDULE_AHEAD / 86400:g} days ahead")
    return create


CREATED = 202
"""The status of a new command's answer: stored and queued."""


async def submit(principal: Principal, deployment: Deployment, create: CreateCommand,
                 answer: Callable[[Command], dict[str, Any]], *, target_agent: str | None = None,
                 once: Once | None = None, **audit_details: Any) -> Response:
    """Queue a command for ``deployment`` on behalf of ``principal`` (for
    ``target_agent`` only, if given); answers 202 with ``answer(command)``
    once it is stored.

    With ``once`` (the request's ``Idempotency-Key``, looked up by the route
    already: ``_idempotency.earlier_answer``), the key and this answer are
    stored with the command, so that the request sent again (after a 504
    ``outcome_unknown``, the command may be stored) is answered the same. If
    another request with the key stored its command first, this one is
    answered as that one was."""
    now = time.time()
    command = new_command(
        command_id=f"cmd_{uuid.uuid4().hex}", deployment_hash=deployment.hash, tenant=deployment.tenant,
        type=create.type, parameters=create.parameters, priority=Priority(create.priority),
        created_by=principal.user_id, now=now,
        schedule_at=create.schedule_at.timestamp() if create.schedule_at else None,
        timeout_seconds=create.timeout_seconds, requires_confirmation=create.requires_confirmation, sequence=0,
        target_agent=target_agent, metadata=create.metadata,
    )
    # Of the command as created: the queue changes only its sequence, which no answer shows.
    body = orjson.dumps(answer(command))
    audit = _audit_entries.audit_entry("command.create", actor=user_actor(principal.user_id),
                                       tenant=principal.tenant, resource_type="command", resource_id=command.id,
                                       type=command.type, priority=command.priority.value,
                                       deployment_hash=deployment.hash, **audit_details)
    queued = Create(command, audit, None if once is None else once.keep(command.id, CREATED, body, now))
    try:
        await _queue(principal, deployment, create, queued, now)
    except IdempotencyKeyTaken:
        assert once is not None
        return await answer_of_first(once)  # another request with the key stored its command first
    return json_bytes_response(body, status=CREATED)


async def _queue(principal: Principal, deployment: Deployment, create: CreateCommand, queued: Create,
                 now: float) -> None:
    """Ask the deployment's queue to store and queue a new command."""
    container = follow_container(create)
    if container is None:
        await ask_queue(deployment.hash, queued)
        return
    # A follow holds its place (the per-user and per-agent counts) from now:
    # refused before it is queued, given back if it is not.
    command_id = queued.command.id
    await _ask_follows(StartFollow(command_id, deployment.tenant, principal.user_id, deployment.hash, container,
                                   float(create.timeout_seconds), now))
    try:
        await ask_queue(deployment.hash, queued)
    except BaseException:
        stop_follow(command_id, "not_queued")
        raise


# ---- live logs: follows of containers' logs ----------------------------------------------------

def follow_container(create: CreateCommand) -> str | None:
    """The container a ``docker.logs`` command with ``follow: true`` follows
    (None: not a follow); 400 naming the field when it is not one."""
    if create.type != "docker.logs" or "follow" not in create.parameters:
        return None
    follow = create.parameters["follow"]
    if type(follow) is not bool:
        raise _bad_parameter("follow", "must be true or false")
    if not follow:
        return None
    container = create.parameters.get("container") or create.parameters.get("container_id")
    if not isinstance(container, str) or not container or len(container) > 256:
        raise _bad_parameter("container", "a follow needs the container's id or name (at most 256 characters)")
    tail = create.parameters.get("tail", 10)
    if type(tail) is not int or not 0 <= tail <= MAX_FOLLOW_TAIL:
        raise _bad_parameter("tail", f"must be an integer from 0 to {MAX_FOLLOW_TAIL} (lines of history first)")
    return container


MAX_FOLLOW_TAIL = 10_000
"""Lines of history a follow may start with (the probe's own bound)."""


def _bad_parameter(name: str, message: str) -> ApiError:
    return field_error("invalid_command", f"$.parameters.{name}", message)


async def _ask_follows(message: Any) -> Any:
    """Ask the follows actor; its refusals as HTTP errors (429 over a count, 404, 410)."""
    try:
        return await services().system.lookup(LOG_FOLLOWS).ask(message, timeout=10.0)
    except FollowLimitReached as exc:
        raise ApiError(429, "follow_limit_reached", str(exc), details={"limit": exc.limit, "setting": exc.setting},
                       headers={"Retry-After": "10"}) from None
    except UnknownFollow:
        raise ApiError(404, "follow_not_found", "no log follow of this command in this deployment (not a follow, "
                       "or the server restarted since: start it again)") from None
    except FollowEnded as exc:
        raise ApiError(410, "follow_ended", str(exc), details={"reason": exc.reason}) from None


async def admit_log_entries(batch: LogBatch) -> Admission:
    """Hand an agent's batch of log lines to the follows actor: the lines its
    bounds pass go to users as ``log_entry`` events."""
    return await _ask_follows(Entries(batch.deployment_hash, batch.command_id, tuple(batch.entries),  # type: ignore[no-any-return]  # replies are untyped; Entries' is an Admission
                                      time.time()))


async def end_follow(command_id: str, reason: str) -> None:
    """End a follow if there is one, and wait until it has: every batch of
    its lines admitted before is with the notifier, and none is after."""
    try:
        await services().system.lookup(LOG_FOLLOWS).ask(StopFollow(command_id, reason), timeout=5.0)
    except (MailboxFull, ActorStopped, ActorNotFound, AskTimeout):
        log.warning("follow %s not stopped at once: the follows actor is busy or away; its limits end it", command_id)


def stop_follow(command_id: str, reason: str) -> None:
    """End a follow if there is one (its command finished, was cancelled or not
    queued): no more of its lines reach users. Never waits."""
    try:
        stopped = services().system.lookup(LOG_FOLLOWS).offer(StopFollow(command_id, reason))
    except ActorNotFound:
        stopped = False
    if not stopped:
        log.warning("follow %s not stopped at once: the follows actor is busy or away; its limits end it", command_id)


def publish_event(tenant: str, owner: str | None, event: dict[str, Any]) -> None:
    """Tell users' sockets of ``tenant`` an event (about a deployment of
    ``owner``), never waiting: best-effort, as the actors' events (``notifier.publish``)."""
    try:
        notifier = services().system.lookup(NOTIFIER)
    except ActorNotFound:
        return  # shutting down
    publish(notifier, tenant, owner, event)


# ---- an agent's poll: long-poll and agent socket alike ----------------------------------------

class AgentRetired(Exception):
    """The polling agent was decommissioned or replaced while its poll waited."""


async def wait_for_command(deployment_hash: str, timeout: float, min_rank: int, skip: str | None,
                           agent_id: str | None = None) -> Delivery | None:
    """Hold a poll of agent ``agent_id`` until a command is handed to it or
    ``timeout`` passes (or the server stops: None at once).

    The poll is one ``Poll`` message to the deployment's queue actor; a later
    answer comes on the poll's own ``Handoff``, on which only this function
    waits. The hand-off is safe both ways: the queue actor commits
    ``sent`` before it hands a command over, and looks whether the poll is
    still open (the handoff not closed) just before; however this poll
    ends (answered, cancelled because the client went away, its ask timed
    out), the handoff is closed at once, with no checkpoint after the
    last look at it, so the actor gives it nothing later, and a command it
    was given but could not pass on is queued again. Nothing is handed over
    once the agent is no longer the deployment's active agent.

    Raises:
        AgentRetired: the agent was decommissioned or replaced (before the poll
            reached the queue or while it waited).
    """
    poll, answers = open_poll(agent_id=agent_id, min_rank=min_rank, skip=skip)
    answer: Delivery | PollRetired | None = None
    taken = False
    try:
        with trio.CancelScope(shield=True):
            # A poll is willing to wait its whole timeout, also for a queue actor
            # that is still starting (many agents reconnecting at once).
            answer = await ask_queue(deployment_hash, poll, timeout=max(10.0, timeout))
        if answer is None:
            # Cancelled when the server stops: the poll answers (204) rather than
            # hold the graceful shutdown up.
            waiting = trio.move_on_after(timeout)
            polls = services().polls
            polls.add(waiting)
            try:
                with waiting:
                    answer = await answers.receive()
            except trio.EndOfChannel:
                pass  # the queue actor stopped: nothing for this poll
            finally:
                polls.discard(waiting)
        # The shielded ask may have answered after the client went away (a
        # request cancelled meanwhile): the command goes back rather than to
        # nobody (it stayed ``sent`` until it timed out, never run).
        await trio.lowlevel.checkpoint_if_cancelled()
        taken = True
    finally:
        # From the last look to the close, no checkpoint: the actor cannot hand
        # the poll anything in between.
        if answer is None:
            answer = _sent_meanwhile(answers)
        answers.close()
        if not taken and answer is not None and not isinstance(answer, PollRetired):
            give_back(deployment_hash, answer)
        elif answer is None:
            _forget(deployment_hash, poll)
    if isinstance(answer, PollRetired):
        raise AgentRetired()
    return answer


def _sent_meanwhile(answers: Handoff[Delivery | PollRetired]) -> Delivery | PollRetired | None:
    """What the actor sent after the wait ended (a timeout, a cancellation)."""
    try:
        return answers.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel):
        return None


async def credentials_failure(token: str | None, deployment_hash: str, agent_id: str) -> AgentAuthFailure | None:
    """Why a new request of the agent with ``token`` would be refused now (None: it would not)."""
    answer = (await _directory.directory()).authenticate(token, deployment_hash=deployment_hash, agent_id=agent_id)
    return answer if isinstance(answer, AgentAuthFailure) else None


def _forget(deployment_hash: str, poll: Poll) -> None:
    """Tell the queue to drop the poll now rather than at its next hand-out
    (straight to a running queue: one that stopped holds no polls)."""
    ref = services().queues.actor(deployment_hash)
    if ref is not None:
        ref.offer(Withdraw(poll))  # dropped: it is skipped as ended anyway


def give_back(deployment_hash: str, delivery: Delivery, reason: str = POLL_CLOSED) -> None:
    """A delivered command did not reach the agent: queue it again (``reason`` goes in its history).
    Through the queue owner, like every request for a queue: never lost to a queue stopping."""
    if not services().queue_owner.offer(ForDeployment(deployment_hash, Undeliverable(delivery, reason))):
        # It times out instead, and is reported so.
        log.warning("could not return undelivered command to %s", deployment_hash)
