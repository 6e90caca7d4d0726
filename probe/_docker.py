"""Containers from a Docker-API engine (Docker, or Podman's compatible socket)
through the docker SDK: one list call, a one-shot stats call per running
container, and an inspect per container the list shows new or changed. CPU
percent is computed across cycles from the engine's cumulative counters, so it
needs no second stats sample per cycle.

What the list has (name, state, status text, networks and their addresses,
published ports, labels) is taken from it, as the engine answers it afresh
every cycle: a rename or a network connect shows in the next report. The
inspect is only for what the list lacks (environment, command, main pid), and
is repeated only when the list shows a new state, status text or image.

A container's command and environment values are masked as a process's
command line is (``_masking``): the engine's API shows them to anyone who may
read the topology otherwise.

The SDK is loaded (``_engine.connect``) only once the engine's socket is
there: a cycle finds a missing one without it."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from trioscope.wire import (
    KEEP_LISTED_SECONDS, ContainerInfo, ContainerNetwork, ContainerStats, DockerInfo, PortMapping,
)

from ._engine import EngineUnreachable, connect, engine_errors, engine_problem
from ._masking import masked_cmdline, masked_label, masked_variable

if TYPE_CHECKING:
    import docker  # loaded by ``_engine.connect`` when the first cycle connects

log = logging.getLogger("trioscope_probe")
MB = 1024 * 1024
_STATES = {
    **{state: state for state in ("created", "running", "paused", "restarting", "removing", "exited", "dead")},
    # Podman's own states (its Docker-compatible API passes some of them through).
    "configured": "created", "initialized": "created", "stopped": "exited",
    # While it waits out the stop's grace period the container still runs (Docker
    # says "running" then); the status text from the list says "Stopping".
    "stopping": "running",
}
"""The engine's state -> the wire's ``ContainerState``."""
STATS_AT_ONCE = 8
"""Containers' statistics asked of the engine at once (each call is a
container's whole sample: Docker takes ~1-2 s for one). One after another, ten
containers whose calls took 3 s made a cycle of 30 s, and heartbeats waited
with it; 100 would have passed the stale threshold."""
STATS_BUDGET = 10.0
"""Seconds a cycle waits for the statistics of its containers; those not in by
then are left out of this report (the containers are not)."""


def _state(raw: str) -> str | None:
    """The wire's state for the list's ``State`` (Docker's, or Podman's
    "stopping", ...), None for one we do not know."""
    return _STATES.get(raw.lower())


def _unknown_state(status: str) -> str:
    """A guess from the status text for a state we do not know: the engine
    says "Up ..." of a container whose process runs."""
    return "running" if status.startswith("Up") else "exited"


def _name(summary: dict[str, Any]) -> str:
    """The container's own name from the list's ``Names``: Docker also lists the
    aliases of legacy links there ("/web/db" beside "/db"), in no set order."""
    names = [n.lstrip("/") for n in summary.get("Names") or [] if isinstance(n, str)]
    return next((n for n in names if "/" not in n), names[0] if names else "")


_SPAN = re.compile(r"Less than a second|About an? (second|minute|hour)|(\d+) (second|minute|hour|day|week|month|year)s?")
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2592000,
            "year": 31536000}


def run_shape(status: str) -> tuple[str, float]:
    """A container's status text without its time, and that time in seconds
    (how long it has been up, or since it exited; -1 without one): "Up 17
    minutes (healthy)" is ("Up … (healthy)", 1020). The time only grows while
    a run goes on; a new run starts it again from zero."""
    found = _SPAN.search(status)
    if found is None:
        return status, -1.0
    about, count, unit = found.groups()
    seconds = 0.0 if found.group() == "Less than a second" else \
        _SECONDS[about] if about else int(count) * _SECONDS[unit]
    return status[:found.start()] + "…" + status[found.end():], float(seconds)


class ContainerCollector:
    """``collect()`` answers the engine's containers, or while it is unreachable
    that it is and why (``DockerInfo.reachable``, ``problem``; logged once per
    change): never None, which a report says of a host with no engine.

    Error handling: when a cycle's calls fail, the containers of the last cycle
    that succeeded are answered again, without statistics, with when it was
    (``DockerInfo.listed_at``), for up to ``KEEP_LISTED_SECONDS`` after it;
    then none until the engine answers. The probe, not the server, keeps
    them: its report is then the whole of its host, which a restarted server
    or a replica rebuilding from the newest reports shows as any other, and
    the server finds the kept containers' addresses and published ports in it.
    A server from before ``reachable`` shows them in their last state.

    ``clock``: seconds, monotonic (``time.monotonic``), for that bound."""

    def __init__(self, docker_host: str | None, *, env_values: bool = False, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.docker_host = docker_host
        self.env_values = env_values
        self.timeout = timeout
        self._clock = clock
        self._client: docker.DockerClient | None = None
        self._cpu: dict[str, tuple[int, int]] = {}
        self._net: dict[str, tuple[float, int, int]] = {}
        """Previous (monotonic time, rx, tx) per container, for byte rates."""
        self._inspected: dict[str, tuple[tuple[Any, ...], dict[str, Any], float]] = {}
        """Inspect results by container, kept while the listing shows it unchanged."""
        self._version: str | None = None
        self._reachable: bool | None = None
        self._last: DockerInfo | None = None
        """The last answer of a cycle that succeeded."""
        self._listed_at: tuple[datetime, float] | None = None
        """When that cycle was: on the wire's clock (UTC) and on ``clock``."""
        self._kept: list[ContainerInfo] | None = None
        """``_last``'s containers without statistics, as an outage's reports
        repeat them (made at its first failed cycle)."""
        self._unknown: set[str] = set()
        """Engine states already logged as unknown (each is logged once)."""
        self._odd: set[str] = set()
        """Containers whose engine answer could not be read, already logged (each once)."""
        self._stats_turn = 0
        """Where the next cycle starts asking for statistics among the running containers:
        those a cycle had no time for come first in the next (``_with_stats``)."""
        self._stats_short_said = False

    def _connect(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(self.docker_host, self.timeout)
        return self._client

    def collect(self) -> DockerInfo:
        engine = self.docker_host or "(DOCKER_HOST)"
        try:
            client = self._connect()
            api = client.api
            if self._version is None:  # slow on some engines (Podman: ~0.5 s), and it does not change
                self._version = str(api.version().get("Version", ""))
            version = self._version
            listed = api.containers(all=True)
            if not isinstance(listed, list):
                import docker.errors  # loaded by ``_connect``: a lookup

                raise docker.errors.DockerException(f"the container list is a {type(listed).__name__}, not a list")
            containers = self._with_stats(api, [self._readable(api, summary) for summary in listed])
        except EngineUnreachable as exc:  # matched first: a missing socket is said without loading the SDK
            return self._unreachable(str(exc))
        except engine_errors() as exc:
            return self._unreachable(engine_problem(exc, self.docker_host))
        if self._reachable is not True:
            log.info("container engine %s: version %s, %d containers", engine, version, len(containers))
        self._reachable = True
        self._kept = None
        found = [c for c in containers if c is not None]
        alive = {c.id for c in found}
        self._cpu = {k: v for k, v in self._cpu.items() if k in alive}
        self._net = {k: v for k, v in self._net.items() if k in alive}
        self._inspected = {k: v for k, v in self._inspected.items() if k in alive}
        self._last = DockerInfo(containers=found[:10_000], engine_version=str(version)[:256])
        self._listed_at = (datetime.now(UTC), self._clock())
        return self._last

    def _unreachable(self, problem: str) -> DockerInfo:
        """A cycle the engine failed (``problem``, in words): said so, with
        the containers it last listed, as of then, for up to
        ``KEEP_LISTED_SECONDS`` after; then none."""
        engine = self.docker_host or "(DOCKER_HOST)"
        self._client = None
        self._version = None
        first = self._reachable is not False
        self._reachable = False
        if first:
            log.warning("container engine %s unreachable: %s", engine, problem)
        if self._last is None or self._listed_at is None:  # none listed since the probe started
            return DockerInfo(reachable=False, problem=problem[:256])
        listed_at, listed = self._listed_at
        if self._clock() - listed > KEEP_LISTED_SECONDS:
            if self._kept is None or self._kept:
                log.warning("container engine %s: its containers, last listed %s, are no longer reported (kept "
                            "for %g h)", engine, listed_at.isoformat(timespec="seconds"), KEEP_LISTED_SECONDS / 3600)
            self._kept = []
        elif self._kept is None:
            # Statistics are of one moment: a repeated listing goes without them.
            self._kept = [attrs.evolve(c, stats=None) for c in self._last.containers]
            if self._kept:
                log.info("container engine %s: reporting the %d containers it last listed, as last known, for up "
                         "to %g h while it does not answer", engine, len(self._kept), KEEP_LISTED_SECONDS / 3600)
        return DockerInfo(containers=self._kept, engine_version=self._last.engine_version, reachable=False,
                          problem=problem[:256], listed_at=listed_at)

    def _readable(self, api: Any, summary: Any) -> ContainerInfo | None:
        """``_container``, or None (said once per container) where the engine's
        answer for it has a field of another shape than the Docker API's (labels
        as a list, a counter null): that container is left out, not every
        report (an ``AttributeError`` ended the probe)."""
        try:
            return self._container(api, summary)
        except engine_errors():
            raise
        except Exception as exc:  # noqa: BLE001 - any shape the engine may answer: that container alone
            ident = str(summary.get("Id") if isinstance(summary, dict) else summary)[:64]
            if ident not in self._odd and len(self._odd) < 1024:
                self._odd.add(ident)
                log.warning("container engine %s: container %s left out of the reports, its answer cannot be "
                            "read (%s: %s)", self.docker_host or "(DOCKER_HOST)", ident[:12], type(exc).__name__,
                            str(exc)[:200])
            return None

    def _container(self, api: Any, summary: dict[str, Any]) -> ContainerInfo | None:
        container_id = summary["Id"]
        status_text = summary.get("Status") or ""
        # Inspect again only when the listing shows a change (state, status text,
        # image) or a new run: the inspect gives only what stays for a run of the
        # container (environment, command, its main pid). Not when only the
        # text's time moved ("Up 17 minutes", then 18): every container was
        # inspected again every minute, one after another, and 131 on a slow
        # engine made a report cycle of two minutes.
        shape, since = run_shape(status_text)
        fingerprint = (summary.get("State"), shape, summary.get("ImageID"))
        cached = self._inspected.get(container_id)
        if cached is not None and cached[0] == fingerprint and not since < cached[2]:
            details = cached[1]
            # Its time as listed now, which a new run's goes below ("Up 18
            # minutes", restarted, "Up 15 seconds"): not as first inspected.
            self._inspected[container_id] = (fingerprint, details, since)
        else:
            import docker.errors  # loaded by ``_engine.connect``: a lookup

            try:
                details = api.inspect_container(container_id)
            except docker.errors.APIError as exc:
                if exc.response is not None and exc.response.status_code in (404, 500):
                    return None  # removed between the list and the inspect (Podman answers 500)
                raise
            self._inspected[container_id] = (fingerprint, details, since)
        config = details.get("Config") or {}
        raw_state = str(summary.get("State") or (details.get("State") or {}).get("Status") or "")
        status = _state(raw_state)
        if status is None:
            if raw_state not in self._unknown:
                self._unknown.add(raw_state)
                log.warning("container engine %s: unknown container state %r (container %s, status %r), shown as %s",
                            self.docker_host or "(DOCKER_HOST)", raw_state[:64], container_id[:12],
                            status_text[:64], _unknown_state(status_text))
            status = _unknown_state(status_text)
        env = [entry.partition("=") for entry in config.get("Env") or []]
        # The list's own values where it has them (an engine that leaves one out: the inspect's).
        networks = (summary.get("NetworkSettings") or {}).get("Networks")
        if networks is None:
            networks = (details.get("NetworkSettings") or {}).get("Networks") or {}
        labels = summary.get("Labels")
        if labels is None:
            labels = config.get("Labels") or {}
        name = _name(summary) or (details.get("Name") or "").lstrip("/")
        created = summary.get("Created")
        return ContainerInfo(
            id=container_id,
            name=name[:256],
            image=(config.get("Image") or summary.get("Image") or "")[:1024],
            image_id=(details.get("Image") or "")[:256],
            state=status,  # type: ignore[arg-type]  # _STATES gives one of ContainerState's values, as a str
            status=status_text[:1024],
            created=datetime.fromtimestamp(created, UTC) if isinstance(created, (int, float)) else None,
            labels={k[:256]: masked_label(str(k), str(v))[:4096] for k, v in list(labels.items())[:512]},
            ports=_ports(summary.get("Ports") or []),
            networks=[ContainerNetwork(name=n[:256], ip_address=((v or {}).get("IPAddress") or "")[:64],
                                       ipv6_address=((v or {}).get("GlobalIPv6Address") or "")[:64])
                      for n, v in list(networks.items())[:64]],
            env_names=[k[:256] for k, _, _ in env][:1024],
            env={k[:256]: masked_variable(k, v)[:4096] for k, _, v in env[:512]} if self.env_values else {},
            command=_command(config)[:16384],
            pid=(details.get("State") or {}).get("Pid") or None,
            stats=None,  # asked for the running ones together (``_with_stats``)
        )

    def _with_stats(self, api: Any, containers: list[ContainerInfo | None]) -> list[ContainerInfo | None]:
        """``containers`` with the statistics of the running ones, asked
        ``STATS_AT_ONCE`` at a time within ``STATS_BUDGET``."""
        running = [c for c in containers if c is not None and c.state == "running"]
        if not running:
            return containers
        turn = self._stats_turn % len(running)
        running = running[turn:] + running[:turn]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(STATS_AT_ONCE, len(running)),
                                                     thread_name_prefix="probe-stats")
        try:
            asked = {c.id: pool.submit(self._stats, api, c.id) for c in running}
            concurrent.futures.wait(asked.values(), timeout=STATS_BUDGET)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a call still out ends with its engine timeout
        stats = {cid: f.result() for cid, f in asked.items()
                 if f.done() and not f.cancelled() and f.exception() is None}
        answered = sum(1 for f in asked.values() if f.done() and not f.cancelled())
        self._stats_turn = turn + answered
        if answered < len(running) and not self._stats_short_said:
            self._stats_short_said = True
            log.warning("container engine %s: statistics of %d of %d running containers not in within %g s; "
                        "each cycle starts where the last stopped, so every container has them now and then",
                        self.docker_host or "(DOCKER_HOST)", len(running) - answered, len(running), STATS_BUDGET)
        return [attrs.evolve(c, stats=stats[c.id]) if c is not None and stats.get(c.id) is not None else c
                for c in containers]

    def _stats(self, api: Any, container_id: str) -> ContainerStats | None:
        try:
            raw = api.stats(container_id, stream=False)
        except engine_errors():
            return None
        try:
            return self._read_stats(container_id, raw)
        except (AttributeError, TypeError, ValueError, ZeroDivisionError):
            return None  # a counter of another shape (null, a string): this container's stats left out

    def _read_stats(self, container_id: str, raw: Any) -> ContainerStats:
        cpu = raw.get("cpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage") or 0
        system = cpu.get("system_cpu_usage") or 0
        cores = cpu.get("online_cpus") or 1
        percent = 0.0
        previous = self._cpu.get(container_id)
        if previous is not None and system > previous[1] and total >= previous[0]:
            percent = (total - previous[0]) / (system - previous[1]) * cores * 100.0
        self._cpu[container_id] = (total, system)
        memory = raw.get("memory_stats") or {}
        usage, limit = _memory_in_use(memory), memory.get("limit") or 0
        rx = tx = 0
        for interface in (raw.get("networks") or {}).values():
            rx += interface.get("rx_bytes", 0)
            tx += interface.get("tx_bytes", 0)
        now = time.monotonic()
        rx_rate = tx_rate = 0.0
        seen = self._net.get(container_id)
        if seen is not None and now > seen[0] and rx >= seen[1] and tx >= seen[2]:
            rx_rate, tx_rate = (rx - seen[1]) / (now - seen[0]), (tx - seen[2]) / (now - seen[0])
        self._net[container_id] = (now, rx, tx)
        reads = writes = 0
        for entry in (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
            if entry.get("op", "").lower() == "read":
                reads += entry.get("value", 0)
            elif entry.get("op", "").lower() == "write":
                writes += entry.get("value", 0)
        return ContainerStats(
            cpu_percent=max(0.0, percent), memory_usage_mb=usage / MB, memory_limit_mb=limit / MB,
            memory_percent=min(100.0, usage / limit * 100.0) if limit else 0.0,
            network_rx_bytes=rx, network_tx_bytes=tx, network_rx_bytes_per_sec=rx_rate,
            network_tx_bytes_per_sec=tx_rate, block_read_bytes=reads, block_write_bytes=writes,
            pids=(raw.get("pids_stats") or {}).get("current") or 0,
        )


def _memory_in_use(memory: dict[str, Any]) -> int:
    """Bytes a container uses, as ``docker stats`` counts them: the cgroup's
    usage less the page cache the kernel reclaims first (cgroup v1
    ``total_inactive_file``, v2 ``inactive_file``), or a container that once
    read or wrote big files looks near its limit while it idles. Never below
    0 (counters read at slightly different times). An engine that sends no
    ``stats`` (Podman's Docker API) gives its usage as it is."""
    usage = memory.get("usage") or 0
    stats = memory.get("stats") or {}
    cache = stats.get("total_inactive_file", stats.get("inactive_file")) or 0
    return max(0, usage - cache)


def _command(config: dict[str, Any]) -> str:
    """The inspect's ``Config.Cmd`` joined, masked as a process's command line
    is, read after ``Config.Entrypoint`` (not shown): an entrypoint ``mysql``
    makes ``-pSECRET`` its password. Either may be null, or a string of words
    where an engine gives one (as Podman's own API has)."""
    entrypoint, cmd = _words(config.get("Entrypoint")), _words(config.get("Cmd"))
    return masked_cmdline([*entrypoint, *cmd], start=len(entrypoint))


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(word) for word in value or []]


def _ports(entries: list[dict[str, Any]]) -> list[PortMapping]:
    ports = []
    for entry in entries[:1024]:
        private = entry.get("PrivatePort")
        if not isinstance(private, int):
            continue
        protocol = entry.get("Type", "tcp")
        ports.append(PortMapping(container_port=private, protocol=protocol if protocol in ("tcp", "udp") else "tcp",
                                 host_ip=(entry.get("IP") or "")[:64], host_port=entry.get("PublicPort")))
    return ports
