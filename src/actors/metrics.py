"""The metrics actor (``/root/metrics``): keeps the embedded metric store.

Agents' written samples arrive as ``WriteSamples`` (all of a request, or none
when a series limit refuses it); PromQL reads are asked of it and evaluated
against the asking tenant's series only. With an external engine
(``metrics.url``) it still keeps the series (not their samples), so the same
series limits hold before a write is forwarded. It also keeps the probes'
host metrics at 15 s (``NodeSamples``, told by the roster for each report),
queryable as ``trioscope_node_*`` with the embedded engine (told keyed by probe
and bucket, so that they wait beside the mailbox's other messages while a read
runs: ``NODE_BUCKETS_WAITING``), and drops a probe's
host series when the roster forgets the probe (``ForgetNode``): the store for
them holds series of at most ``agents.max_agents`` probes, so those of probes
gone would otherwise refuse the new ones' until ``storage.max_data_age``.
Host metrics it could not keep are counted (``NodeSeriesCounters``, exported
at ``/metrics``), not only logged.

Reads run in worker threads beside the actor (``Later``), which goes on with
its next messages meanwhile: writes are never held up by a read, and one
tenant's long reads hold up no other tenant's (while the actor waited for each
read, one viewer looping large reads within its share of the server's time put
another tenant's query at p90 72-227 ms, and every agent's write behind them).
The store is kept safe for such readers (``metrics``' store docstring). A
tenant's reads take turns (``_turns``: one at a time, in order), and at most
``READS_AT_ONCE`` run at once (each may hold ``metrics.max_query_samples``
samples' worth of answer); a read that cannot start by its deadline is
answered "timed out". Evaluated on the event loop, one query of 12
regular-expression matchers over 2,000 label values of 1 KB held every request
of the server (``/health`` included) for 36-47 s: in a thread, the read gives
the loop's thread the interpreter every ``PAUSE_EVERY`` seconds of its work
(``ReadClock``), stops at its asker's deadline, and its CPU time is written to
its ``ReadCost`` for the asker to charge to its reader.

Error handling: a read changes nothing, so whatever goes wrong evaluating one
is its asker's answer, never a crash (a crash loop of this actor would exceed
the root supervisor's restart intensity and stop the server): the domain's
refusals as they are, a panic of the PromQL parser as ``BadQuery``, anything
else logged once with the query and answered ``QueryFailed``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import trio

from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.rates import Lull
from trioscope.runtime import Actor, Later, Published, in_thread

log = logging.getLogger(__name__)

NODE_METRICS = 16
"""Most host metrics kept per probe (a report has about a dozen)."""
NODE_BUCKETS_WAITING = 4
"""A probe's ``NodeSamples`` that may wait in the actor's mailbox at once, one
per 15 s bucket of the store, for the buckets this many before the report was
received (the roster tells older ones plainly; ``keyed_capacity``: this times
``agents.max_agents``):
a read holds the actor up to ``metrics.query_timeout`` (30 s by default), and
told plainly, at a few hundred reports a second, the samples of a 10 s read
filled the 4,096-message mailbox and the rest were dropped."""
HOSTNAMES_KEPT_PER_AGENT = 2
"""The probes whose host names are kept, per ``agents.max_agents`` (forgotten
ones' names go with ``ForgetNode``; those that stopped by themselves, with
their series: ``_forget_hostnames``): a bound for a burst of new probes."""
_UNASSIGNED = ""
"""Where the host metrics of probes enrolled in no deployment are kept (no tenant is named "")."""
REFUSALS_SAID_EVERY = 600.0
"""Seconds between two warnings that host metrics were not kept (at debug level
between them: while the store stays full, every report of a new host is refused)."""
OFF_LOOP_SAMPLES = 1000
"""A write of more samples is stored in a worker thread (``MetricsActor._write``);
fewer cost less done here than handed over (~2 ms)."""
READS_AT_ONCE = 2
"""Reads evaluated at once, of different tenants (a tenant's take turns): more
would only share the one interpreter, and each holds its answer's memory."""
PAUSE_EVERY = 0.002
"""Seconds of a read's work between two pauses that hand the interpreter to the
event loop's thread (``ReadClock``)."""
PAUSE = 0.00001
"""How long the read's thread sleeps at a pause: long enough for the loop's
thread, if it waits for the interpreter, to take it (a sleep of 0 seldom lets
it). Without pauses the loop waits up to ``sys.getswitchinterval()`` (5 ms)
each time it wakes up: measured during a 6 s read, ``/health`` took 9.5-10 ms
more at the median than idle; with them, 1.4-1.7 ms more."""


@attrs.frozen
class NodeSamples:
    """A probe's host metrics from one report (told by the roster), kept as
    ``trioscope_node_<metric>{agent_id, hostname}`` series of the tenant whose
    deployment the probe is enrolled in (or of no tenant: visible to all with
    ``auth.show_unassigned_agents``, as the probe's other reports are)."""

    reporter_id: str
    hostname: str
    at: float
    values: dict[str, float]


@attrs.frozen
class ForgetNode:
    """The roster forgot probe ``reporter_id`` (to make room for another at
    ``agents.max_agents``): its host series go now, whichever tenant holds them."""

    reporter_id: str


@attrs.define
class NodeSeriesCounters:
    """What became of the probes' host metrics (``NodeSamples``), over the
    server's life: read by ``/metrics`` at scrape time."""

    refused: int = 0
    """Reports whose host metrics were not kept: they would have passed the
    store's series limit (``agents.max_agents`` probes' worth)."""
    forgotten: int = 0
    """Host series dropped with the probes the roster forgot (``ForgetNode``)."""


@attrs.frozen
class GetNodeSeriesCounters:
    """Answered with the actor's ``NodeSeriesCounters`` (the same object across its restarts)."""


@attrs.frozen
class WriteSamples:
    """Record one request's samples of one deployment; answers its ``metrics.WriteOutcome``.
    Refused with ``WriteLimitExceeded`` (nothing recorded)."""

    tenant: str
    deployment_hash: str
    samples: list[metrics.Sample]


@attrs.define
class ReadCost:
    """What a read cost the server: written by the actor before it answers or
    refuses the read, for its asker to read once answered."""

    cpu_seconds: float = 0.0
    """CPU time of the read's thread (``time.thread_time``)."""


@attrs.frozen
class InstantQuery:
    """``/api/v1/query``: answers the Prometheus ``data`` object.

    Every read has a ``deadline`` (``time.monotonic``; None: ``metrics.query_timeout``
    after the actor takes it), where its asker stops waiting, and a ``cost``
    the actor writes."""

    tenant: str
    query: str
    at: float
    deadline: float | None = attrs.field(default=None, kw_only=True)
    cost: ReadCost = attrs.field(factory=ReadCost, kw_only=True, eq=False, repr=False)


@attrs.frozen
class RangeQuery:
    """``/api/v1/query_range``: answers the Prometheus ``data`` object."""

    tenant: str
    query: str
    start: float
    end: float
    step: float
    deadline: float | None = attrs.field(default=None, kw_only=True)
    cost: ReadCost = attrs.field(factory=ReadCost, kw_only=True, eq=False, repr=False)


@attrs.frozen
class FindSeries:
    """``/api/v1/series``: the label sets matching any selector."""

    tenant: str
    selectors: tuple[str, ...]
    start: float
    end: float
    deadline: float | None = attrs.field(default=None, kw_only=True)
    cost: ReadCost = attrs.field(factory=ReadCost, kw_only=True, eq=False, repr=False)
    limit: int | None = attrs.field(default=None, kw_only=True)
    """Answer at most one more than this many (the asker says the rest was cut)."""


@attrs.frozen
class LabelNames:
    """``/api/v1/labels``: the names of the labels of series (matching any selector, if any)
    with a sample between ``start`` and ``end``; answers them sorted."""

    tenant: str
    selectors: tuple[str, ...]
    start: float = -math.inf
    end: float = math.inf
    deadline: float | None = attrs.field(default=None, kw_only=True)
    cost: ReadCost = attrs.field(factory=ReadCost, kw_only=True, eq=False, repr=False)
    limit: int | None = attrs.field(default=None, kw_only=True)
    """As ``FindSeries.limit``."""


@attrs.frozen
class LabelValues:
    """``/api/v1/label/<name>/values``: as ``LabelNames``, the values of label ``name``."""

    tenant: str
    name: str
    selectors: tuple[str, ...]
    start: float = -math.inf
    end: float = math.inf
    deadline: float | None = attrs.field(default=None, kw_only=True)
    cost: ReadCost = attrs.field(factory=ReadCost, kw_only=True, eq=False, repr=False)
    limit: int | None = attrs.field(default=None, kw_only=True)
    """As ``FindSeries.limit``."""


Read = InstantQuery | RangeQuery | FindSeries | LabelNames | LabelValues


class ReadClock:
    """The clock a read's budget reads (every ``metrics.Budget`` slice of work,
    1-4 ms) in its worker thread: where the read, every ``PAUSE_EVERY`` seconds,
    hands the interpreter to the event loop's thread (a thread of pure Python
    holds it until another has waited 5 ms for it), and where a read whose
    actor stopped waiting for it learns it (``stop``: the budget then finds
    its deadline passed)."""

    def __init__(self, *, pause_every: float = PAUSE_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: the one read deadlines are in (``MetricsActor.monotonic``)."""
        self._pause_every = pause_every
        self._clock = clock
        self._paused = clock()
        self._stopped = False

    def __call__(self) -> float:
        if self._stopped:
            return math.inf
        now = self._clock()
        if now - self._paused >= self._pause_every:
            time.sleep(PAUSE)
            now = self._paused = self._clock()
        return now

    def stop(self) -> None:
        """The read is abandoned: it stops at its next reading of the clock."""
        self._stopped = True


class QueryFailed(Exception):
    """A read the embedded engine failed to evaluate for a reason of its own (a
    bug, not the query's fault): logged with the query, answered to the asker
    only (Prometheus: 422 ``execution``)."""


@attrs.frozen
class GetStats:
    """Answers the store's ``StoreStats``."""


@attrs.frozen
class _Expire:
    pass


@attrs.frozen(eq=False)
class MetricStores:
    """The actor's stores, kept for its spec (``Kept``), not made by the
    actor: a crash restarts the actor with every series and sample as it was
    (an agent's write answered 2xx is not lost to a bug in an unrelated query)."""

    written: metrics.MetricStore
    """What agents write (``WriteSamples``)."""
    nodes: metrics.MetricStore
    """Probes' host metrics (``NodeSamples``), apart from what agents write:
    bounded by the number of agents (agents.max_agents) times the dozen
    metrics of a host."""
    node_counters: NodeSeriesCounters = attrs.field(factory=NodeSeriesCounters)

    @classmethod
    def for_settings(cls, settings: Settings) -> MetricStores:
        retention = settings.storage.max_data_age
        return cls(
            metrics.MetricStore(metrics.StoreLimits(
                max_series_per_deployment=settings.metrics.max_series_per_deployment,
                max_series_per_tenant=settings.metrics.max_series_per_tenant,
                max_series=settings.metrics.max_series,
                max_label_bytes_per_tenant=settings.metrics.max_label_bytes_per_tenant,
                max_label_bytes=settings.metrics.max_label_bytes,
                max_samples_per_tenant=settings.metrics.max_samples_per_tenant,
                max_samples=settings.metrics.max_samples,
                retention=retention,
                keep_samples=not settings.metrics.url)),
            metrics.MetricStore(metrics.StoreLimits(
                max_series_per_deployment=NODE_METRICS * settings.agents.max_agents,
                max_series_per_tenant=NODE_METRICS * settings.agents.max_agents,
                retention=retention)))


class MetricsActor(Actor):
    """Keeps the ``MetricStores``; see the module docstring."""

    refusals = (metrics.WriteLimitExceeded, metrics.BadQuery, metrics.UnsupportedQuery, metrics.QueryTooExpensive,
                metrics.QueryTimedOut, metrics.QueryExecutionError, QueryFailed)

    def __init__(self, settings: Settings, directory: Published[AgentDirectory] | None = None,
                 stores: MetricStores | None = None, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``stores``: what an earlier incarnation kept (the spec's ``Kept``);
        None: stores of its own, lost with it. ``clock``: the samples' (wall)
        clock, when they are written and expire; ``monotonic``: the reads'
        deadlines' (their askers' ``time.monotonic``) and the log's lulls'."""
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.directory = directory
        """Which deployment (and so tenant) a probe is enrolled in, as the directory publishes it."""
        self.max_samples = settings.metrics.max_query_samples
        if stores is None:
            stores = MetricStores.for_settings(settings)
        self.store = stores.written
        self.nodes = stores.nodes
        self.node_counters = stores.node_counters
        self._refusal_said = Lull(REFUSALS_SAID_EVERY)
        """How often host metrics not kept are said at warning level."""
        self._hostnames: dict[str, dict[str, str]] = {}
        """Probe -> tenant -> the host name its series were last written under
        in that tenant: a probe that renames its host has its series under the
        old name dropped (one probe naming its host anew on every report filled
        the store alone), in that tenant only. Keyed by probe alone, a report
        under an enrolled agent's lapsed id, unsigned and naming another host,
        dropped the enrolled tenant's history of that host."""
        self._reading = trio.CapacityLimiter(READS_AT_ONCE)
        self._turns: dict[str, trio.Lock] = {}
        """Tenant -> its reads' turn, while one runs or waits (module docstring)."""

    def _view(self, tenant: str) -> metrics.SeriesView:
        views = [self.store.tenant(tenant), self.nodes.tenant(tenant)]
        if self.settings.auth.show_unassigned_agents:
            views.append(self.nodes.tenant(_UNASSIGNED))
        return metrics.MergedView(*views)

    def _forget_hostnames(self) -> None:
        """Forget the host name of each probe and tenant whose host series all
        expired: a probe silent past ``storage.max_data_age`` stops without a
        ``ForgetNode``, and every probe id ever seen kept its names until
        the clear at ``HOSTNAMES_KEPT_PER_AGENT`` times ``agents.max_agents``
        (which forgets live probes' names too)."""
        for probe, names in list(self._hostnames.items()):
            for tenant in [t for t in names if not self.nodes.tenant(t).count_with_pair("agent_id", probe)]:
                del names[tenant]
            if not names:
                del self._hostnames[probe]

    def _record_node(self, message: NodeSamples) -> None:
        tenant, deployment_hash = _UNASSIGNED, ""
        if self.directory is not None:
            found = self.directory.value
            agent = found.reporting_agent(message.reporter_id)
            deployment = found.deployments.get(agent.deployment_hash) if agent is not None else None
            if agent is not None and deployment is not None:
                tenant, deployment_hash = deployment.tenant, agent.deployment_hash
        names = self._hostnames.get(message.reporter_id)
        renamed = names.get(tenant) if names is not None else None
        if renamed is not None and renamed != message.hostname:
            removed = self.nodes.remove_with("agent_id", message.reporter_id, tenant=tenant)
            self.node_counters.forgotten += removed
        elif names is None and len(self._hostnames) >= HOSTNAMES_KEPT_PER_AGENT * self.settings.agents.max_agents:
            self._hostnames.clear()  # of probes forgotten long ago, mostly: those reporting come back at once
        self._hostnames.setdefault(message.reporter_id, {})[tenant] = message.hostname
        base = {"agent_id": message.reporter_id, "hostname": message.hostname}
        if tenant:
            base.update({metrics.TENANT_LABEL: tenant, metrics.DEPLOYMENT_LABEL: deployment_hash})
        samples = [metrics.Sample(tuple(sorted({**base, "__name__": f"trioscope_node_{name}"}.items())), value,
                                  message.at)
                   for name, value in list(message.values.items())[:NODE_METRICS] if math.isfinite(value)]
        try:
            self.nodes.write(tenant, deployment_hash, samples, self.clock())
        except metrics.WriteLimitExceeded:
            self.node_counters.refused += 1
            log.log(self._refusal_said.level(self.monotonic()),
                    "metrics: host metrics of agent %s not kept: the store holds the host series of %d probes "
                    "(agents.max_agents) already; counted in app_node_metrics_refused_total",
                    message.reporter_id[:80], self.settings.agents.max_agents,
                    extra={"event": "node_series_refused", "agent_id": message.reporter_id[:80]})

    def _forget_node(self, message: ForgetNode) -> None:
        self._hostnames.pop(message.reporter_id, None)
        removed = self.nodes.remove_with("agent_id", message.reporter_id)
        self.node_counters.forgotten += removed
        if removed:
            log.debug("metrics: %d host series of forgotten agent %s dropped", removed, message.reporter_id[:80])

    async def _read_in_turn(self, message: Read) -> Any:
        """``message``'s answer (``Later``: beside the actor's next messages),
        once its tenant's earlier reads are answered and fewer than
        ``READS_AT_ONCE`` run; "timed out" if that is not by its deadline."""
        deadline = self._deadline(message)
        if message.deadline is None:
            message = attrs.evolve(message, deadline=deadline)  # where its work stops too (``_read``)
        turn = self._turns.get(message.tenant)
        if turn is None:
            turn = self._turns[message.tenant] = trio.Lock()
        try:
            async with _taken(turn, deadline, self.monotonic), _taken(self._reading, deadline, self.monotonic):
                return await self._read_off_loop(message)  # which stops at the deadline by itself
        finally:
            if not turn.locked() and not turn.statistics().tasks_waiting and self._turns.get(message.tenant) is turn:
                del self._turns[message.tenant]  # a lock per tenant reading now, no more

    async def _read_off_loop(self, message: Read) -> Any:
        """``message``'s answer, worked out in a worker thread; its thread's CPU
        time written to ``message.cost``, answered or refused.

        Cancelled (the actor stops), the thread is abandoned and stops at its
        next reading of the clock, its answer discarded: a read changes nothing."""
        clock = ReadClock(clock=self.monotonic)

        def timed() -> Any:
            began = time.thread_time()
            try:
                return self._answer_read(message, clock)
            finally:
                message.cost.cpu_seconds = time.thread_time() - began

        try:
            return await in_thread(timed, refusals=self.refusals, abandon_on_cancel=True)
        finally:
            clock.stop()

    async def _write(self, message: WriteSamples) -> metrics.WriteOutcome:
        """``message``'s samples stored: here for a few, else in a worker thread
        while this actor waits (nothing else changes the store meanwhile; not
        abandoned if cancelled: a write is whole or not at all). 10,000 points
        held the event loop ~15-25 ms; in a thread the loop has its turns."""
        if len(message.samples) <= OFF_LOOP_SAMPLES:
            return self.store.write(message.tenant, message.deployment_hash, message.samples, self.clock())
        return await in_thread(self.store.write, message.tenant, message.deployment_hash, message.samples,
                               self.clock(), refusals=(metrics.WriteLimitExceeded,))

    def _deadline(self, message: Read) -> float:
        """Where ``message``'s read stops (``monotonic``): its asker's deadline,
        else ``metrics.query_timeout`` after now."""
        if message.deadline is not None:
            return message.deadline
        return self.monotonic() + self.settings.metrics.query_timeout

    def _read(self, message: Read, clock: metrics.Clock) -> Any:
        # Every read's work is bounded by the budget and by its asker's deadline
        # (``Budget``, which reads ``clock`` between slices of the work).
        bounds: dict[str, Any] = {"max_samples": self.max_samples, "clock": clock,
                                  "deadline": self._deadline(message)}
        if isinstance(message, InstantQuery):
            return metrics.instant_query(self._view(message.tenant), message.query, message.at, **bounds)
        if isinstance(message, RangeQuery):
            return metrics.range_query(self._view(message.tenant), message.query, message.start, message.end,
                                       message.step, **bounds)
        if isinstance(message, FindSeries):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.series_matching(self._view(message.tenant), selectors, message.start, message.end,
                                           limit=message.limit, **bounds)
        view = self._view(message.tenant)
        selectors = [metrics.parse_selector(text) for text in message.selectors]
        if isinstance(message, LabelNames):
            return metrics.label_names(view, selectors, message.start, message.end, limit=message.limit, **bounds)
        return metrics.label_values(view, message.name, selectors, message.start, message.end, limit=message.limit,
                                    **bounds)

    def _answer_read(self, message: Read, clock: metrics.Clock) -> Any:
        try:
            return self._read(message, clock)
        except self.refusals:
            raise
        except RecursionError:
            # Not expected within the parser's bounds (metrics.MAX_NESTING, MAX_OPERATORS); a read
            # changes nothing, so its failure is the asker's, not a crash that would empty the store.
            log.error("metrics: query %.200r nests too deeply to evaluate", _described(message))
            raise metrics.QueryTooExpensive("the query nests too deeply to evaluate") from None
        except Exception as exc:  # any failure of a read is its asker's answer (module docstring)
            log.exception("metrics: %s of tenant %r failed: %.500r", type(message).__name__, message.tenant,
                          _described(message))
            raise QueryFailed(f"the embedded engine failed to evaluate the query ({type(exc).__name__}); "
                              "the server logged it") from None
        except BaseException as exc:
            if not _is_panic(exc):
                raise  # cancellation, KeyboardInterrupt: not the query's
            # The PromQL parser (Rust) panics on some numbers out of its range (``x[1e30]``,
            # ``x offset 1e400``), after its hook wrote to stderr: those known are refused before
            # it (``MAX_DURATION``). Another is the query's too, answered as Prometheus answers
            # what it cannot parse, and logged: the parser's own stderr lines then go with it.
            log.warning("metrics: the PromQL parser panicked on %.500r of tenant %r: %s", _described(message),
                        message.tenant, exc)
            raise metrics.BadQuery(f"cannot parse the query: {str(exc)[:200]}") from None

    async def on_start(self) -> None:
        self.context.every(self.settings.storage.cleanup_interval, _Expire())

    async def handle(self, message: Any) -> Any:
        if isinstance(message, NodeSamples):
            self._record_node(message)
            return None
        if isinstance(message, ForgetNode):
            self._forget_node(message)
            return None
        if isinstance(message, GetNodeSeriesCounters):
            return self.node_counters
        if isinstance(message, WriteSamples):
            return await self._write(message)
        if isinstance(message, (InstantQuery, RangeQuery, FindSeries, LabelNames, LabelValues)):
            return Later(functools.partial(self._read_in_turn, message))
        if isinstance(message, GetStats):
            return self.store.stats()
        if isinstance(message, _Expire):
            now = self.clock()
            removed = self.store.expire(now) + self.nodes.expire(now)
            if removed:
                log.debug("metrics: %d series expired", removed)
                self._forget_hostnames()
            return None
        return await super().handle(message)


@contextlib.asynccontextmanager
async def _taken(resource: trio.Lock | trio.CapacityLimiter, deadline: float,
                 clock: Callable[[], float]) -> AsyncIterator[None]:
    """``resource`` held, if it could be taken by ``deadline`` (by ``clock``)."""
    taken = False
    with trio.move_on_at(trio.current_time() + deadline - clock()):
        await resource.acquire()
        taken = True
    if not taken:
        raise metrics.QueryTimedOut("the query waited past metrics.query_timeout for other queries to end")
    try:
        yield
    finally:
        resource.release()


def _is_panic(exc: BaseException) -> bool:
    """A Rust panic raised through PyO3 (``pyo3_runtime.PanicException``, a BaseException
    that cannot be imported by name)."""
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def _described(message: Read) -> str:
    """What a read asked, for the log."""
    if isinstance(message, (InstantQuery, RangeQuery)):
        return message.query
    if isinstance(message, LabelValues):
        return f"{message.name} of {', '.join(message.selectors)}"
    return ", ".join(message.selectors)
