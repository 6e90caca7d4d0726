"""The ``trioscope-probe`` command line.

Reports this host (host facts and metrics, processes with their containers,
TCP/UDP connections, and with ``--docker-host`` the engine's containers) to a
trioscope server every interval; with ``--deployment-hash`` it is also that
deployment's command agent (enrolled once, credentials kept in ``--state-dir``).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hashlib
import ipaddress
import logging
import os
import re
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any, NoReturn
from pathlib import Path

import httpx
import orjson
import trio

from trioscope.wire import client_tls, server_url_problem, shown_url
from trioscope.wire.log_lines import configure_logging

from . import _answers as answers
from ._agent import CommandAgent, Credentials, check_writable, enroll, load_credentials, save_credentials
from ._collect import ReportCollector, hostname
from ._config import (CONFIG_ENV, FILE_KEY_OF_ENV, MAX_NUMBER, ConfigFileError, FileValues, example_file,
                      load_file, unknown_environment)
from ._docker import ContainerCollector
from ._engine import docker_host_problem
from ._duration import parse_duration
from ._executor import DEFAULT_ALLOWED, KNOWN, ControlError
from ._os_text import os_bytes
from ._parent import stop_when_parent_gone
from ._pending import PendingReports
from ._refusals import Backoff, ServerUnavailable
from ._state_dir import trusted_state_dir
from ._token_file import TokenFileError, read_token_file
from ._transport import ReportRequests, Signer, report_json, run_publisher

_NOT_ID = re.compile(r"[^A-Za-z0-9._:@-]")


def default_agent_id() -> str:
    """The hostname, made a valid agent id (``agent_id_of``)."""
    return agent_id_of(socket.gethostname())


def agent_id_of(hostname: str) -> str:
    """A host name (as Python decoded it) made a valid agent id: each
    character an id cannot hold as ``-``, a label that is not ASCII first
    written as its punycode, ``xn--`` and all (``höst`` -> ``xn--hst-sna``, as
    DNS writes it; ``Höst`` -> ``xn--Hst-sna``). With only the ``-``, ``сервер``
    and ``база`` were both ``host``, and the topology flipped between them.
    Punycode reads code points: it takes any label (an emoji, a byte that is
    not UTF-8, kept as a lone surrogate), and gives two labels one form only if
    they are one. The bytes are read as UTF-8 whatever the locale, so that a
    probe keeps its id under any; an ASCII name's id is as it always was
    (probes keep theirs). Cut to 128 characters, an id of a name that is not
    ASCII (its punycode may be longer) ends with a hash of the name."""
    raw = os_bytes(hostname)
    name = raw.decode("utf-8", "surrogateescape")
    if not name.isascii():
        name = ".".join(label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
                        for label in name.split("."))
    name = _NOT_ID.sub("-", name).lstrip("._:@-") or "host"
    if len(name) > 128 and not raw.isascii():
        name = f"{name[:119]}-{hashlib.sha256(raw).hexdigest()[:8]}"
    return name[:128]


class _Parser(argparse.ArgumentParser):
    """One line for a mistyped command line (the usage is in --help), with the
    flag a misspelt one most likely meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A word of a dash and a digit is a value (``--interval -5s``), never a
        # flag: argparse said "expected one argument" where the value's own
        # refusal says more, as the server's parser does.
        self._negative_number_matcher = re.compile(r"^-\d")

    def error(self, message: str) -> NoReturn:
        hints: list[str] = []
        if message.startswith("unrecognized arguments: "):
            known = [option for action in self._actions for option in action.option_strings]
            for word in message.removeprefix("unrecognized arguments: ").split():
                if word.startswith("-"):
                    hints += difflib.get_close_matches(word.partition("=")[0], known, n=1)
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        self.exit(2, f"{self.prog}: {message}{hint}; see --help\n")

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        # Python 3.11's argparse matches a word of one dash by prefix even with
        # allow_abbrev=False (``trioscope serve -c x.yaml`` read as -cleanup-interval): whole options only.
        return [] if not self.allow_abbrev else super()._get_option_tuples(option_string)


def build_parser(file_values: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    file_values = file_values or {}

    def env(name: str, default: Any = None) -> Any:
        """The environment wins over the file, which wins over the default."""
        key = FILE_KEY_OF_ENV.get(name)
        fallback = file_values.get(key, default) if key is not None else default
        return os.environ.get(name, fallback)

    parser = _Parser(
        prog="trioscope-probe",
        description="Report this host's processes, connections and metrics to a trioscope server.",
        # Where it is on this machine (a wheel installs config/ elsewhere), on a
        # line of its own: help texts are wrapped, and cut a path at its hyphens.
        epilog=f"An example --config file documents every key with its default:\n  {example_file()}"
        .replace("%", "%%"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--config", default=os.environ.get(CONFIG_ENV),
                        help="YAML file with these settings (env TRIOSCOPE_PROBE_CONFIG; the example below "
                        "documents every key)")
    parser.add_argument("--server", default=env("TRIOSCOPE_PROBE_SERVER", "http://127.0.0.1:8080"),
                        help="server base URL (env TRIOSCOPE_PROBE_SERVER; default %(default)s)")
    parser.add_argument("--ca-file", default=env("TRIOSCOPE_PROBE_CA_FILE"),
                        help="PEM certificates to trust for an https:// --server instead of the system's "
                        "(a private CA, or the server's own certificate) (env TRIOSCOPE_PROBE_CA_FILE)")
    parser.add_argument("--interval", default=env("TRIOSCOPE_PROBE_INTERVAL", "15s"),
                        help="time between reports, 1s..1h: a duration like 15s or 1m, or a number of seconds "
                        "(env TRIOSCOPE_PROBE_INTERVAL; default %(default)s)")
    parser.add_argument("--agent-id", default=env("TRIOSCOPE_PROBE_AGENT_ID", default_agent_id()),
                        help="this probe's agent id (env TRIOSCOPE_PROBE_AGENT_ID; default: the hostname)")
    parser.add_argument("--buffer", default=env("TRIOSCOPE_PROBE_BUFFER", 40),
                        help="reports kept while the server is unreachable, slow or asks to wait; older ones are dropped "
                        "(env TRIOSCOPE_PROBE_BUFFER; default %(default)s)")
    parser.add_argument("--docker-host", default=env("DOCKER_HOST"),
                        help="Docker API of the container engine, e.g. unix:///var/run/docker.sock "
                        "(env DOCKER_HOST; default: none, containers are not reported)")
    parser.add_argument("--env-values", action="store_true", default=file_values.get("env_values", False),
                        help="report containers' environment values too (default: names only)")
    parser.add_argument("--deployment-hash", default=env("TRIOSCOPE_PROBE_DEPLOYMENT"),
                        help="also act as this deployment's command agent, running container controls "
                        "(env TRIOSCOPE_PROBE_DEPLOYMENT)")
    parser.add_argument("--enrollment-token", default=env("TRIOSCOPE_PROBE_ENROLLMENT_TOKEN"),
                        help="the deployment's one-time enrollment token, for the first start "
                        "(env TRIOSCOPE_PROBE_ENROLLMENT_TOKEN); the agent token is then kept in --state-dir. "
                        "A new token enrolls again (after a decommission) and replaces the saved credentials. "
                        "Every local user can read a flag's value while the probe runs: prefer the env "
                        "or --enrollment-token-file")
    parser.add_argument("--enrollment-token-file", default=env("TRIOSCOPE_PROBE_ENROLLMENT_TOKEN_FILE"),
                        help="a file holding the enrollment token, read once at start "
                        "(env TRIOSCOPE_PROBE_ENROLLMENT_TOKEN_FILE)")
    parser.add_argument("--state-dir", default=env("TRIOSCOPE_PROBE_STATE_DIR", "~/.local/state/trioscope-probe"),
                        help="where the agent credentials are kept, mode 0600 in a directory created 0700; "
                        "one another user could change is refused (env TRIOSCOPE_PROBE_STATE_DIR; "
                        "default %(default)s)")
    parser.add_argument("--allow", default=env("TRIOSCOPE_PROBE_ALLOW", ",".join(DEFAULT_ALLOWED)),
                        help="command types this probe runs, comma-separated "
                        "(env TRIOSCOPE_PROBE_ALLOW; default: every docker.* control but docker.exec, which runs "
                        "any command in a container: name it to allow it)")
    parser.add_argument("--no-processes", action="store_true", default=not file_values.get("processes", True),
                        help="do not report processes")
    parser.add_argument("--no-connections", action="store_true", default=not file_values.get("connections", True),
                        help="do not report connections")
    parser.add_argument("--once", action="store_true",
                        help="print one report as JSON and exit (host CPU is measured over half a second)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop (exit status 0) when stdin reaches end of file: for a parent process that "
                        "holds the write end of a pipe, as trioscope serve does for its local probe")
    # Checked after the file and the environment are read, in any case (``main``), as the server reads them.
    parser.add_argument("--log-level", default=env("TRIOSCOPE_PROBE_LOG_LEVEL", "info"),
                        help="least severe log level written: debug, info, warning or error (env "
                        "TRIOSCOPE_PROBE_LOG_LEVEL; default %(default)s)")
    parser.add_argument("--log-format", default=env("TRIOSCOPE_PROBE_LOG_FORMAT", "human"),
                        help="log lines as text (human), or one JSON object per line as the server writes them "
                        "(json) (env TRIOSCOPE_PROBE_LOG_FORMAT; default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --conf is no --config; a --config without its value is one line, as every other refusal.
    early = _Parser(prog="trioscope-probe", add_help=False, allow_abbrev=False)
    early.add_argument("--config", default=os.environ.get(CONFIG_ENV))
    config_path = early.parse_known_args(argv)[0].config
    problems = unknown_environment(os.environ)
    file_values = FileValues()
    if config_path:
        try:
            file_values = load_file(config_path)
        except ConfigFileError as exc:
            problems += exc.problems
    if problems:
        for problem in problems:
            print(f"trioscope-probe: configuration error: {problem}", file=sys.stderr)
        sys.exit(2)
    parser = build_parser(file_values)
    args = parser.parse_args(argv)

    def refuse(flag: str, env_name: str, problem: str) -> NoReturn:
        """Exit 2 naming where the bad value came from: the flag, the environment or the file."""
        key = FILE_KEY_OF_ENV[env_name]
        if any(a == flag or a.startswith(f"{flag}=") for a in argv):
            where = flag
        elif env_name in os.environ:
            where = f"{flag} (from env {env_name})"
        elif key in file_values:
            where = f"{flag} (from {key} in {config_path}:{file_values.lines.get(key, '?')})"
        else:
            where = flag
        parser.exit(2, f"trioscope-probe: {where}: {problem}\n")

    try:
        interval = parse_duration(str(args.interval))
    except ValueError as exc:
        refuse("--interval", "TRIOSCOPE_PROBE_INTERVAL", str(exc))
    if not 1.0 <= interval <= 3600.0:
        refuse("--interval", "TRIOSCOPE_PROBE_INTERVAL", "must be between 1s and 1h")
    args.log_level, args.log_format = args.log_level.strip().lower(), args.log_format.strip().lower()  # as the server
    if args.log_level not in ("debug", "info", "warning", "error"):
        refuse("--log-level", "TRIOSCOPE_PROBE_LOG_LEVEL", "must be debug, info, warning or error")
    if args.log_format not in ("human", "json"):
        refuse("--log-format", "TRIOSCOPE_PROBE_LOG_FORMAT", "must be human or json")
    try:  # read here, not by argparse, so that a bad value is named by where it came from
        args.buffer = _whole_number(args.buffer)
    except ValueError:
        refuse("--buffer", "TRIOSCOPE_PROBE_BUFFER", f"{str(args.buffer)[:40]!r} is not a whole number")
    if not 1 <= args.buffer <= 10_000:
        refuse("--buffer", "TRIOSCOPE_PROBE_BUFFER", "must be between 1 and 10000")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}", args.agent_id):
        refuse("--agent-id", "TRIOSCOPE_PROBE_AGENT_ID",
               "1-128 letters, digits or . _ : @ - starting with a letter or digit")
    if args.deployment_hash and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.deployment_hash):
        # A path segment of the agent's routes: the server answered "invalid_enrollment_token" for 'x y'.
        refuse("--deployment-hash", "TRIOSCOPE_PROBE_DEPLOYMENT",
               "1-64 letters, digits or . _ - (the hash the deployment's page shows)")
    server_problem = server_url_problem(args.server)
    if server_problem is not None:
        refuse("--server", "TRIOSCOPE_PROBE_SERVER", server_problem)
    docker_problem = docker_host_problem(args.docker_host) if args.docker_host else None
    if docker_problem is not None:
        refuse("--docker-host", "DOCKER_HOST", docker_problem)
    try:
        args.tls = client_tls(args.ca_file)
    except (OSError, ssl.SSLError) as exc:
        refuse("--ca-file", "TRIOSCOPE_PROBE_CA_FILE", f"cannot use {args.ca_file}: {exc}")
    if args.enrollment_token_file:
        if args.enrollment_token:
            refuse("--enrollment-token-file", "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN_FILE",
                   "the enrollment token is given by --enrollment-token (or its env or file key) too; give it once")
        try:
            args.enrollment_token = read_token_file(Path(args.enrollment_token_file).expanduser())
        except TokenFileError as exc:
            refuse("--enrollment-token-file", "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN_FILE", str(exc))
    token_flag = any(a == "--enrollment-token" or a.startswith("--enrollment-token=") for a in argv)
    allowed = tuple(a.strip() for a in args.allow.split(",") if a.strip())
    unknown = sorted(set(allowed) - set(KNOWN))
    if unknown:
        refuse("--allow", "TRIOSCOPE_PROBE_ALLOW",
               f"unknown command types {', '.join(unknown)}; known: {', '.join(sorted(KNOWN))}")
    # The server's own log output: the local probe writes into its server's
    # stream, which must stay one format (and one clock: UTC).
    configure_logging(args.log_level, args.log_format)
    if args.log_level != "debug":  # httpx logs every request at info: two lines a second, saying nothing new
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if token_flag:
        # Not refused: the README's examples showed the flag, and a probe of a private host may use it.
        logging.getLogger("trioscope_probe").warning(
            "--enrollment-token on the command line can be read by every user of this host (ps, "
            "/proc/PID/cmdline) while the probe runs, and enrolled with before it does: give it by "
            "--enrollment-token-file or the env TRIOSCOPE_PROBE_ENROLLMENT_TOKEN")
    containers = ContainerCollector(args.docker_host, env_values=args.env_values) if args.docker_host else None
    collector = ReportCollector(args.agent_id, processes=not args.no_processes,
                                connections=not args.no_connections, containers=containers)
    if args.once:
        # JSON is UTF-8: as bytes, not in the locale's encoding (ASCII under LC_ALL=C could not write an İ).
        sys.stdout.buffer.write(report_json(collector.collect(), orjson.OPT_INDENT_2) + b"\n")
        return
    logging.getLogger("trioscope_probe").info(
        "probe %s reporting to %s every %ss", args.agent_id, shown_url(args.server), f"{interval:g}")
    if args.deployment_hash and not _private_path(args.server):
        logging.getLogger("trioscope_probe").warning(
            "%s is plain http:// to another host: the enrollment token, the agent token's signatures and every "
            "command travel unencrypted, and whoever is on the path can pose as the server and send commands "
            "(use https://, with --ca-file for a private certificate authority)", shown_url(args.server))
    sys.exit(trio.run(_run_until_signalled, args, interval, collector, allowed))


_DIGITS = re.compile(r"\s*([+-]?)([0-9]+)\s*")


def _whole_number(value: object) -> int:
    """``int(value)``, but a number of more than ``MAX_NUMBER`` digits stands as
    one beyond every bound: int() refuses one of 4,300 as if it were no number.

    Raises:
        ValueError: ``value`` is no whole number.
    """
    text = str(value)
    match = _DIGITS.fullmatch(text)
    if match is not None and len(match[2]) > MAX_NUMBER:
        return -sys.maxsize if match[1] == "-" else sys.maxsize
    return int(text)


def _private_path(server: str) -> bool:
    """Whether ``server`` is https://, or http:// to this host (loopback), where nobody else is on the path."""
    url = httpx.URL(server)
    if url.scheme == "https":
        return True
    host = url.host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _run_until_signalled(args: argparse.Namespace, interval: float, collector: ReportCollector,
                               allowed: tuple[str, ...]) -> int:
    """Publish (and run commands) until SIGINT, SIGTERM or SIGHUP (the probe
    reads no configuration again: a hang-up, its terminal closed, stops it as
    SIGTERM does, said in the log, where it ended it silently, status 129), then stop at once
    (what is unsent is only metrics; the next start reports the current state).

    Answers the exit status: 0 when signalled or (``--exit-with-parent``) when the
    parent is gone, 2 when enrollment was refused."""
    server = args.server.rstrip("/")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with answers.client(server, verify=args.tls) as client, \
                trio.open_nursery() as nursery:
            nursery.start_soon(_stop_when_signalled, signals, nursery.cancel_scope)
            if args.exit_with_parent:
                nursery.start_soon(stop_when_parent_gone, nursery.cancel_scope)
            metadata: dict[str, str] = {}
            signer: Signer | None = None
            asked = ReportRequests()  # a container control asks for a report at once
            if args.deployment_hash:
                try:
                    credentials = await _credentials(client, args, allowed)
                    state_dir = trusted_state_dir(Path(args.state_dir))  # blocking, at start
                except ControlError as exc:
                    # Logged (as JSON with --log-format json), not printed: logging is set up by now.
                    logging.getLogger("trioscope_probe").critical("%s; stopping", exc,
                                                                  extra={"event": "probe_refused"})
                    nursery.cancel_scope.cancel()
                    return 2
                metadata = {"deployment_hash": credentials.deployment_hash, "command_agent_id": credentials.agent_id}
                signer = Signer(credentials.agent_id, credentials.agent_token)
                pending = PendingReports(state_dir / "pending-reports")
                nursery.start_soon(CommandAgent(client, credentials, args.docker_host, allowed,
                                                containers_changed=asked.ask, pending=pending).run)
            nursery.start_soon(functools.partial(
                run_publisher, server, args.agent_id, hostname(), interval, args.buffer,
                collector.collect, metadata=metadata, signer=signer, tls=args.tls, asked=asked))
    return 0


async def _stop_when_signalled(signals: Any, scope: trio.CancelScope) -> None:
    async for signum in signals:
        logging.getLogger("trioscope_probe").info("received %s: stopping", signal.Signals(signum).name)
        scope.cancel()
        return


async def _credentials(client: httpx.AsyncClient, args: argparse.Namespace, allowed: tuple[str, ...]) -> Credentials:
    """Saved credentials for the deployment, or a fresh enrollment (saved); while
    the server is away, enrollment is retried with backoff like reports are. An
    enrollment token other than the one the saved credentials came from enrolls
    again and replaces them (the way to revive a decommissioned probe).

    Raises:
        ControlError: a state directory another user could change, or that
            cannot be written; unreadable or untrusted credentials; none and
            no enrollment token; or the enrollment was refused.
    """
    log = logging.getLogger("trioscope_probe")
    state_dir = trusted_state_dir(Path(args.state_dir))  # blocking, once, at start-up
    path = state_dir / "credentials.json"
    saved = load_credentials(path, args.deployment_hash, args.enrollment_token or None)
    if saved is not None:
        return saved
    if not args.enrollment_token:
        raise ControlError(f"no saved credentials in {path}; give the deployment's enrollment token once "
                           "(--enrollment-token-file, or the env TRIOSCOPE_PROBE_ENROLLMENT_TOKEN)")
    check_writable(path.parent)
    if path.exists():
        log.info("enrolling in deployment %s with the enrollment token given; the credentials in %s will be "
                 "replaced", args.deployment_hash, path)
    backoff = Backoff()
    while True:
        try:
            credentials = await enroll(client, args.deployment_hash, args.enrollment_token, list(allowed))
            break
        except ServerUnavailable as exc:
            if backoff.attempts == 0:
                log.warning("enrollment in deployment %s: server %s unreachable (%s); retrying with backoff",
                            args.deployment_hash, shown_url(args.server), exc)
            await trio.sleep(backoff.next())
    save_credentials(path, credentials, args.enrollment_token)
    log.info("enrolled in deployment %s as agent %s", credentials.deployment_hash, credentials.agent_id)
    return credentials
