"""The table of configuration keys: the one place that says what can be configured.

Each key names its value kind (with limits), its default, what it does, and where it
can be set. Environment variables are listed in priority order: when several are set,
the first wins, so ``TRIOSCOPE_SERVER_PORT`` beats the seeds' ``APP_PORT`` alias.
"""

from __future__ import annotations

import difflib
import pathlib

import attrs

from ._kinds import (
    BoolKind,
    ChoiceKind,
    DatabaseKind,
    DurationKind,
    HostKind,
    HostNamesKind,
    HttpUrlKind,
    IntegerKind,
    Kind,
    NameKind,
    NatsUrlKind,
    NetworksKind,
    OptionalFileKind,
    OriginsKind,
    PathKind,
    SecretKind,
    SizeKind,
    TenantKind,
)

SECOND = 1.0
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

CONFIG_ENV = "TRIOSCOPE_CONFIG"
"""Environment variable naming the YAML file; ``--config`` wins over it."""
CONFIG_FLAG = "--config"

ENV_PREFIX = "TRIOSCOPE_"
"""Every environment variable named with this prefix must be a key's (``Key.env``)
or one of ``OTHER_ENV``: a misspelt one is a problem, as an unknown YAML key is,
rather than a setting silently left at its default."""
OTHER_ENV: dict[str, str] = {
    CONFIG_ENV: "names the YAML file",
    "TRIOSCOPE_SERVER_URL": "trioscope health --server",
    "TRIOSCOPE_CA_FILE": "trioscope health --ca-file",
    "TRIOSCOPE_ALLOCATOR_PRELOADED": "set by serve when it re-executes itself for server.allocator",
    "TRIOSCOPE_PROBE_*": "the probe's settings (trioscope-probe, which refuses unknown ones itself; the local probe "
    "inherits the server's environment)",
    "TRIOSCOPE_TEST_*": "the test suite's (tests/postgres.py), inherited by the servers and commands it starts",
    "TRIOSCOPE_FUZZ_EXAMPLES": "the test suite's (tests/integration/test_openapi_fuzz.py)",
    "TRIOSCOPE_PROFILE_DIR": "the benchmarks' (bench/profile_*.py), set for the servers they profile",
}
"""``TRIOSCOPE_`` variables that are no setting but are read elsewhere, with who
reads them; a name ending in ``*`` stands for every name it starts."""


def _home_path(text: str) -> pathlib.Path:
    """``text`` (starting ``~/``) with the home directory filled in, as ``PathKind``
    would read it; left as written if the home directory is unknown, so importing the
    configuration never fails."""
    try:
        return pathlib.Path(text).expanduser()
    except RuntimeError:
        return pathlib.Path(text)


class WebhookSecretKind(SecretKind):
    """The webhook's bearer token: empty turns the webhook off rather than generating one."""

    empty_means = "webhook off"


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
    """Command-line spellings; the first is the canonical one. Empty for keys that
    must not be set on command lines (secrets: ``ps`` shows them to every user)."""

    @property
    def secret(self) -> bool:
        """Whether the value must never be shown (in problems, ``--print-config``)."""
        return isinstance(self.kind, SecretKind)

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
        help="address to listen on; a name listens on each address it resolves to (localhost: 127.0.0.1 and "
             "::1, IPv6 where it works)",
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
        name="server.workers",
        kind=IntegerKind(1, 64),
        default=1,
        help="serving processes on the one port (more than 1 needs a PostgreSQL store.database)",
        env=("TRIOSCOPE_SERVER_WORKERS",),
        flags=("--workers",),
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
        name="server.body_timeout",
        kind=DurationKind(1 * SECOND, 10 * MINUTE),
        default=30 * SECOND,
        help="how long a request body may take to arrive in full (longer: 408 and the connection closed)",
        env=("TRIOSCOPE_SERVER_BODY_TIMEOUT",),
        flags=("--body-timeout",),
    ),
    Key(
        name="server.write_timeout",
        kind=DurationKind(1 * SECOND, 10 * MINUTE),
        default=30 * SECOND,
        help="how long one write to a client may wait for it to read (longer: the connection is closed, so a "
             "client that stops reading holds no connection, memory or old topology version)",
        env=("TRIOSCOPE_SERVER_WRITE_TIMEOUT",),
        flags=("--write-timeout",),
    ),
    Key(
        name="server.memory_trim_interval",
        kind=DurationKind(1 * SECOND, 1 * HOUR),
        default=10 * SECOND,
        help="how often the server gives memory the C allocator keeps free (after clients leave) back to the system",
        env=("TRIOSCOPE_SERVER_MEMORY_TRIM_INTERVAL",),
        flags=("--memory-trim-interval",),
    ),
    Key(
        name="server.allocator",
        kind=ChoiceKind(("auto", "pymalloc", "mimalloc", "jemalloc"), metavar="ALLOCATOR"),
        default="auto",
        help="what allocates the server's objects; auto: jemalloc preloaded if installed (memory of thousands of "
        "clients that left goes back to the system), else Python's own pymalloc (keeps its peak); or one by name",
        env=("TRIOSCOPE_SERVER_ALLOCATOR",),
        flags=("--allocator",),
    ),
    Key(
        name="server.tls_cert",
        kind=OptionalFileKind(),
        default="",
        help="PEM certificate chain: serve HTTPS and WSS (with server.tls_key); empty: plain HTTP",
        env=("TRIOSCOPE_SERVER_TLS_CERT",),
        flags=("--tls-cert",),
    ),
    Key(
        name="server.tls_key",
        kind=OptionalFileKind(),
        default="",
        help="PEM private key of server.tls_cert",
        env=("TRIOSCOPE_SERVER_TLS_KEY",),
        flags=("--tls-key",),
    ),
    Key(
        name="server.trusted_proxies",
        kind=NetworksKind(),
        default=(),
        help="addresses of reverse proxies whose X-Forwarded-For / Forwarded headers name the client "
             "(rate limits, audit, access log); empty: those headers are ignored",
        env=("TRIOSCOPE_SERVER_TRUSTED_PROXIES",),
        flags=("--trusted-proxies",),
    ),
    Key(
        name="server.forwarded_header",
        kind=ChoiceKind(("x-forwarded-for", "forwarded"), metavar="HEADER"),
        default="x-forwarded-for",
        help="which header the trusted proxies set: X-Forwarded-For (nginx, HAProxy, most) or Forwarded (RFC 7239); "
             "the other is ignored, since a proxy passes a header it does not set on unchanged",
        env=("TRIOSCOPE_SERVER_FORWARDED_HEADER",),
        flags=("--forwarded-header",),
    ),
    Key(
        name="server.access_log",
        kind=BoolKind(),
        default=False,
        help="log one line per request: method, route, status, duration, bytes, client address, request id "
             "(a JSON object with log.format json)",
        env=("TRIOSCOPE_SERVER_ACCESS_LOG",),
        flags=("--access-log",),
    ),
    Key(
        name="server.allowed_hosts",
        kind=HostNamesKind(),
        default=(),
        help="host names clients may ask for in the Host header; any other is refused (421 host_not_allowed), "
             "so that a web page whose name was pointed at this server (DNS rebinding) cannot read it from a "
             "browser; IP addresses and localhost are always answered; .example.com: the domain and every name "
             "under it; * for any; empty: any name, except when listening on a loopback address (only "
             "IP addresses and localhost then)",
        env=("TRIOSCOPE_SERVER_ALLOWED_HOSTS",),
        flags=("--allowed-hosts",),
    ),
    Key(
        name="server.cors_origins",
        kind=OriginsKind(),
        default=(),
        help="web origins whose pages may call the API and open WebSockets (exact, e.g. "
             "https://ops.example.com); * for any (not with cors_allow_credentials); empty: none but the server's own",
        env=("TRIOSCOPE_SERVER_CORS_ORIGINS",),
        flags=("--cors-origins",),
    ),
    Key(
        name="server.cors_allow_credentials",
        kind=BoolKind(),
        default=False,
        help="let those origins' pages send cookies and HTTP authentication the browser holds "
             "(Access-Control-Allow-Credentials); bearer tokens in Authorization need no credentials",
        env=("TRIOSCOPE_SERVER_CORS_ALLOW_CREDENTIALS",),
        flags=("--cors-allow-credentials",),
    ),
    Key(
        name="storage.data_dir",
        kind=PathKind(),
        default=_home_path("~/.local/share/trioscope"),
        help="directory for the SQLite database and the generated token secret",
        env=("TRIOSCOPE_STORAGE_DATA_DIR",),
        flags=("--data-dir",),
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
        name="storage.history_retention",
        kind=DurationKind(1 * HOUR, 3650 * DAY),
        default=30 * DAY,
        help="keep finished commands, audit records and retired agents this long"
             " (open commands are kept until they finish)",
        env=("TRIOSCOPE_STORAGE_HISTORY_RETENTION",),
        flags=("--history-retention",),
    ),
    Key(
        name="storage.min_free_bytes",
        kind=SizeKind(0, 2**50),
        default=1024**3,
        help="free space the embedded SQLite store's disk keeps: with less, agents' command results over 64 KiB "
             "and new commands over 4 KiB are refused (507 insufficient_storage) rather than letting the disk "
             "fill, which ends the server; 0: not watched (PostgreSQL guards its own disk)",
        env=("TRIOSCOPE_STORAGE_MIN_FREE_BYTES",),
        flags=("--min-free-bytes",),
    ),
    Key(
        name="store.database",
        kind=DatabaseKind(),
        default="",
        help="where commands, deployments, tokens and audit are kept: empty for SQLite in data_dir, "
             "or postgresql://user@host/db shared by replicas",
        # DATABASE_URL: the command service seed's deployment names it (§10.1).
        env=("TRIOSCOPE_STORE_DATABASE", "TRIOSCOPE_DATABASE", "DATABASE_URL"),
        flags=("--database",),
    ),
    Key(
        name="bus.url",
        kind=NatsUrlKind(),
        default="",
        help="a NATS JetStream server (nats://127.0.0.1:4222; tls://host:port for TLS; several of a cluster "
             "comma-separated) that carries validated reports to every replica and keeps them for max_data_age; "
             "empty: reports are merged in this process only",
        env=("TRIOSCOPE_BUS_URL", "TRIOSCOPE_BUS"),
        flags=("--bus",),
    ),
    Key(
        name="bus.stream",
        kind=NameKind(),
        default="trioscope_reports",
        help="the JetStream stream of reports (and the first token of its subjects); replicas of one "
             "deployment share it",
        env=("TRIOSCOPE_BUS_STREAM",),
        flags=("--bus-stream",),
    ),
    Key(
        name="bus.max_bytes",
        kind=SizeKind(64 * 1024**2, 1024**4),
        default=8 * 1024**3,
        help="the most the stream of reports may hold on the bus's disk; beyond it JetStream drops the oldest "
             "reports (history a starting replica rebuilds gets shorter, disk use stays bounded)",
        env=("TRIOSCOPE_BUS_MAX_BYTES",),
        flags=("--bus-max-bytes",),
    ),
    Key(
        name="metrics.url",
        kind=HttpUrlKind(),
        default="",
        help="a Prometheus-compatible engine (VictoriaMetrics, http://127.0.0.1:8428) that stores written "
             "metrics and answers the metrics API; empty: the embedded store and engine",
        env=("TRIOSCOPE_METRICS_URL",),
        flags=("--metrics-url",),
    ),
    Key(
        name="metrics.max_points_per_request",
        kind=IntegerKind(1, 1_000_000),
        default=10_000,
        help="most points (values) in one POST /api/v1/metrics/write (more: 413 too_many_points)",
        env=("TRIOSCOPE_METRICS_MAX_POINTS_PER_REQUEST",),
        flags=("--metrics-max-points-per-request",),
    ),
    Key(
        name="metrics.max_series_per_deployment",
        kind=IntegerKind(1, 10_000_000),
        default=10_000,
        help="most series a deployment's agents may write within max_data_age (more: 429 series_limit_reached)",
        env=("TRIOSCOPE_METRICS_MAX_SERIES_PER_DEPLOYMENT",),
        flags=("--metrics-max-series-per-deployment",),
    ),
    Key(
        name="metrics.max_series_per_tenant",
        kind=IntegerKind(1, 10_000_000),
        default=100_000,
        help="most series a tenant's agents may write within max_data_age (more: 429 tenant_series_limit_reached)",
        env=("TRIOSCOPE_METRICS_MAX_SERIES_PER_TENANT",),
        flags=("--metrics-max-series-per-tenant",),
    ),
    Key(
        name="metrics.max_series",
        kind=IntegerKind(1, 100_000_000),
        default=1_000_000,
        help="most written series the server holds over all tenants (more: 429 server_series_limit_reached)",
        env=("TRIOSCOPE_METRICS_MAX_SERIES",),
        flags=("--metrics-max-series",),
    ),
    Key(
        name="metrics.max_label_bytes_per_tenant",
        kind=SizeKind(64 * 1024, 64 * 1024**3),
        default=64 * 1024**2,
        help="most characters of labels (names and values) of one tenant's written series (more: 429 "
             "tenant_label_bytes_reached); a series costs about its labels in memory beyond its own ~1 KB: "
             "100,000 series of 26 labels of 1,000 characters took 4 GB",
        env=("TRIOSCOPE_METRICS_MAX_LABEL_BYTES_PER_TENANT",),
        flags=("--metrics-max-label-bytes-per-tenant",),
    ),
    Key(
        name="metrics.max_label_bytes",
        kind=SizeKind(64 * 1024, 1024**4),
        default=512 * 1024**2,
        help="most characters of labels of all written series over all tenants (more: 429 server_label_bytes_reached)",
        env=("TRIOSCOPE_METRICS_MAX_LABEL_BYTES",),
        flags=("--metrics-max-label-bytes",),
    ),
    Key(
        name="metrics.max_samples_per_tenant",
        kind=IntegerKind(1000, 10_000_000_000),
        default=25_000_000,
        help="most samples one tenant's written series hold together, 16 bytes each in memory (more: 429 "
             "tenant_samples_limit_reached); a series holds one a 15 s bucket within max_data_age (240 an hour)",
        env=("TRIOSCOPE_METRICS_MAX_SAMPLES_PER_TENANT",),
        flags=("--metrics-max-samples-per-tenant",),
    ),
    Key(
        name="metrics.max_samples",
        kind=IntegerKind(1000, 100_000_000_000),
        default=100_000_000,
        help="most samples all written series hold together over all tenants, 16 bytes each (more: 429 "
             "server_samples_limit_reached)",
        env=("TRIOSCOPE_METRICS_MAX_SAMPLES",),
        flags=("--metrics-max-samples",),
    ),
    Key(
        name="metrics.max_labels_per_series",
        kind=IntegerKind(4, 256),
        default=30,
        help="most labels of one written series, __name__, tenant and deployment_hash included (more: 413)",
        env=("TRIOSCOPE_METRICS_MAX_LABELS_PER_SERIES",),
        flags=("--metrics-max-labels-per-series",),
    ),
    Key(
        name="metrics.max_label_name_bytes",
        kind=IntegerKind(16, 4096),
        default=128,
        help="longest metric or label name written, in bytes (longer: 413 label_name_too_long)",
        env=("TRIOSCOPE_METRICS_MAX_LABEL_NAME_BYTES",),
        flags=("--metrics-max-label-name-bytes",),
    ),
    Key(
        name="metrics.max_label_value_bytes",
        kind=IntegerKind(16, 65536),
        default=1024,
        help="longest label value written, in bytes (longer: 413 label_value_too_long)",
        env=("TRIOSCOPE_METRICS_MAX_LABEL_VALUE_BYTES",),
        flags=("--metrics-max-label-value-bytes",),
    ),
    Key(
        name="metrics.max_query_samples",
        kind=IntegerKind(1000, 1_000_000_000),
        default=5_000_000,
        help="cost units one read of the embedded engine may spend (a sample read 1, a series examined or a "
             "value an operator reads or makes 10, a regular expression's test 12 and up, an expression's node "
             "20 a step; also bounds /series and /labels); more: 422, the read refused",
        env=("TRIOSCOPE_METRICS_MAX_QUERY_SAMPLES",),
        flags=("--metrics-max-query-samples",),
    ),
    Key(
        name="metrics.query_timeout",
        kind=DurationKind(1 * SECOND, 10 * MINUTE),
        default=30 * SECOND,
        help="how long a metrics query or forwarded write may take (longer: 503)",
        env=("TRIOSCOPE_METRICS_QUERY_TIMEOUT",),
        flags=("--metrics-query-timeout",),
    ),
    Key(
        name="auth.secret",
        kind=SecretKind(),
        default="",
        help="HS256 key for user tokens; empty: generated on first start into <data_dir>/jwt-secret (mode 0600)",
        env=("TRIOSCOPE_AUTH_SECRET",),
        flags=(),
    ),
    Key(
        name="auth.protect_reads",
        kind=BoolKind(),
        default=False,
        help="also require a user token (any role) for the topology and query API, the agent list, "
             "/api/v1/ws and /metrics; reports and probe requests stay open",
        env=("TRIOSCOPE_AUTH_PROTECT_READS",),
        flags=("--protect-reads",),
    ),
    Key(
        name="auth.admin_tenant",
        kind=TenantKind(empty="(every tenant's ADMINs)"),
        default="",
        help="the tenant whose ADMINs administer the whole server: every tenant's figures on /metrics, "
             "/health/detailed and /api/v1/runtime (its actors are named by probe ids); other tenants' ADMINs "
             "get 403 on the last two and their own tenant's /metrics. Empty: every tenant's ADMIN, as one tenant's "
             "server has it",
        env=("TRIOSCOPE_AUTH_ADMIN_TENANT",),
        flags=("--admin-tenant",),
    ),
    Key(
        name="auth.show_unassigned_agents",
        kind=BoolKind(),
        default=False,
        help="with protect_reads: also show every user the hosts of probes that belong to no deployment "
             "(unsigned reports, such as the local probe's); each user always sees the probes enrolled in "
             "their tenant's deployments",
        env=("TRIOSCOPE_AUTH_SHOW_UNASSIGNED_AGENTS",),
        flags=("--show-unassigned-agents",),
    ),
    Key(
        name="agents.stale_threshold",
        kind=DurationKind(1 * SECOND, 30 * DAY),
        default=5 * MINUTE,
        help="an agent not heard from for this long is shown as stale, and its nodes are removed from the "
             "topology at most max(1s, a tenth of this) later (cleanup_interval later if that is shorter); "
             "their metric history is kept for max_data_age",
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
        help="most agents tracked at once; reports from further agents get 503. At the limit a new unsigned "
             "probe takes the place of one silent for stale_threshold, else of the least recently heard probe of "
             "an address holding more than its own (enrolled probes always have room)",
        env=("TRIOSCOPE_AGENTS_MAX_AGENTS",),
        flags=("--max-agents",),
    ),
    Key(
        name="agents.memory_budget",
        kind=SizeKind(64 * 1024, 1024**3),
        default=4 * 1024**2,
        help="server memory one agent's report may take, estimated before it is merged (nodes, connections, "
             "text, metric history); larger reports get 413 memory_budget_exceeded. Agents take at most "
             "max_agents times this",
        env=("TRIOSCOPE_AGENTS_MEMORY_BUDGET",),
        flags=("--agent-memory-budget",),
    ),
    Key(
        name="agents.require_signature",
        kind=BoolKind(),
        default=True,
        help="agents must sign requests (X-Agent-Signature, HMAC-SHA256 of the body keyed by the agent token)",
        env=("TRIOSCOPE_AGENTS_REQUIRE_SIGNATURE",),
        flags=("--require-signature",),
    ),
    Key(
        name="agents.accept_body_only_signatures",
        kind=BoolKind(),
        default=True,
        help="also accept the TryDirect status agent's signature of the body alone (X-Agent-Signature), kept "
             "for that agent: it proves only the body, not X-Timestamp, X-Request-Id or the path, so a captured "
             "request can be sent again at any time under a new request id and timestamp; false: only signatures "
             "over the whole request (RFC 9421). Either way the key is the agent token, which every request "
             "also carries (Authorization: Bearer): whoever sees one request can sign any, so only TLS protects "
             "the token and the requests",
        env=("TRIOSCOPE_AGENTS_ACCEPT_BODY_ONLY_SIGNATURES",),
        flags=("--accept-body-only-signatures",),
    ),
    Key(
        name="agents.local_probe",
        kind=BoolKind(),
        default=True,
        help="also run a probe (a child process) reporting this host to this server",
        env=("TRIOSCOPE_AGENTS_LOCAL_PROBE",),
        flags=("--local-probe",),
    ),
    Key(
        name="commands.delivery_deadline",
        kind=DurationKind(1 * MINUTE, 30 * DAY),
        default=1 * HOUR,
        help="a queued command not delivered within this long after it became due expires",
        env=("TRIOSCOPE_COMMANDS_DELIVERY_DEADLINE",),
        flags=("--delivery-deadline",),
    ),
    Key(
        name="commands.timeout_grace",
        kind=DurationKind(0 * SECOND, 1 * HOUR),
        default=30 * SECOND,
        help="extra time past a command's timeout_seconds before a sent or executing command fails as timed out",
        env=("TRIOSCOPE_COMMANDS_TIMEOUT_GRACE",),
        flags=("--timeout-grace",),
    ),
    Key(
        name="commands.max_queued",
        kind=IntegerKind(1, 1_000_000),
        default=1000,
        help="open (not yet finished) commands per deployment; more are refused with quota_exceeded",
        env=("TRIOSCOPE_COMMANDS_MAX_QUEUED",),
        flags=("--max-queued-commands",),
    ),
    Key(
        name="commands.max_open_parameter_bytes",
        kind=SizeKind(64 * 1024, 1024**3),
        default=4 * 1024 * 1024,
        help="bytes of the parameters of one deployment's open commands, held in memory until they finish "
             "(each command's as compact JSON or as parsed in memory, whichever is more); a command that would "
             "pass it is refused with quota_exceeded",
        env=("TRIOSCOPE_COMMANDS_MAX_OPEN_PARAMETER_BYTES",),
        flags=("--max-open-parameter-bytes",),
    ),
    Key(
        name="commands.max_apps",
        kind=IntegerKind(1, 10_000),
        default=200,
        help="apps per deployment whose status its agent may post (POST /api/v1/apps/status; the newest "
             "status of each is kept); a status of one more app is refused with 409 too_many_apps",
        env=("TRIOSCOPE_COMMANDS_MAX_APPS",),
        flags=("--max-apps-per-deployment",),
    ),
    Key(
        name="commands.follow_max_per_user",
        kind=IntegerKind(1, 1000),
        default=3,
        help="live log follows (docker.logs with follow) one user may have open at once; more get 429",
        env=("TRIOSCOPE_COMMANDS_FOLLOW_MAX_PER_USER",),
        flags=("--log-follows-per-user",),
    ),
    Key(
        name="commands.follow_max_per_agent",
        kind=IntegerKind(1, 1000),
        default=5,
        help="live log follows open at once per deployment's agent; more get 429",
        env=("TRIOSCOPE_COMMANDS_FOLLOW_MAX_PER_AGENT",),
        flags=("--log-follows-per-agent",),
    ),
    Key(
        name="commands.follow_lines_per_second",
        kind=IntegerKind(1, 100_000),
        default=50,
        help="log lines a second one follow passes on to users; more are dropped and counted",
        env=("TRIOSCOPE_COMMANDS_FOLLOW_LINES_PER_SECOND",),
        flags=("--log-follow-lines-per-second",),
    ),
    Key(
        name="commands.follow_max_bytes",
        kind=SizeKind(1024, 1024**3),
        default=1024 * 1024,
        help="bytes of log messages one follow passes on in all; then it ends (volume_limit)",
        env=("TRIOSCOPE_COMMANDS_FOLLOW_MAX_BYTES",),
        flags=("--log-follow-max-bytes",),
    ),
    Key(
        name="commands.follow_max_duration",
        kind=DurationKind(1 * SECOND, 1 * DAY),
        default=10 * MINUTE,
        help="how long one follow lasts at most (and at most its command's timeout_seconds); then it ends (time_limit)",
        env=("TRIOSCOPE_COMMANDS_FOLLOW_MAX_DURATION",),
        flags=("--log-follow-max-duration",),
    ),
    Key(
        name="tenants.max_deployments",
        kind=IntegerKind(1, 1_000_000),
        default=50,
        help="deployments per tenant; more are refused with quota_exceeded",
        env=("TRIOSCOPE_TENANTS_MAX_DEPLOYMENTS",),
        flags=("--max-deployments",),
    ),
    Key(
        name="tenants.max_command_bytes",
        kind=SizeKind(64 * 1024, 1024**4),
        default=1024**3,
        help="bytes of one tenant's stored commands (parameters, results, errors and histories, finished ones "
             "included until pruned); once it is reached, new commands are refused with quota_exceeded (agents' "
             "results are still recorded)",
        env=("TRIOSCOPE_TENANTS_MAX_COMMAND_BYTES",),
        flags=("--max-tenant-command-bytes",),
    ),
    Key(
        name="tenants.max_metric_labels",
        kind=IntegerKind(1, 100_000),
        default=100,
        help="tenants named in /metrics labels (the first seen); the rest are counted as tenant=\"other\"",
        env=("TRIOSCOPE_TENANTS_MAX_METRIC_LABELS",),
        flags=("--max-tenant-labels",),
    ),
    Key(
        name="limits.per_address",
        kind=IntegerKind(1, 1_000_000),
        default=6000,
        help="requests per minute from one client address (IPv6: its /64), checked before authentication",
        env=("TRIOSCOPE_LIMITS_PER_ADDRESS",),
        flags=("--rate-per-address",),
    ),
    Key(
        name="limits.reports_per_address",
        kind=IntegerKind(1, 10_000_000),
        default=12_000,
        help="probe reports and heartbeats per minute from one client address (IPv6: its /64), before "
             "decoding; a probe sends 8 a minute at the default 15 s interval, so the default lets 1,500 probes "
             "share one (NAT) address: raise it for more",
        env=("TRIOSCOPE_LIMITS_REPORTS_PER_ADDRESS",),
        flags=("--reports-per-address",),
    ),
    Key(
        name="limits.registrations_per_address",
        kind=IntegerKind(1, 1_000_000),
        default=120,
        help="agent registrations and enrollments per minute from one client address (IPv6: its /64; a "
             "probe registers once when it starts)",
        env=("TRIOSCOPE_LIMITS_REGISTRATIONS_PER_ADDRESS",),
        flags=("--registrations-per-address",),
    ),
    Key(
        name="limits.connections_per_address",
        kind=IntegerKind(1, 1_000_000),
        # As many as limits.reports_per_address lets share one address: 1,500 probes
        # behind one NAT at two connections each (its long-poll and its reports).
        default=3000,
        help="TCP connections one client address (IPv6: its /64) holds open at once, per serving process; "
             "further ones are reset as soon as they are accepted. A probe holds about two (its long-poll and "
             "its reports): the default lets the 1,500 probes limits.reports_per_address allows share one (NAT) "
             "address. Connections from server.trusted_proxies are exempt (each proxy carries many clients): "
             "cap clients on the proxy",
        env=("TRIOSCOPE_LIMITS_CONNECTIONS_PER_ADDRESS",),
        flags=("--max-connections-per-address",),
    ),
    Key(
        name="limits.unsent_bytes_per_address",
        kind=SizeKind(1024**2, 64 * 1024**3),
        default=128 * 1024**2,
        help="bytes of HTTP responses being written to the connections of one client address (IPv6: its /64) at "
             "once, per serving process; one response several of them are sent counts once. A response that would "
             "go over it while others are still being written is not sent: its connection is closed, so clients "
             "that do not read cannot hold a copy each for server.write_timeout. Trusted proxies are exempt; "
             "WebSockets have their own (websocket.max_reset_bytes_per_address)",
        env=("TRIOSCOPE_LIMITS_UNSENT_BYTES_PER_ADDRESS",),
        flags=("--max-unsent-bytes-per-address",),
    ),
    Key(
        name="limits.body_bytes_per_address",
        kind=SizeKind(1024**2, 64 * 1024**3),
        # 1,500 probes behind one NAT (limits.reports_per_address) sending their
        # ~30 KB reports at the same moment hold ~45 MB; this is that and room for
        # twelve bodies of the largest size (server.max_body_size) besides.
        default=128 * 1024**2,
        help="bytes of request bodies being received from one client address (IPv6: its /64) at once, per "
             "serving process, counted as they arrive until each body is read; a request that would go over it "
             "gets 503 body_budget_exceeded with Retry-After, so clients that send large bodies slowly cannot "
             "hold server.max_body_size each for server.body_timeout. At least server.max_body_size; behind "
             "server.trusted_proxies it is each client the proxy names that has it",
        env=("TRIOSCOPE_LIMITS_BODY_BYTES_PER_ADDRESS",),
        flags=("--max-body-bytes-per-address",),
    ),
    Key(
        name="limits.body_bytes_total",
        kind=SizeKind(1024**2, 64 * 1024**3),
        default=1024**3,
        help="bytes of request bodies being received from all clients at once, per serving process, counted "
             "as they arrive until each body is read; a request that would go over it gets 503 "
             "body_budget_exceeded with Retry-After. At least server.max_body_size",
        env=("TRIOSCOPE_LIMITS_BODY_BYTES_TOTAL",),
        flags=("--max-body-bytes-total",),
    ),
    Key(
        name="limits.per_agent",
        kind=IntegerKind(1, 1_000_000),
        default=600,
        help="requests per minute from one agent",
        env=("TRIOSCOPE_LIMITS_PER_AGENT",),
        flags=("--rate-per-agent",),
    ),
    Key(
        name="limits.agent_bytes",
        kind=SizeKind(1024**2, 64 * 1024**3),
        default=64 * 1024**2,
        help="bytes per minute of one agent's request bodies and socket messages, per serving process, "
             "half of it at once (a burst: several results of server.max_body_size in a row); beyond it 429 "
             "rate_limited (scope agent_bytes). Parsing JSON costs the event loop ~0.1 s a MB: one agent's "
             "750 KB messages within its requests a minute held every other client up",
        env=("TRIOSCOPE_LIMITS_AGENT_BYTES",),
        flags=("--agent-bytes-per-minute",),
    ),
    Key(
        name="limits.per_user",
        kind=IntegerKind(1, 1_000_000),
        default=1200,
        help="requests per minute from one user",
        env=("TRIOSCOPE_LIMITS_PER_USER",),
        flags=("--rate-per-user",),
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
        help="how often WebSocket clients are sent a ping; one that has answered a ping is closed after two "
             "unanswered ones",
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
        name="websocket.resync_interval",
        kind=DurationKind(0 * SECOND, 1 * HOUR),
        default=1 * SECOND,
        help="least time between two full resets sent to one client (resync, new view or filter, lagging); "
             "requests in between are answered by one reset when it ends",
        env=("TRIOSCOPE_WEBSOCKET_RESYNC_INTERVAL",),
        flags=("--ws-resync-interval",),
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
        name="websocket.max_clients_per_address",
        kind=IntegerKind(1, 100_000),
        default=100,
        help="most WebSocket clients (live views and users' event streams) connected at once from one client "
             "address (IPv6: its /64), so that one address cannot take the whole websocket.max_clients; "
             "further ones get 503",
        env=("TRIOSCOPE_WEBSOCKET_MAX_CLIENTS_PER_ADDRESS",),
        flags=("--ws-max-clients-per-address",),
    ),
    Key(
        name="websocket.max_clients_per_user",
        kind=IntegerKind(1, 100_000),
        default=100,
        help="most WebSocket clients connected at once with one user's token (per tenant and user, from any "
             "addresses), so that one token spread over many addresses cannot take the whole "
             "websocket.max_clients; further ones get 503. Sockets opened without a token (open reads) count "
             "per address only",
        env=("TRIOSCOPE_WEBSOCKET_MAX_CLIENTS_PER_USER",),
        flags=("--ws-max-clients-per-user",),
    ),
    Key(
        name="websocket.max_waiting_clients",
        kind=IntegerKind(1, 100_000),
        default=2000,
        help="most live-view clients connected and still waiting for their first view (the whole view); "
             "further connections are refused with 503",
        env=("TRIOSCOPE_WEBSOCKET_MAX_WAITING_CLIENTS",),
        flags=("--ws-max-waiting-clients",),
    ),
    Key(
        name="websocket.max_waiting_clients_per_address",
        kind=IntegerKind(1, 100_000),
        default=20,
        help="of websocket.max_waiting_clients, most from one client address (IPv6: its /64), so that "
             "clients that never read their first view from a few addresses cannot keep every other live view "
             "out; further ones get 503",
        env=("TRIOSCOPE_WEBSOCKET_MAX_WAITING_CLIENTS_PER_ADDRESS",),
        flags=("--ws-max-waiting-clients-per-address",),
    ),
    Key(
        name="websocket.address_wait",
        kind=DurationKind(0 * SECOND, 10 * MINUTE),
        default=30 * SECOND,
        help="how long a live view from an address that has websocket.max_waiting_clients_per_address waiting "
             "already waits for one of them to have its first view before it gets 503 (0: at once); many "
             "clients of one address connecting together are let in as the views before them are written",
        env=("TRIOSCOPE_WEBSOCKET_ADDRESS_WAIT",),
        flags=("--ws-address-wait",),
    ),
    Key(
        name="websocket.first_views_per_second",
        kind=IntegerKind(1, 100_000),
        default=300,
        help="most first views (the whole view a live-view client connects with) started per second, after a "
             "burst of a quarter of that; clients connecting faster wait their turn, connected",
        env=("TRIOSCOPE_WEBSOCKET_FIRST_VIEWS_PER_SECOND",),
        flags=("--ws-first-views-per-second",),
    ),
    Key(
        name="websocket.reset_time_percent_per_address",
        kind=IntegerKind(1, 100),
        default=25,
        help="most of the server's time (percent) spent building resets (the whole view: on connecting, resync, a "
             "new view or filter) and the diffs made for one client alone (a filter's) for the live-view clients of "
             "one client address (IPv6: its /64); they build one at a time, and after one that took t the next "
             "waits t * (100 / percent - 1)",
        env=("TRIOSCOPE_WEBSOCKET_RESET_TIME_PERCENT_PER_ADDRESS",),
        flags=("--ws-reset-time-percent-per-address",),
    ),
    Key(
        name="websocket.max_reset_bytes_per_address",
        kind=SizeKind(1024**2, 64 * 1024**3),
        default=64 * 1024**2,
        help="bytes of resets queued or being sent to the live-view clients of one client address (IPv6: its /64; "
             "one reset several of them share counts once); while they are over it, those clients wait for a new "
             "one until some have been read",
        env=("TRIOSCOPE_WEBSOCKET_MAX_RESET_BYTES_PER_ADDRESS",),
        flags=("--ws-max-reset-bytes-per-address",),
    ),
    Key(
        name="websocket.max_reset_bytes",
        kind=SizeKind(1024**2, 1024**4),
        default=512 * 1024**2,
        help="bytes of resets queued or being sent to all live-view clients together (one reset several of them "
             "share counts once); while they are over it, a client that needs a reset no other client holds waits "
             "until some have been read",
        env=("TRIOSCOPE_WEBSOCKET_MAX_RESET_BYTES",),
        flags=("--ws-max-reset-bytes",),
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
    Key(
        name="alerts.agent_offline_after",
        kind=DurationKind(0 * SECOND, 30 * DAY),
        default=5 * MINUTE,
        help="the server raises AgentOffline for an enrolled agent silent this long, and resolves it when the "
             "agent is heard from again; 0 turns the rule off (when Prometheus evaluates the shipped rules)",
        env=("TRIOSCOPE_ALERTS_AGENT_OFFLINE_AFTER",),
        flags=("--alert-agent-offline-after",),
    ),
    Key(
        name="alerts.command_failure_percent",
        kind=IntegerKind(0, 100),
        default=10,
        help="the server raises HighCommandFailureRate for a tenant whose commands finished within "
             "command_failure_window failed more than this percentage of the time; 0 turns the rule off",
        env=("TRIOSCOPE_ALERTS_COMMAND_FAILURE_PERCENT",),
        flags=("--alert-command-failure-percent",),
    ),
    Key(
        name="alerts.command_failure_window",
        kind=DurationKind(1 * SECOND, 1 * DAY),
        default=5 * MINUTE,
        help="the window of the command failure rate",
        env=("TRIOSCOPE_ALERTS_COMMAND_FAILURE_WINDOW",),
        flags=("--alert-command-failure-window",),
    ),
    Key(
        name="alerts.command_failure_min_commands",
        kind=IntegerKind(1, 1_000_000),
        default=10,
        help="fewest commands finished within the window before their failure rate can raise an alert",
        env=("TRIOSCOPE_ALERTS_COMMAND_FAILURE_MIN_COMMANDS",),
        flags=("--alert-command-failure-min-commands",),
    ),
    Key(
        name="alerts.evaluation_interval",
        kind=DurationKind(0.1 * SECOND, 1 * HOUR),
        default=15 * SECOND,
        help="how often the server evaluates its own alert rules",
        env=("TRIOSCOPE_ALERTS_EVALUATION_INTERVAL",),
        flags=("--alert-evaluation-interval",),
    ),
    Key(
        name="alerts.webhook_secret",
        kind=WebhookSecretKind(),
        default="",
        help="bearer token Alertmanager sends to POST /api/v1/alerts/webhook; empty: the webhook is off (404)",
        env=("TRIOSCOPE_ALERTS_WEBHOOK_SECRET",),
        flags=(),
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


ENV_NAMES: frozenset[str] = frozenset(name for key in KEYS for name in key.env)
"""Every environment variable a key is read from, aliases included."""


def is_other_env(name: str) -> bool:
    """Whether ``name`` is one of ``OTHER_ENV``: no setting, but read elsewhere."""
    return name in OTHER_ENV or any(
        pattern.endswith("*") and name.startswith(pattern[:-1]) for pattern in OTHER_ENV
    )


def suggest_env(name: str) -> str | None:
    """The key's environment variable a misspelt ``TRIOSCOPE_`` name most likely
    meant (``TRIOSCOPE_AUTH_PROTECT_READ`` -> ``TRIOSCOPE_AUTH_PROTECT_READS``), by
    way of ``suggest_key`` on the name read as a dotted key; else the closest of
    ``OTHER_ENV`` (``TRIOSCOPE_CONFG`` -> ``TRIOSCOPE_CONFIG``).

    Returns:
      A variable name, or None when nothing is close.
    """
    rest = name.removeprefix(ENV_PREFIX).lower()
    section = next((section for section in SECTIONS if rest.startswith(f"{section}_")), None)
    dotted = rest if section is None else f"{section}.{rest.removeprefix(f'{section}_')}"
    key = suggest_key(dotted)
    if key is not None:
        return KEYS_BY_NAME[key].env[0]
    others = [other for other in OTHER_ENV if not other.endswith("*")]
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.8)
    return close[0] if close else None
