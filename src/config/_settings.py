"""The resolved settings: one frozen record per section, plus where each value came from."""

from __future__ import annotations

import pathlib
import types
from collections.abc import Mapping

import attrs

from ._keys import KEYS, KEYS_BY_NAME, Key
from ._source import Source


@attrs.frozen(kw_only=True)
class ServerSettings:
    """How the HTTP server listens and stops."""

    host: str
    """Address to listen on."""
    port: int
    """TCP port; 0 lets the system pick a free one."""
    backlog: int
    """Listen backlog (pending connections queued by the kernel)."""
    shutdown_timeout: float
    """Seconds a graceful shutdown waits before cancelling what is left."""
    max_body_size: int
    """Largest request body in bytes (also after decompression)."""
    body_timeout: float
    """Seconds a request body may take to arrive in full, from when a handler reads it."""
    write_timeout: float
    """Seconds one write to a client may wait for it to read before its connection is closed."""
    workers: int
    """Serving processes sharing the port (more than one needs PostgreSQL)."""
    memory_trim_interval: float
    """Seconds between looks at the memory glibc keeps free; past ``allocator.MIN_FREE``
    it is returned to the system (``trioscope.allocator``)."""
    allocator: str = "auto"
    """``auto``, ``pymalloc``, ``mimalloc`` or ``jemalloc``: what allocates Python's
    objects (``trioscope.allocator``); the server re-executes itself once to preload it."""
    tls_cert: str = ""
    """PEM certificate chain; with ``tls_key``, the server speaks HTTPS and WSS. Empty: plain HTTP."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDR networks whose forwarded headers name the client (``http._forwarded``)."""
    forwarded_header: str = "x-forwarded-for"
    """``x-forwarded-for`` or ``forwarded``: the header the trusted proxies set."""
    access_log: bool = False
    """Whether every request is logged (``trioscope.access``)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names answered (``http._hosts``); ``("*",)`` for any; empty: any off loopback."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed cross-origin requests and WebSockets; ``("*",)`` for any."""
    cors_allow_credentials: bool = False
    """Whether ``Access-Control-Allow-Credentials: true`` is sent to allowed origins."""

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS."""
        return bool(self.tls_cert)


@attrs.frozen(kw_only=True)
class StorageSettings:
    """Where data is kept, and for how long."""

    data_dir: pathlib.Path
    """Directory for the SQLite database and the generated token secret (``~`` expanded)."""
    max_data_age: float
    """Seconds reports and metric history are kept."""
    cleanup_interval: float
    """Seconds between deletions of data older than ``max_data_age``."""
    history_retention: float
    """Seconds finished commands, audit records and retired agents are kept."""
    min_free_bytes: int = 1024**3
    """Bytes the embedded store's disk keeps free: with less, large command results are refused."""


@attrs.frozen(kw_only=True)
class StoreSettings:
    """Which database holds durable state."""

    # Kept out of repr: the URL may carry a password.
    database: str = attrs.field(repr=False)
    """Empty: SQLite in ``storage.data_dir``; ``sqlite:PATH``; or a PostgreSQL URL."""


@attrs.frozen(kw_only=True)
class BusSettings:
    """The report bus: NATS JetStream shared by replicas."""

    # Kept out of repr: the URL may carry a password.
    url: str = attrs.field(repr=False)
    """Empty: reports are merged in this process only; else the NATS server(s)."""
    stream: str
    """The JetStream stream of reports (also its subjects' first token)."""
    max_bytes: int
    """What the stream may hold on the bus's disk; beyond it the oldest reports go."""


@attrs.frozen(kw_only=True)
class MetricsSettings:
    """The metrics API: where written metrics go and the bounds on writes and queries."""

    url: str
    """A Prometheus-compatible engine's base URL; empty: the embedded store and engine."""
    max_points_per_request: int
    """Points (values) in one write request."""
    max_series_per_deployment: int
    """Series one deployment's agents may hold within ``storage.max_data_age``."""
    max_series_per_tenant: int
    """Series one tenant's agents may hold within ``storage.max_data_age``."""
    max_series: int
    """Written series held over all tenants."""
    max_label_bytes_per_tenant: int
    """Characters of the labels (names and values) of one tenant's written series."""
    max_label_bytes: int
    """Characters of the labels of all written series."""
    max_samples_per_tenant: int
    """Samples one tenant's written series hold together (16 bytes each)."""
    max_samples: int
    """Samples all written series hold together."""
    max_labels_per_series: int
    """Labels of one written series, ``__name__`` and the server's labels included."""
    max_label_name_bytes: int
    """Longest metric or label name written."""
    max_label_value_bytes: int
    """Longest label value written."""
    max_query_samples: int
    """Samples one embedded query may read."""
    query_timeout: float
    """Seconds a query or a forwarded write may take."""


@attrs.frozen(kw_only=True)
class AuthSettings:
    """How user tokens are signed, and which requests need one."""

    # Kept out of repr so logging a Settings cannot leak the key.
    secret: str = attrs.field(repr=False)
    """HS256 key for user tokens; empty means the one generated into
    ``<data_dir>/jwt-secret``. Empty or at least 32 characters."""
    protect_reads: bool
    """Reads of the topology, queries, agent list, live stream and metrics
    need a user token too (off: the seed's quick-start reads without one)."""
    show_unassigned_agents: bool
    """With ``protect_reads``: whether every user also sees the probes enrolled in no
    deployment (each sees their own tenant's deployments' probes)."""
    admin_tenant: str
    """The tenant whose ADMINs read the whole server's figures; empty: every tenant's ADMIN."""


@attrs.frozen(kw_only=True)
class AgentsSettings:
    """When agents and their nodes count as gone, and how agents authenticate."""

    stale_threshold: float
    """Seconds of silence after which a node is shown as stale."""
    heartbeat_timeout: float
    """Seconds of silence after which an agent is considered disconnected."""
    max_agents: int
    """Most agents tracked at once."""
    memory_budget: int
    """Bytes of server memory one agent's report may take, as estimated before
    it is merged (``trioscope.wire.MemoryBudget``)."""
    require_signature: bool
    """Whether agent requests must carry ``X-Agent-Signature`` (HMAC-SHA256 of the body
    keyed by the agent token)."""
    accept_body_only_signatures: bool
    """Whether the status agent's body-only signature is accepted beside the RFC 9421
    signature over method, path, query, agent id, body digest, time and request id."""
    local_probe: bool
    """Whether ``serve`` starts a probe reporting this host."""


@attrs.frozen(kw_only=True)
class CommandsSettings:
    """How long queued commands wait, and how many a deployment may have open."""

    delivery_deadline: float
    """Seconds after a queued command became due within which it must be delivered,
    or it expires."""
    timeout_grace: float
    """Seconds past a command's ``timeout_seconds`` before a sent or executing command
    fails as timed out."""
    max_queued: int
    """Open (not yet finished) commands per deployment; more are refused with
    ``quota_exceeded``."""
    max_open_parameter_bytes: int
    """Bytes (compact JSON) of the parameters of one deployment's open commands,
    which the server holds in memory until they finish; a command that would pass
    it is refused with ``quota_exceeded``."""
    max_apps: int
    """Apps per deployment whose newest status its agent may post (``POST
    /api/v1/apps/status``); a status of one more app is refused (409 ``too_many_apps``)."""
    follow_max_per_user: int
    """Live log follows one user may have open at once."""
    follow_max_per_agent: int
    """Live log follows open at once per deployment's agent."""
    follow_lines_per_second: int
    """Log lines a second one follow passes on; more are dropped."""
    follow_max_bytes: int
    """Bytes of log messages one follow passes on in all."""
    follow_max_duration: float
    """Seconds one follow lasts at most."""


@attrs.frozen(kw_only=True)
class TenantsSettings:
    """Per-tenant quotas."""

    max_deployments: int
    """Deployments per tenant; more are refused with ``quota_exceeded``."""
    max_command_bytes: int
    """Bytes the tenant's stored commands take (their rows: parameters,
    results, errors, histories), finished ones included until they are
    pruned; once reached, its new commands are refused with ``quota_exceeded``
    (its agents' results are still recorded)."""
    max_metric_labels: int
    """Tenants named in ``/metrics`` labels; the rest are ``tenant="other"``."""


@attrs.frozen(kw_only=True)
class LimitsSettings:
    """Per-client limits: request rates, in requests per minute, and open connections."""

    per_address: int
    """Requests per minute from one client address, checked before authentication."""
    reports_per_address: int
    """Probe reports and heartbeats per minute from one client address, before decoding."""
    registrations_per_address: int
    """Agent registrations and enrollments per minute from one client address."""
    connections_per_address: int
    """TCP connections open at once from one client address (trusted proxies exempt), per serving process."""
    unsent_bytes_per_address: int
    """Bytes of HTTP responses being written to one client address's connections at once (trusted proxies
    exempt), per serving process; one response sent to several of them counts once."""
    body_bytes_per_address: int
    """Bytes of request bodies being received from one client address at once (trusted proxies exempt),
    per serving process."""
    body_bytes_total: int
    """Bytes of request bodies being received from all clients at once, per serving process."""
    per_agent: int
    """Requests per minute from one agent."""
    agent_bytes: int
    """Bytes per minute of one agent's request bodies and socket messages, per serving process."""
    per_user: int
    """Requests per minute from one user."""


@attrs.frozen(kw_only=True)
class WebSocketSettings:
    """Live-update connections to browsers."""

    buffer_size: int
    """Messages queued per client before it is treated as lagging."""
    ping_interval: float
    """Seconds between pings to idle clients."""
    max_rate: int
    """Most topology updates per second per client."""
    slow_client_timeout: float
    """Seconds a client may lag before it is disconnected."""
    resync_interval: float
    """Least seconds between two resets sent to one client after its first."""
    max_clients: int
    """Most clients connected at once."""
    max_clients_per_address: int
    """Most clients connected at once from one client address."""
    max_clients_per_user: int
    """Most clients connected at once with one user's tokens (per tenant and user)."""
    max_waiting_clients: int
    """Most live-view clients waiting for their first view at once."""
    max_waiting_clients_per_address: int
    """Of them, most from one client address."""
    address_wait: float
    """Seconds a live view waits for its address's share of those before it is refused."""
    first_views_per_second: int
    """Most first views started per second (after a burst of a quarter of that)."""
    reset_time_percent_per_address: int
    """Most of the server's time (percent) spent building resets for the
    clients of one address: after a reset that took t seconds of work, the
    address's next one starts no earlier than t * (100 / percent - 1) later."""
    max_reset_bytes_per_address: int
    """Bytes of reset frames queued or being sent to the clients of one
    address (a frame several of them share counted once) above which none of
    them is given a new one until some have been sent."""
    max_reset_bytes: int
    """The same for the clients of every address together."""


@attrs.frozen(kw_only=True)
class LogSettings:
    """Log output."""

    level: str
    """One of ``debug``, ``info``, ``warning``, ``error``."""
    format: str
    """``human`` or ``json`` (one object per line)."""


@attrs.frozen(kw_only=True)
class AlertsSettings:
    """The server's own alert rules (for servers without Prometheus) and the Alertmanager webhook."""

    agent_offline_after: float
    """Seconds an enrolled agent may be silent before AgentOffline fires (0: rule off)."""
    command_failure_percent: int
    """Failed share of a tenant's finished commands (percent) above which
    HighCommandFailureRate fires (0: rule off)."""
    command_failure_window: float
    """Seconds the failure rate is measured over."""
    command_failure_min_commands: int
    """Fewest finished commands in the window for the rate to count."""
    evaluation_interval: float
    """Seconds between evaluations of the rules."""
    webhook_secret: str = attrs.field(repr=False)
    """Bearer token of ``POST /api/v1/alerts/webhook``; empty: the webhook is off."""


_SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "store": StoreSettings,
    "bus": BusSettings,
    "metrics": MetricsSettings,
    "auth": AuthSettings,
    "agents": AgentsSettings,
    "commands": CommandsSettings,
    "tenants": TenantsSettings,
    "limits": LimitsSettings,
    "websocket": WebSocketSettings,
    "log": LogSettings,
    "alerts": AlertsSettings,
}


def _frozen_mapping(origins: Mapping[str, Source]) -> Mapping[str, Source]:
    return types.MappingProxyType(dict(origins))


@attrs.frozen(kw_only=True)
class Settings:
    """The server's effective configuration.

    Durations are float seconds. Two Settings are equal when their values are equal,
    wherever the values came from (``origins`` and ``config_file`` are not compared).
    Build one with ``load_settings``, ``resolve_settings`` or ``Settings.defaults()``;
    tests may adjust one with ``attrs.evolve`` (which keeps the recorded origins, so
    ``origin()`` then describes the value before the change).
    """

    server: ServerSettings
    storage: StorageSettings
    store: StoreSettings
    bus: BusSettings
    metrics: MetricsSettings
    auth: AuthSettings
    agents: AgentsSettings
    commands: CommandsSettings
    tenants: TenantsSettings
    limits: LimitsSettings
    websocket: WebSocketSettings
    log: LogSettings
    alerts: AlertsSettings
    config_file: str | None = attrs.field(default=None, eq=False)
    """The YAML file that was read, or None."""
    _origins: Mapping[str, Source] = attrs.field(
        factory=dict, converter=_frozen_mapping, eq=False, repr=False, alias="origins"
    )

    @classmethod
    def defaults(cls) -> Settings:
        """Returns:
        Settings with every key at its default.
        """
        return cls.from_values(
            {key.name: key.default for key in KEYS},
            {key.name: Source.default() for key in KEYS},
        )

    @classmethod
    def from_values(
        cls,
        values: Mapping[str, object],
        origins: Mapping[str, Source],
        config_file: str | None = None,
    ) -> Settings:
        """Build Settings from already-checked values.

        Args:
          values: a value for every key in ``KEYS``, by dotted name.
          origins: where each value came from, by dotted name.
          config_file: the YAML file that was read, if any.

        Returns:
          The Settings.
        """
        sections = {
            section: record(**{key.leaf: values[key.name] for key in KEYS if key.section == section})
            for section, record in _SECTIONS.items()
        }
        return cls(**sections, config_file=config_file, origins=origins)

    def value(self, key: str) -> object:
        """Returns:
        The effective value of a dotted key, e.g. ``value("server.port")``.
        """
        known = _known(key)
        return getattr(getattr(self, known.section), known.leaf)

    def source(self, key: str) -> Source | None:
        """Returns:
        Where the dotted key's value came from, or None if not recorded (Settings
        built by hand).
        """
        return self._origins.get(_known(key).name)

    def origin(self, key: str) -> str:
        """Returns:
        Where the dotted key's value came from, rendered: ``default``,
        ``file /etc/trioscope.yaml:3``, ``env APP_PORT`` or ``flag --port``.
        """
        source = self.source(key)
        return "unrecorded" if source is None else str(source)


def _known(key: str) -> Key:
    try:
        return KEYS_BY_NAME[key]
    except KeyError:
        raise KeyError(f"unknown configuration key {key!r}") from None
