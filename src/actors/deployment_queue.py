"""One actor per deployment (under ``/root/queues``): its open commands in
delivery order and the polls waiting for them.

Every change to a command of the deployment goes through this actor, one message
at a time, and is committed before anyone is told: so a command is handed to
exactly one poll, and a restarted actor (or another server process) finds every
acknowledged status in the store. Stored rows are updated compare-and-set on
their version (``len(history)``: the changes made, which keeps growing when
the history merges or leaves out entries), so a second writer of the same
deployment loses cleanly.

A poll names its agent, and nothing is handed to it unless that agent is still
an active agent of the deployment in the directory's published snapshot, read
when the command is handed over (the directory publishes a decommission or a
re-enrolment before answering it, so there is no window). Polls of an agent
that was retired meanwhile are answered at once (``RETIRED``), when the
directory tells the queue (``AgentsRetired``) or at the latest at the next
hand-out, so they end as a new request of that agent would.

Replicas (several server processes on one PostgreSQL database) each run a
queue actor for a deployment whose requests reach them (the queue owner
starts it, and watches the deadlines of the others'). While it runs, what another replica
commits reaches it as ``Refresh`` (the row its notification carried, or read);
a change this actor tries on a row another replica changed first fails its
compare-and-set (``Conflict``): the actor reloads the row and decides again,
so a request ends in one consistent status whichever replica it reached,
and a deadline that another replica fired first is left alone, quietly.

What a request makes of a command (which event, detail, fields and audit, or
a refusal) is decided by pure functions of ``trioscope.domain.commands``
(``report_change``, ``cancel_change``, ``deadline_change``, ...); this actor
holds the state, commits their ``Change``, and tells the polls and the users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs

from trioscope.config import Settings
from trioscope.domain.commands import (
    ACKNOWLEDGED_BY_POLL, ACKNOWLEDGED_BY_REPORT, AGENT_RETIRED, POLL_CLOSED, CancelNotice, Change,
    Command, CommandEvent, CommandReport, CommandStatus, Delivery, DeploymentQueue, Executed, cancel_change,
    cancel_notice_id, change_events, confirm_change, deadline_change, delivered_to, delivery_change, given_back_to,
    holder_of, next_sequence, next_wake, orphaned_change, parameters_bytes, report_change, return_change,
    undelivered_change, untargetable_change,
)
from trioscope.domain.command_stats import CommandStats, queue_load
from trioscope.domain.deployments import AgentDirectory, AgentStatus
from trioscope.domain.log_follows import is_follow
from trioscope.runtime import ActorNotFound, ActorRef, ActorSpec, Backoff, Handoff, Published, Restart
from trioscope.store import (AuditEntry, Conflict, KeyTaken, OpenCommandsQuota, OverCommandBytes, OverQuota,
                             SaveCommand, SaveIdempotencyKey, StoreReader, Write)

from .directory import AgentsRetired, GetPublished
from .log_follows import StopFollow
from .notifier import publish
from .refusals import (DatabaseUnavailable, IdempotencyKeyTaken, OutcomeUnknown, QuotaExceeded, RefusingActor,
                       UnknownCommand)
from .store import commit

log = logging.getLogger(__name__)

DISPATCH_RETRY = 2.0
"""Seconds before commands are handed out again after the database refused a hand-out."""

IDLE_STOP = 60.0
"""Seconds without open commands or waiting polls after which the actor stops."""
CONFLICT_RETRIES = 8
"""Times a request is decided again after another replica changed its command
first (each time with the row reloaded): each retry means another change was
committed meanwhile, so this bounds a pathological race, never a normal one."""


@attrs.frozen
class PollRetired:
    """What a poll gets when its agent was decommissioned or replaced: nothing
    (it ends with what a new request of that agent would get)."""


RETIRED = PollRetired()


@attrs.frozen
class Create:
    command: Command
    audit: AuditEntry
    key: SaveIdempotencyKey | None = None
    """The request's idempotency key, written with the command (both or
    neither); another request's stored first refuses this one (``IdempotencyKeyTaken``)."""


@attrs.frozen
class Confirm:
    command_id: str
    audit: AuditEntry


@attrs.frozen
class Cancel:
    command_id: str
    audit: AuditEntry


@attrs.frozen(eq=False)
class Poll:
    """An agent's long-poll: answered with a delivery now, with ``RETIRED``, or
    with None once it waits. A waiting poll is sent one answer later on
    ``reply`` (a delivery, or ``RETIRED``), and ``reply`` is ended without one
    when the actor stops.

    The poller ends its poll by closing ``reply``: from
    then on nothing is handed to it, even if this message is handled only
    later (an ask that timed out). The actor looks before it hands a command
    over, with no checkpoint in between, so a command is either in ``reply``
    (for the poller to take, or give back with ``Undeliverable``) or still
    queued. ``reply`` is the only thing poller and actor share: nothing of the
    poll is changed by either once it is sent."""

    reply: Handoff[Delivery | PollRetired]
    """Its one answer; the poller waits on it and closes it when it stops waiting."""
    agent_id: str | None = None
    """The agent polling: nothing is handed to the poll once the directory no
    longer has it as an active agent of the deployment (None: not checked)."""
    min_rank: int = 0
    skip: str | None = None
    """``last_command_id``: a command the agent says it has."""


def open_poll(*, agent_id: str | None = None, min_rank: int = 0, skip: str | None = None,
              ) -> tuple[Poll, Handoff[Delivery | PollRetired]]:
    """A ``Poll`` and where its later answer arrives (close it to end the poll)."""
    reply: Handoff[Delivery | PollRetired] = Handoff()
    return Poll(reply, agent_id=agent_id, min_rank=min_rank, skip=skip), reply


@attrs.frozen
class Withdraw:
    """The poll ended (its receiving end is closed): forget it now rather than
    at the next hand-out. Answered with None."""

    poll: Poll


@attrs.frozen
class Undeliverable:
    """A delivered command never reached the agent (its poll went away, its
    socket did not acknowledge it): queue it again, with ``reason`` in its history.

    Not acknowledged a second time, a command fails with ``UNACKNOWLEDGED_TWICE``."""

    delivery: Delivery
    reason: str = POLL_CLOSED


@attrs.frozen
class Report:
    """Answered with ``(command, changed)``; ``changed`` is False for a repeated
    final report (``repeats_outcome``: the same status, result and error).

    Only the agent a command was last delivered to may report on it (each
    ``deliver`` entry records it); its report of a command given back to the
    queue as undelivered is the acknowledgement that never came, and is recorded."""

    report: CommandReport
    agent_id: str


@attrs.frozen
class Snapshot:
    """Answered with the open commands (for tests and the runtime view)."""


@attrs.frozen
class Refresh:
    """Another replica committed a change of ``command`` (as its notification
    carried it, or read after it): take it if it is newer than what this actor holds, and
    hand it out if it is deliverable. Answered with None."""

    command: Command


@attrs.frozen
class Reload:
    """The change feed may have missed notifications (it reconnected): reload
    every open command of the deployment. Answered with None."""


@attrs.frozen
class _Tick:
    pass


@attrs.frozen
class QueueIdle:
    """Told by a queue actor to its owner: nothing open and no poll waiting for
    ``IDLE_STOP`` seconds. The owner stops it with ``StopIfIdle``, so that it
    never forwards a request to a queue that is stopping."""

    deployment_hash: str


@attrs.frozen
class StopIfIdle:
    """From the owner: stop now if still idle. Answered with whether it stops."""


class DeploymentQueueActor(RefusingActor):
    def __init__(self, deployment_hash: str, settings: Settings, *, store: ActorRef, reader: StoreReader,
                 notifier_path: str | None = None, directory_path: str | None = None,
                 follows_path: str | None = None, queue_owner: ActorRef | None = None,
                 stats: CommandStats | None = None, clock: Callable[[], float] = time.time) -> None:
        self.deployment_hash = deployment_hash
        self.stats = stats
        """Where finished commands and this queue's load are counted (``/metrics``, alerts)."""
        self.queue_owner = queue_owner
        """Who decides when this actor stops (``QueueIdle``); None: it stops itself once idle."""
        self.settings = settings
        self.store = store
        self.reader = reader
        self.notifier_path = notifier_path
        self.directory_path = directory_path
        self.follows_path = follows_path
        """The log follows actor, told when a follow's command finishes (``_end_follow``)."""
        self.notifier: ActorRef | None = None
        self.agents: Published[AgentDirectory] | None = None
        """The directory's snapshot, read at every hand-out (None: no directory, nothing checked)."""
        self.tenant = self.owner = ""
        self.clock = clock
        c = settings.commands
        self.queue = DeploymentQueue(delivery_deadline=c.delivery_deadline, timeout_grace=c.timeout_grace)
        self.waiters: list[Poll] = []
        """Polls waiting for a command, oldest first."""
        self.dispatch_retry_at: float | None = None
        """When to hand out again after a hand-out's ``sent`` could not be committed (``_dispatch``)."""
        self.idle_since = clock()
        self.last_sequence = 0

    async def on_start(self) -> None:
        if self.directory_path is not None:
            self.agents = await self.context.system.lookup(self.directory_path).ask(GetPublished())
        self._find_audience()
        orphaned = False
        for command in await self.reader.open_commands(self.deployment_hash):
            self.queue.put(command)
            self.last_sequence = max(self.last_sequence, command.sequence)
            holder = delivered_to(command)
            orphaned = orphaned or (holder is not None and not self._is_active(holder))
        self.wake = self.context.alarm(_Tick())
        self._arm()
        if orphaned:  # its agent retired while no queue actor ran here: told to itself, handled in turn
            self.context.ref.offer(AgentsRetired())  # a full mailbox: the next retirement or the deadlines

    def _find_audience(self) -> None:
        """Whose users hear of this deployment's commands (the notifier stays None
        while the directory does not know the deployment)."""
        if self.notifier_path is not None and self.agents is not None:
            deployment = self.agents.value.deployments.get(self.deployment_hash)
            if deployment is not None:
                self.notifier = self.context.system.lookup(self.notifier_path)
                self.tenant, self.owner = deployment.tenant, deployment.user_id

    def _next_wake(self, now: float) -> float | None:
        """The next time something is due (``next_wake``): a deadline, a
        scheduled command once a poll waits, a hand-out to retry, or stopping
        for idleness. None: nothing until a message changes that."""
        return next_wake(self.queue, now, polls_waiting=bool(self.waiters), retry_at=self.dispatch_retry_at,
                         idle_until=self.idle_since + IDLE_STOP)

    def _arm(self) -> None:
        """A wake-up (``_Tick``) for the next time something is due, not a fixed
        tick: thousands of deployments with nothing due cost nothing. The alarm
        moves only when a batch of messages moved that time earlier than it is
        set for (a later one is found when it fires: one early look instead of
        a new timer per batch); never sooner than the runtime's ``MIN_TIMER``,
        whatever the wake time says."""
        now = self.clock()
        wake = self._next_wake(now)
        if wake is None:
            self.wake.cancel()
        else:
            self.wake.after(wake - now)

    async def on_idle(self) -> None:
        self._arm()
        if self.stats is not None:
            self.stats.record_queue(self.deployment_hash, queue_load(self.queue, self.clock()))

    async def serve(self, message: Any, now: float) -> Any:
        if isinstance(message, Poll):
            return await self._poll(message, now)
        if isinstance(message, AgentsRetired):
            for poll in list(self.waiters):
                if not self._active(poll):
                    self.waiters.remove(poll)
                    _answer(poll, RETIRED)
            await self._end_orphaned(now)
            return None
        if isinstance(message, Withdraw):
            if message.poll in self.waiters:
                self.waiters.remove(message.poll)
            return None
        if isinstance(message, Create):
            return await self._create(message, now)
        if isinstance(message, Confirm | Cancel | Report | Undeliverable):
            return await self._decide(message, now)
        if isinstance(message, Refresh):
            if self._newer(message.command):
                self._adopt(message.command)
                await self._dispatch(now)
            return None
        if isinstance(message, Reload):
            await self._reload_all()
            await self._dispatch(now)
            return None
        if isinstance(message, _Tick):
            # The alarm is clear again: on_idle sets it for the next thing due.
            await self._tick(now)
            return None
        if isinstance(message, Snapshot):
            return list(self.queue)
        if isinstance(message, StopIfIdle):
            idle = not len(self.queue) and not self.waiters
            if idle:
                self.context.stop()
            return idle
        return await super().serve(message, now)

    async def _poll(self, poll: Poll, now: float) -> Delivery | PollRetired | None:
        """A delivery for ``poll`` now, ``RETIRED``, or None: it waits (or ended)."""
        if _ended(poll):
            return None  # its request already answered (the ask timed out)
        if not self._active(poll):
            return RETIRED
        if poll.skip is not None:
            await self._acknowledge(poll.skip, poll.agent_id, now)
        answer = await self._take_for(poll, now)
        if answer is None and not _ended(poll):
            self.waiters.append(poll)
        elif answer is None or isinstance(answer, PollRetired):
            await self._dispatch(now)  # what it could not have may go to another poll
        return answer

    async def _create(self, message: Create, now: float) -> Command:
        """Store the new command (its place in the order given here), within the
        deployment's and the tenant's quotas, and hand it out if a poll waits."""
        c = self.settings.commands
        if len(self.queue) >= c.max_queued:
            raise QuotaExceeded("open commands per deployment", c.max_queued, "commands.max_queued")
        # Open commands' parameters stay in memory until they finish: bounded
        # in bytes too (of memory, not only of JSON: ``parameters_bytes``), or
        # one operator could hold gigabytes with large ones.
        requested = parameters_bytes(message.command.parameters)
        if self.queue.parameter_bytes + requested > c.max_open_parameter_bytes:
            raise QuotaExceeded("bytes of open commands' parameters per deployment", c.max_open_parameter_bytes,
                                "commands.max_open_parameter_bytes", in_use=self.queue.parameter_bytes,
                                requested=requested)
        self.last_sequence = next_sequence(self.last_sequence, now)
        command = attrs.evolve(message.command, sequence=self.last_sequence)
        # The tenant's stored commands are counted by the store: they are
        # every deployment's, each with a queue actor of its own.
        tenant_limit = self.settings.tenants.max_command_bytes
        kept = () if message.key is None else (message.key,)
        try:
            await self._save(command, None, message.audit, *kept, size=requested,
                             quota=OpenCommandsQuota(c.max_queued, c.max_open_parameter_bytes),
                             max_tenant_bytes=tenant_limit)
        except KeyTaken as taken:
            raise IdempotencyKeyTaken(taken.key) from None
        except OverCommandBytes as over:
            raise QuotaExceeded("bytes of stored commands per tenant", tenant_limit, "tenants.max_command_bytes",
                                in_use=over.bytes_in_use) from None
        except OverQuota as over:  # counted with other replicas' commands
            if over.in_use >= c.max_queued:
                raise QuotaExceeded("open commands per deployment", c.max_queued, "commands.max_queued") from None
            raise QuotaExceeded("bytes of open commands' parameters per deployment", c.max_open_parameter_bytes,
                                "commands.max_open_parameter_bytes", in_use=over.bytes_in_use,
                                requested=requested) from None
        await self._dispatch(now)
        return command

    async def _decide(self, message: Confirm | Cancel | Report | Undeliverable, now: float) -> Any:
        """Carry out a request on a command; if another replica changed the
        command first (``Conflict``), reload it and decide again on what it is now."""
        for _ in range(CONFLICT_RETRIES):
            try:
                return await self._request(message, now)
            except Conflict as conflict:
                await self._reload(conflict.command_id)
        return await self._request(message, now)  # a last try: a Conflict now crashes, and the restart reloads

    async def _request(self, message: Confirm | Cancel | Report | Undeliverable, now: float) -> Any:
        if isinstance(message, Confirm):
            command = await self._open(message.command_id)
            return await self._change(command, confirm_change(message.audit.actor), now, message.audit)
        if isinstance(message, Cancel):
            command = await self._open(message.command_id)
            change = cancel_change(command, message.audit.actor)
            if change is None:
                return command  # already on its way to the agent
            return await self._change(command, change, now, message.audit)
        if isinstance(message, Report):
            return await self._report(message.report, message.agent_id, now)
        await self._undeliverable(message.delivery, message.reason, now)
        return None

    async def _open(self, command_id: str) -> Command:
        """The open command ``command_id`` of this deployment. One this actor
        does not hold may have been created on another replica a moment ago
        (its notification still on its way): the store says."""
        command = self.queue.get(command_id)
        if command is None:
            command = await self._reload(command_id)
            if command is None or command.status.terminal:
                raise UnknownCommand(command_id)
        return command

    def _newer(self, command: Command) -> bool:
        """Whether ``command`` (as stored) is a later version of one of this deployment's than the queue's."""
        return command.deployment_hash == self.deployment_hash and self.queue.newer(command)

    async def _reload_all(self) -> None:
        """Every open command as stored, and the end of those that finished meanwhile."""
        stored = await self.reader.open_commands(self.deployment_hash)
        for command in stored:
            if self._newer(command):
                self._adopt(command)
            self.last_sequence = max(self.last_sequence, command.sequence)
        still_open = {c.id for c in stored}
        for command in list(self.queue):
            if command.id not in still_open:
                await self._reload(command.id)

    async def _save(self, command: Command, previous: Command | None, *extra: Write, size: int | None = None,
                    quota: OpenCommandsQuota | None = None, max_tenant_bytes: int | None = None) -> None:
        writes: list[Write] = [SaveCommand(command, None if previous is None else len(previous.history),
                                           parameter_bytes=size or 0, quota=quota,
                                           max_tenant_bytes=max_tenant_bytes)]
        writes.extend(extra)
        await commit(self.store, writes)
        self.queue.put(command, size=size)
        if command.status.terminal and (previous is None or not previous.status.terminal):
            if self.stats is not None:
                self.stats.record_finished(command, command.updated_at)  # counted where it finishes, once
            self._end_follow(command)
        if self.notifier is None:
            self._find_audience()  # a deployment another replica created may be known by now
        for event in change_events(command):
            publish(self.notifier, self.tenant, self.owner, event)

    def _end_follow(self, command: Command) -> None:
        """A finished command's log follow passes no more lines, and its place
        in the per-user and per-agent counts is free: however it finished (its
        agent's report, a cancel, its deadline, its agent retired: a user could
        neither cancel such a follow nor start another until its time limit).
        Not waited for; a follow lost to a full mailbox ends at its limits."""
        if self.follows_path is None or not is_follow(command.type, command.parameters):
            return
        try:
            follows = self.context.system.lookup(self.follows_path)
        except ActorNotFound:
            return
        follows.offer(StopFollow(command.id, "stopped" if command.status is CommandStatus.CANCELLED else "finished"))

    async def _change(self, command: Command, change: Change, now: float, audit: AuditEntry | None = None) -> Command:
        """Commit ``change`` of ``command`` (with ``audit``, the request's, or the
        audit of how it was executed), then hand out what it made deliverable."""
        changed = change.apply(command, now)
        if change.executed is not None:
            audit = _execute_audit(command, now, change.executed)
        await self._save(changed, command, *([audit] if audit is not None else []))
        await self._dispatch(now)
        return changed

    async def _take(self, now: float, min_rank: int, skip: str | None, agent_id: str | None) -> Delivery | None:
        """The next delivery, ``sent`` to ``agent_id`` committed (None: nothing deliverable)."""
        while True:
            delivery = self.queue.take(now, min_rank=min_rank, skip=skip)
            if delivery is None or isinstance(delivery, CancelNotice):
                return delivery
            if delivery.target_agent is not None and not self._is_active(delivery.target_agent):
                await self._expire_untargetable(delivery, now)
                continue
            try:
                delivered = delivery_change(agent_id).apply(delivery, now)
                await self._save(delivered, delivery)
            except Conflict:
                await self._reload(delivery.id)  # another writer has it; look again
                continue
            except (DatabaseUnavailable, OutcomeUnknown):
                # Not handed out: queued again in its place. Left taken, no poll
                # of this process was ever given it again (a reviewer's command
                # stayed queued until it expired an hour later). Had the write
                # landed after all, the next hand-out's is a Conflict: reloaded.
                self.queue.put(delivery)
                raise
            return delivered

    def _active(self, poll: Poll) -> bool:
        """Whether the polling agent is still an active agent of this deployment."""
        return poll.agent_id is None or self._is_active(poll.agent_id)

    def _is_active(self, agent_id: str) -> bool:
        if self.agents is None:
            return True
        agent = self.agents.value.agents.get(agent_id)
        return (agent is not None and agent.status is AgentStatus.ACTIVE
                and agent.deployment_hash == self.deployment_hash)

    async def _retired(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is known to be retired: its record says so, here
        or, where this replica has none yet (enrolled on another a moment ago,
        the notification on its way), in the store. Not knowing it is no reason
        to fail its commands."""
        if self.agents is None:
            return False
        agent = self.agents.value.agents.get(agent_id)
        if agent is None:
            try:
                agent = await self.reader.agent(agent_id)
            except Exception:  # noqa: BLE001 - the store away: not known, so not retired (asked again later)
                return False
        return agent is not None and (agent.status is not AgentStatus.ACTIVE
                                      or agent.deployment_hash != self.deployment_hash)

    async def _end_orphaned(self, now: float) -> None:
        """Fail the commands delivered to an agent that is retired now (its
        deployment was enrolled again, or it was decommissioned): no other
        agent may report on them (409), its own reports are refused (410), and
        a cancel went as a notice to the new agent, which never had them. Left
        open, such a command stayed ``sent`` until its timeout (up to a week),
        holding a place of the open-commands quota. A change another replica
        made first is taken as it is; the database away leaves the rest to the
        next retirement or the deadlines."""
        for command in list(self.queue):
            holder = holder_of(command)
            if holder is None or not await self._retired(holder):
                continue
            try:
                await self._change(command, orphaned_change(holder), now)
            except Conflict:
                await self._reload(command.id)
                continue
            except (DatabaseUnavailable, OutcomeUnknown):
                return
            log.info("command %s of deployment %s failed: its agent %s was retired before it reported", command.id,
                     self.deployment_hash, holder,
                     extra={"event": "command_orphaned", "command_id": command.id,
                            "deployment_hash": self.deployment_hash, "agent_id": holder})

    async def _expire_untargetable(self, command: Command, now: float) -> None:
        """A command for one agent (a container control) whose agent was retired
        before it was delivered: no other agent may run it (the container id is
        that agent's), so it ends, saying why."""
        try:
            await self._save(untargetable_change().apply(command, now), command)
        except Conflict:
            await self._reload(command.id)

    async def _take_for(self, poll: Poll, now: float) -> Delivery | PollRetired | None:
        """The next delivery for ``poll``, ``sent`` committed (the poll still
        open when it returns); None if there is none, or if the poll ended while
        ``sent`` was being committed; ``RETIRED`` if its agent was retired
        meanwhile. In those two cases the command is queued again."""
        delivery = await self._take(now, poll.min_rank, poll.skip, poll.agent_id)
        if delivery is None:
            return None
        ended = _ended(poll)
        if not ended and self._active(poll):
            return delivery  # no checkpoint between this look and the caller's hand-over
        await self._put_back(delivery, now, POLL_CLOSED if ended else AGENT_RETIRED)
        return None if ended else RETIRED

    async def _put_back(self, delivery: Delivery, now: float, reason: str) -> None:
        """Undo a ``_take`` whose poll cannot have it (without a dispatch: the caller is dispatching)."""
        if isinstance(delivery, CancelNotice):
            self.queue.notice_again(delivery.command_id)
            return
        try:
            await self._save(return_change(reason).apply(delivery, now), delivery)
        except Conflict:
            await self._reload(delivery.id)

    async def _acknowledge(self, command_id: str, agent_id: str | None, now: float) -> None:
        """The agent says it has ``command_id`` (``last_command_id``). If we gave
        it back to the queue because its poll seemed to go away, the agent got it
        after all: it is sent, not to be delivered twice. Only the agent it was
        given to can have it: another agent's word changes nothing."""
        command = self.queue.get(command_id)
        if command is not None and self._given_back_to(command, agent_id):
            try:
                await self._change(command, delivery_change(agent_id, ACKNOWLEDGED_BY_POLL), now)
            except Conflict:
                await self._reload(command_id)  # another replica handed it over (or finished it) first

    def _given_back_to(self, command: Command, agent_id: str | None) -> bool:
        """Whether ``command`` went back to the queue after a delivery to
        ``agent_id`` (``given_back_to``), which is still an active agent of the deployment."""
        return given_back_to(command, agent_id) and (agent_id is None or self._is_active(agent_id))

    async def _reload(self, command_id: str) -> Command | None:
        """Take the command as stored (another replica may have changed it) if it
        is newer, and answer it (None: not a command of this deployment).
        Quietly: the replica that made the change told its users, and the
        change feed tells this replica's."""
        stored = await self.reader.command(command_id)
        if stored is None or stored.deployment_hash != self.deployment_hash:
            return None
        if self._newer(stored):
            self._adopt(stored)
        return stored

    def _adopt(self, command: Command) -> None:
        """Take a newer stored version of a command (another replica changed
        it): in the queue, or out of it with its follow ended if it finished."""
        if command.status.terminal:
            self._end_follow(command)
        self.queue.put(command)

    async def _dispatch(self, now: float) -> None:
        """Hand what is deliverable to the waiting polls, oldest poll first;
        answer those whose agent was retired. A hand-out whose ``sent`` cannot
        be committed (the database away) ends the round: the polls wait on,
        and it is tried again ``DISPATCH_RETRY`` later (or at the next message),
        not answered to whichever request set it off (a create that was
        stored came back 504 so)."""
        self.dispatch_retry_at = None
        for poll in list(self.waiters):
            if _ended(poll):
                self.waiters.remove(poll)
                continue
            if not self._active(poll):
                self.waiters.remove(poll)
                _answer(poll, RETIRED)
                continue
            try:
                answer = await self._take_for(poll, now)
            except (DatabaseUnavailable, OutcomeUnknown) as exc:
                self.dispatch_retry_at = now + DISPATCH_RETRY
                log.warning("commands of deployment %s could not be handed out (%s); trying again in %g s",
                            self.deployment_hash, exc.reason, DISPATCH_RETRY,
                            extra={"event": "dispatch_failed", "deployment_hash": self.deployment_hash})
                return
            if answer is None:
                if _ended(poll):
                    self.waiters.remove(poll)
                continue
            self.waiters.remove(poll)
            if not _answer(poll, answer) and not isinstance(answer, PollRetired):
                await self._put_back(answer, now, POLL_CLOSED)  # cannot be: it was open just now

    async def _undeliverable(self, delivery: Delivery, reason: str, now: float) -> None:
        if isinstance(delivery, CancelNotice):
            self.queue.notice_again(delivery.command_id)
            await self._dispatch(now)
            return
        command = self.queue.get(delivery.id)
        if command is None or command.status is not CommandStatus.SENT:
            return  # finished, or reported on by the agent meanwhile: it has it
        await self._change(command, undelivered_change(command, reason), now)

    async def _report(self, report: CommandReport, agent_id: str, now: float) -> tuple[Command | None, bool]:
        if report.command_id.startswith(cancel_notice_id("")):
            # The agent's answer to a cancel notice: nothing to record, if there was one.
            cancelled = report.command_id.removeprefix(cancel_notice_id(""))
            target = (self.queue.get(cancelled) or await self._reload(cancelled)) if cancelled else None
            if target is None or not target.cancel_requested:
                raise UnknownCommand(report.command_id)
            return None, False
        command = self.queue.get(report.command_id)
        if command is None or not command.status.with_agent:
            # Not with the agent as far as this actor knows: another replica may
            # have handed it over (or finished it) a moment ago. The store says.
            stored = await self._reload(report.command_id)
            if stored is None:
                raise UnknownCommand(report.command_id)
            command = stored
        if self._given_back_to(command, agent_id):
            # Given back to the queue as undelivered (its socket's ``received``
            # came too late, its poll seemed gone), yet the agent ran it: the
            # report is its acknowledgement, as ``received`` or a poll's
            # ``last_command_id`` would have been. Refused, the result was lost
            # and the next poll ran the command a second time.
            command = await self._change(command, delivery_change(agent_id, ACKNOWLEDGED_BY_REPORT), now)
        change = report_change(command, report, agent_id, now)
        if change is None:
            return command, False  # a retried final report: idempotent
        return await self._change(command, change, now), True

    async def _tick(self, now: float) -> None:
        self.dispatch_retry_at = None  # due now: dispatched below if a poll waits (else nothing to hand out)
        for command, event in self.queue.overdue(now):
            try:
                await self._change(command, deadline_change(event), now)  # its events (a system_alert) go out with it
            except Conflict:
                # Another replica changed it first (it fired this deadline, or the
                # agent reported): nothing to say; the next tick looks again.
                await self._reload(command.id)
                continue
            log.info("command %s of deployment %s %s", command.id, self.deployment_hash,
                     "timed out" if event is CommandEvent.TIME_OUT else "expired",
                     extra={"event": "command_" + event.value, "command_id": command.id,
                            "deployment_hash": self.deployment_hash})
        self.waiters = [p for p in self.waiters if not _ended(p)]
        if self.waiters:
            await self._dispatch(now)
        if len(self.queue) or self.waiters:
            self.idle_since = now
        elif now - self.idle_since >= IDLE_STOP:
            if self.queue_owner is None:
                self.context.stop()
                return
            self.idle_since = now  # not again before another IDLE_STOP, should the owner keep it
            # A busy owner hears again later; a stopping one stops us anyway.
            self.queue_owner.offer(QueueIdle(self.deployment_hash))

    async def on_stop(self) -> None:
        if self.stats is not None:
            self.stats.forget_queue(self.deployment_hash)
        for poll in self.waiters:
            poll.reply.end()  # nothing for them: they answer 204 at once
        self.waiters.clear()


def _execute_audit(command: Command, now: float, executed: Executed) -> AuditEntry:
    """The audit record of how ``command`` ended once delivered (the seed's
    ``command.execute``: its agent's outcome, a time-out, its agent retired),
    written in the same commit as the change."""
    return AuditEntry(at=now, tenant=command.tenant, actor=executed.actor, action="command.execute",
                      resource_type="command", resource_id=command.id, outcome=executed.outcome,
                      details={"type": command.type, "deployment_hash": command.deployment_hash})


def _ended(poll: Poll) -> bool:
    """Whether the poller closed its end: it takes nothing any more."""
    return poll.reply.closed


def _answer(poll: Poll, answer: Delivery | PollRetired) -> bool:
    """Send a waiting poll its one answer; False if the poll ended meanwhile."""
    return poll.reply.give(answer)


def queue_spec(deployment_hash: str, settings: Settings, *, store: ActorRef, reader: StoreReader,
               notifier_path: str | None = None, directory_path: str | None = None,
               follows_path: str | None = None, queue_owner: ActorRef | None = None,
               stats: CommandStats | None = None, clock: Callable[[], float] = time.time,
               backoff: Backoff | None = None,
               backoff_on: Callable[[BaseException], bool] | None = None) -> ActorSpec:
    """Transient: restarted after a crash (reloading from the store), gone once
    idle. ``backoff``, ``backoff_on``: the database's pacing (``ActorSpec``'s),
    with a database server: a queue that could not read its commands for want
    of it is said in one line, not with a traceback, and restarted at its pace."""
    return ActorSpec(
        name=deployment_hash,
        factory=lambda: DeploymentQueueActor(deployment_hash, settings, store=store, reader=reader,
                                             notifier_path=notifier_path, directory_path=directory_path,
                                             follows_path=follows_path, queue_owner=queue_owner, stats=stats,
                                             clock=clock),
        restart=Restart.TRANSIENT,
        mailbox_size=1024,
        shutdown_timeout=5.0,
        backoff=backoff,
        backoff_on=backoff_on,
    )
