"""The table of configuration keys: the one place that says what can be configured.

Each key names its value kind (with limits), its default, what it does, and where it
can be set. Environment variables are listed in priority order: when several are set,
the first wins, so ``TRIOSCOPE_SERVER_PORT`` beats the seeds' ``APP_PORT`` alias.
"""

from __future__ import annotations

import difflib

import attrs

from ._kinds import ChoiceKind, DurationKind, HostKind, IntegerKind, Kind, SizeKind

SECOND = 1.0
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

CONFIG_ENV = "TRIOSCOPE_CONFIG"
"""Environment variable naming the YAML file; ``--config`` wins over it."""
CONFIG_FLAG = "--config"


@attrs.frozen(kw_only=True)
class Key:
    """One configuration key."""

    name: str
    """Dotted name, ``section.leaf``; also the YAML path."""
    kind: Kind
    """How values are parsed and checked, including limits."""
    default: object
    """The value when nothing sets the key (already parsed: seconds for durations)."""
    help: str
    """What the key does, for ``--help`` and the example file."""
    env: tuple[str, ...]
    """Environment variables, highest priority first."""
    flags: tuple[str, ...]
    """Command-line spellings; the first is the canonical one."""

    @property
    def section(self) -> str:
        """The YAML section, e.g. ``server``."""
        return self.name.partition(".")[0]

    @property
    def leaf(self) -> str:
        """The name within the section, e.g. ``port``."""
        return self.name.partition(".")[2]


KEYS: tuple[Key, ...] = (
    Key(
        name="server.host",
        kind=HostKind(),
        default="0.0.0.0",
        help="address to listen on",
        env=("TRIOSCOPE_SERVER_HOST", "APP_HOST"),
        flags=("--host", "-host"),
    ),
    Key(
        name="server.port",
        kind=IntegerKind(0, 65535, metavar="PORT"),
        default=8080,
        help="TCP port to listen on; 0 picks any free port",
        env=("TRIOSCOPE_SERVER_PORT", "APP_PORT"),
        flags=("--port", "-port"),
    ),
    Key(
        name="server.backlog",
        kind=IntegerKind(1, 65535),
        default=2048,
        help="connections the kernel queues before the server accepts them",
        env=("TRIOSCOPE_SERVER_BACKLOG",),
        flags=("--backlog",),
    ),
    Key(
        name="server.shutdown_timeout",
        kind=DurationKind(1 * SECOND, 10 * MINUTE),
        default=10 * SECOND,
        help="how long a graceful shutdown waits for requests and connections to finish",
        env=("TRIOSCOPE_SERVER_SHUTDOWN_TIMEOUT",),
        flags=("--shutdown-timeout",),
    ),
    Key(
        name="server.max_body_size",
        kind=SizeKind(1024, 1024**3),
        default=10 * 1024**2,
        help="largest request body accepted, also after gzip decompression (larger: 413)",
        env=("TRIOSCOPE_SERVER_MAX_BODY_SIZE",),
        flags=("--max-body-size",),
    ),
    Key(
        name="storage.max_data_age",
        kind=DurationKind(1 * MINUTE, 30 * DAY),
        default=1 * HOUR,
        help="keep reports and metric history this long",
        env=("TRIOSCOPE_STORAGE_MAX_DATA_AGE", "MAX_DATA_AGE"),
        flags=("--max-data-age", "-max-data-age"),
    ),
    Key(
        name="storage.cleanup_interval",
        kind=DurationKind(1 * SECOND, 24 * HOUR),
        default=5 * MINUTE,
        help="how often data older than max_data_age is deleted",
        env=("TRIOSCOPE_STORAGE_CLEANUP_INTERVAL",),
        flags=("--cleanup-interval", "-cleanup-interval"),
    ),
    Key(
        name="agents.stale_threshold",
        kind=DurationKind(1 * SECOND, 30 * DAY),
        default=5 * MINUTE,
        help="a node not heard from for this long is shown as stale",
        env=("TRIOSCOPE_AGENTS_STALE_THRESHOLD",),
        flags=("--stale-node-threshold", "-stale-node-threshold"),
    ),
    Key(
        name="agents.heartbeat_timeout",
        kind=DurationKind(1 * SECOND, 24 * HOUR),
        default=2 * MINUTE,
        help="an agent silent for this long is considered disconnected",
        env=("TRIOSCOPE_AGENTS_HEARTBEAT_TIMEOUT",),
        flags=("--heartbeat-timeout",),
    ),
    Key(
        name="agents.max_agents",
        kind=IntegerKind(1, 1_000_000),
        default=10_000,
        help="most agents tracked at once; reports from further agents get 503",
        env=("TRIOSCOPE_AGENTS_MAX_AGENTS",),
        flags=("--max-agents",),
    ),
    Key(
        name="websocket.buffer_size",
        kind=IntegerKind(1, 65536),
        default=16,
        help="messages queued per WebSocket client before it is treated as lagging",
        env=("TRIOSCOPE_WEBSOCKET_BUFFER_SIZE",),
        flags=("--ws-buffer-size",),
    ),
    Key(
        name="websocket.ping_interval",
        kind=DurationKind(1 * SECOND, 1 * HOUR),
        default=30 * SECOND,
        help="how often idle WebSocket clients are pinged",
        env=("TRIOSCOPE_WEBSOCKET_PING_INTERVAL",),
        flags=("--ws-ping-interval",),
    ),
    Key(
        name="websocket.max_rate",
        kind=IntegerKind(1, 100),
        default=4,
        help="most topology updates sent per second; changes in between are merged into one",
        env=("TRIOSCOPE_WEBSOCKET_MAX_RATE",),
        flags=("--ws-max-rate",),
    ),
    Key(
        name="websocket.slow_client_timeout",
        kind=DurationKind(1 * SECOND, 1 * HOUR),
        default=30 * SECOND,
        help="a client still lagging after this long is disconnected (close code 1008)",
        env=("TRIOSCOPE_WEBSOCKET_SLOW_CLIENT_TIMEOUT",),
        flags=("--ws-slow-client-timeout",),
    ),
    Key(
        name="websocket.max_clients",
        kind=IntegerKind(1, 100_000),
        default=10_000,
        help="most WebSocket clients connected at once; further ones are refused with 503",
        env=("TRIOSCOPE_WEBSOCKET_MAX_CLIENTS",),
        flags=("--ws-max-clients",),
    ),
    Key(
        name="log.level",
        kind=ChoiceKind(("debug", "info", "warning", "error"), metavar="LEVEL"),
        default="info",
        help="least severe log level written",
        env=("TRIOSCOPE_LOG_LEVEL",),
        flags=("--log-level",),
    ),
    Key(
        name="log.format",
        kind=ChoiceKind(("human", "json"), metavar="FORMAT"),
        default="human",
        help="log line format: human-readable text or one JSON object per line",
        env=("TRIOSCOPE_LOG_FORMAT",),
        flags=("--log-format",),
    ),
)

KEYS_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(key.section for key in KEYS))


def suggest_key(name: str) -> str | None:
    """The known key a misspelt ``name`` most likely meant, for "did you mean" hints.

    Tries the whole dotted name first (``serve.prot`` -> ``server.port``), then the
    last part alone, which catches keys written without their section (``port``).

    Returns:
      A key name, or None when nothing is close.
    """
    whole = difflib.get_close_matches(name, KEYS_BY_NAME, n=1)
    if whole:
        return whole[0]
    leaves = {key.leaf: key.name for key in KEYS}
    leaf = difflib.get_close_matches(name.rpartition(".")[2], leaves, n=1)
    return leaves[leaf[0]] if leaf else None
