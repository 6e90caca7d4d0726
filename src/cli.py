"""The ``trioscope`` command line: ``serve`` (the default), ``token create``, ``audit``, ``store copy``, ``health`` and ``version``."""

from __future__ import annotations

import argparse
import difflib
import functools
import http
import json
import logging
import math
import os
import re
import ssl
import string
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

from trioscope import allocator
from trioscope.config import (
    ConfigError,
    FlagValue,
    Settings,
    add_arguments,
    format_effective,
    load_settings,
    parse_duration,
)
from trioscope.entry_point import Terminated, sigterm_raises
from trioscope.exit_code import ExitCode
from trioscope.wire.log_lines import configure_logging, visible_text

if TYPE_CHECKING:
    from trioscope.store import CopyCounts

# Each command imports what it needs when it runs (the server, the store, the
# HTTP client): ``serve`` decides its allocator first and re-executes itself
# for it, and imports paid before that are paid twice (~1 s a start).

log = logging.getLogger("trioscope")


def _version() -> str:
    try:
        return version("trioscope")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


DESCRIPTION = """\
trioscope: see and steer your infrastructure. Probes report hosts, containers,
processes and connections; the server merges them into a live topology with
metric history and delivers commands to agents.
"""

SERVE_DESCRIPTION = """\
Run the server: the HTTP API, WebSocket updates and the actors behind them.
Stops gracefully on SIGINT or SIGTERM (a second signal stops at once).
With --workers N (a PostgreSQL --database), N processes serve the one port
under a parent that restarts a worker that dies and stops them all on SIGTERM.
Exit codes: 0 clean stop, 1 failure (cannot listen, internal failure, shutdown
overran, a worker kept failing), 2 bad configuration (also --workers above 1
with SQLite), 130 or 143 stopped at once by a second SIGINT or SIGTERM (128 +
the signal's number, as shells report a process a signal ended; with --workers
the parent then exits 1).
"""


NEGATIVE_VALUE = re.compile(r"^-\d")
"""What argparse takes for a value rather than a flag (``CommandParser``)."""


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that refuses a command line in one line (exit 2):
    what is wrong and which help to read, e.g. ``trioscope serve: unrecognized
    arguments: --prot 1 (did you mean --port?); see trioscope serve --help``.
    argparse prints the usage first, which for ``serve`` is ~50 lines the
    problem scrolls away behind. Subcommands' parsers are of this class too
    (``add_subparsers`` makes them of the parent's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A word of a dash and a digit is a value, never a flag (none begins so):
        # argparse took ``--shutdown-timeout -5s`` for a flag without its value
        # ("expected one argument") where the value's own refusal says more.
        self._negative_number_matcher = NEGATIVE_VALUE

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]  # typeshed overloads it by namespace type
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required"):
            # A mistyped option is why one is missing (``--us u`` for ``--user u``):
            # argparse says only the missing one, before the unknown ones.
            unknown = [word for word in getattr(self, "_given", []) if word.startswith("-") and word != "--"
                       and not NEGATIVE_VALUE.match(word) and word.split("=", 1)[0] not in self._option_string_actions]
            if unknown:
                close = difflib.get_close_matches(unknown[0].split("=", 1)[0], list(self._option_string_actions), n=1)
                message = f"unrecognized arguments: {' '.join(unknown)}{f' (did you mean {close[0]}?)' if close else ''}"
        self.exit(ExitCode.USAGE, f"{self.prog}: {message}; see {self.prog} --help\n")

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        # Python 3.11's argparse matches a word of one dash by prefix even with
        # allow_abbrev=False: with the seed's one-dash flags (-port,
        # -cleanup-interval) ``-c config.yaml`` was read as -cleanup-interval
        # and ``-p 9093`` set the port. Only whole option strings match here.
        return [] if not self.allow_abbrev else super()._get_option_tuples(option_string)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="trioscope", description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"trioscope {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    serve_parser = commands.add_parser(
        "serve", help="run the server (the default command)", description=SERVE_DESCRIPTION,
        allow_abbrev=False, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_parser.add_argument("-h", "--help", "-help", action="help", help="show this help and exit")
    serve_parser.add_argument(
        "--print-config", action="store_true",
        help="print every setting's effective value and where it came from, then exit",
    )
    add_arguments(serve_parser)
    serve_parser.set_defaults(run=run_serve)

    _add_token_parser(commands)
    _add_audit_parser(commands)
    _add_store_parser(commands)

    _add_health_parser(commands)

    version_parser = commands.add_parser("version", help="print the version and exit")
    version_parser.set_defaults(run=lambda _args: print(f"trioscope {_version()}") or ExitCode.OK)
    return parser


TOKEN_CREATE_DESCRIPTION = """\
Mint a user token (HS256 JWT) and print it on one line. The token is signed with
the server's key: auth.secret if set (config file or TRIOSCOPE_AUTH_SECRET),
otherwise <data_dir>/jwt-secret, which the server generates when it first
starts. A data directory that does not exist or holds no jwt-secret is refused
(a mistyped --data-dir would sign with a key no server knows): start the server
first. Give it the same --config, --data-dir and environment as the server.
Exit codes: 0 printed, 1 no data directory or secret there, or it cannot be
read, 2 bad arguments or configuration.
"""

MIN_TOKEN_TTL = 1.0
"""Tokens carry whole seconds: a shorter one would be printed already expired."""
MAX_TOKEN_TTL = 365 * 86400.0
"""A year: a longer-lived token is a standing credential (and years past 9999
are no date at all)."""
TOKEN_TTL_RANGE = f"{MIN_TOKEN_TTL:g}s..{MAX_TOKEN_TTL / 86400:g}d"


class GivenOnce(argparse.Action):
    """An option that may be given once (its default None). Whom a token is
    for and what it may do are not left to argparse's "the last one wins":
    ``--role viewer --role admin`` minted an ADMIN token."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            raise argparse.ArgumentError(self, "given more than once; give it once")
        setattr(namespace, self.dest, values)


def _add_token_parser(commands: argparse._SubParsersAction[CommandParser]) -> None:
    from trioscope.domain.principals import Role

    token_parser = commands.add_parser(
        "token", help="manage user tokens (token create)", description="Manage user tokens.", allow_abbrev=False
    )
    token_commands = token_parser.add_subparsers(title="commands", metavar="COMMAND", dest="token_command")
    token_commands.required = True
    create = token_commands.add_parser(
        "create", help="mint a user token and print it", description=TOKEN_CREATE_DESCRIPTION,
        allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--user", required=True, action=GivenOnce,
                        help="user id, the token's subject (1-128 characters)")
    create.add_argument("--tenant", required=True, action=GivenOnce, help="tenant the user acts in (1-128 characters)")
    create.add_argument(
        "--role", required=True, metavar="ROLE", action=GivenOnce,
        help=f"the user's role: {', '.join(role.value for role in reversed(Role))} (any case)",
    )
    create.add_argument(
        "--ttl", default="24h", metavar="DURATION",
        help=f"how long the token is valid from now, {TOKEN_TTL_RANGE}, e.g. 1h, 24h, 30d (default: 24h)",
    )
    # Only the settings that decide the signing key; other keys come from the file
    # and environment as for `serve` (and are checked the same way).
    create.add_argument(
        "--config", metavar="PATH", help="read settings from this YAML file (env TRIOSCOPE_CONFIG), as for serve"
    )
    create.add_argument(
        "--data-dir", metavar="DIR",
        help="the server's data directory, holding jwt-secret (env TRIOSCOPE_STORAGE_DATA_DIR), as for serve",
    )
    create.set_defaults(run=run_token_create)


def _usage_error(message: str) -> int:
    print(f"trioscope token create: {message}", file=sys.stderr)
    return ExitCode.USAGE


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def run_token_create(args: argparse.Namespace) -> int:
    """Print a token for ``--user`` in ``--tenant`` with ``--role``, signed with the
    key the server uses (same settings layers, same secret file)."""
    from trioscope.domain.principals import Role, identity_problem, mint_user_token
    from trioscope.store import token_secret

    try:
        # Only ASCII letters fold: "adm\u0131n" (a dotless i) is no ADMIN, as str.upper would make it.
        role = Role(args.role.translate(_ASCII_UPPER))
    except ValueError:
        return _usage_error(
            f"--role: unknown role {args.role!r}; use one of {', '.join(role.value for role in reversed(Role))}"
        )
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as exc:
        return _usage_error(f"--ttl: {exc}")
    if ttl <= 0:
        return _usage_error(f"--ttl: {args.ttl} is not positive")
    if not MIN_TOKEN_TTL <= ttl <= MAX_TOKEN_TTL:
        return _usage_error(f"--ttl: {args.ttl} is out of range; allowed {TOKEN_TTL_RANGE}")
    # Before the secret is looked for: bad arguments are exit 2 wherever the data directory is.
    for name, value in (("user", args.user), ("tenant", args.tenant)):
        if (problem := identity_problem(value)) is not None:
            return _usage_error(f"--{name}: {value[:64]!r} {problem}")
    settings = _data_dir_settings(args)
    if settings is None:
        return ExitCode.USAGE
    try:
        secret = token_secret(settings.auth.secret, settings.storage.data_dir, create=False)
    except (FileNotFoundError, NotADirectoryError) as exc:
        print(f"trioscope token create: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except (OSError, ValueError) as exc:
        print(f"trioscope token create: cannot read the token secret: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    try:
        token = mint_user_token(secret, user_id=args.user, tenant=args.tenant, role=role, now=time.time(), ttl=ttl)
    except ValueError as exc:  # checked above; kept so that a new rule of the domain's is no traceback
        return _usage_error(str(exc))
    print(token)
    return ExitCode.OK


AUDIT_DESCRIPTION = """\
Print audit records from the server's database, newest first: who did what,
when and from which address. Tenant admins read their tenant's records over
GET /api/v1/audit; this command (for whoever runs the server, reading its
data directory) also shows the records in no tenant's log: refused requests
whose credentials named nobody (bad tokens, unknown agents, unsigned claims).
Exit codes: 0 printed, 1 no database there, 2 bad arguments or configuration.
"""


def _add_audit_parser(commands: argparse._SubParsersAction[CommandParser]) -> None:
    audit = commands.add_parser(
        "audit", help="print audit records, including refusals in no tenant's log",
        description=AUDIT_DESCRIPTION, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = audit.add_mutually_exclusive_group()
    scope.add_argument("--tenant", help="only this tenant's records (default: every record)")
    scope.add_argument("--unattributed", action="store_true",
                       help="only the records in no tenant's log (refusals of unknown credentials)")
    audit.add_argument("--action", help="only this action, e.g. auth.failure, command.create")
    audit.add_argument("--actor", help="only this actor, e.g. anonymous, user:alice, agent:<id>")
    audit.add_argument("--since", metavar="DURATION", help="only records from this long ago, e.g. 1h, 7d")
    audit.add_argument("--limit", type=int, default=100, help="at most this many records (1-10000, default 100)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line instead of columns")
    audit.add_argument("--config", metavar="PATH", help="read settings from this YAML file, as for serve")
    audit.add_argument("--data-dir", metavar="DIR", help="the server's data directory, as for serve")
    audit.add_argument("--database", metavar="URL", help="the server's database, as for serve (store.database)")
    audit.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    """Print the matching audit records of the server's database."""
    import sqlite3

    import attrs
    import trio

    from trioscope.store import (
        ForeignDatabase, NewerSchema, StoreReader, Unavailable, describe_database, resolve_database, stored_schema,
    )

    def usage(message: str) -> int:
        print(f"trioscope audit: {message}", file=sys.stderr)
        return ExitCode.USAGE

    if not 1 <= args.limit <= 10_000:
        return usage("--limit: must be 1-10000")
    since = None
    if args.since is not None:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            return usage(f"--since: {exc}")
    settings = _data_dir_settings(args, args.database)
    if settings is None:
        return ExitCode.USAGE
    database = resolve_database(settings.store.database, settings.storage.data_dir)
    if isinstance(database, Path) and not database.is_file():
        print(f"trioscope audit: no database at {database} (give the server's --data-dir or --database)",
              file=sys.stderr)
        return ExitCode.FAILED
    try:
        if not stored_schema(database)[2]:
            print(f"trioscope audit: {describe_database(database)} holds no trioscope data (give the server's "
                  "--data-dir or --database)", file=sys.stderr)
            return ExitCode.FAILED
        reader = StoreReader(database)
        try:
            records, total = trio.run(functools.partial(
                reader.audit, None if args.unattributed else args.tenant, action=args.action, actor=args.actor,
                since=since, until=None, limit=args.limit, offset=0,
                every_tenant=not args.unattributed and args.tenant is None))
        finally:
            reader.close()
    except (Unavailable, NewerSchema, ForeignDatabase) as exc:
        print(f"trioscope audit: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except sqlite3.Error as exc:  # e.g. a file that is no database
        print(f"trioscope audit: cannot read {describe_database(database)}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    for record in records:
        entry = {"id": record.id, **attrs.asdict(record.entry)}
        entry["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["at"]))
        if args.json:
            print(json.dumps(entry, sort_keys=True))
        else:
            # Escaped: a record's fields are partly what clients sent, and a
            # terminal would act on their escape sequences.
            resource = f"{entry['resource_type'] or '-'}:{entry['resource_id'] or '-'}"
            print(visible_text(f"{entry['at']}  {entry['tenant'] or '(none)'}  {entry['actor']}  {entry['action']}  "
                               f"{entry['outcome']}  {entry['address'] or '-'}  {resource}  "
                               f"{json.dumps(entry['details'], sort_keys=True)}"))
    if not args.json:
        print(f"({len(records)} of {total} matching records)", file=sys.stderr)
    return ExitCode.OK


STORE_COPY_DESCRIPTION = """\
Copy every deployment (with its enrollment token), agent (with its token),
command (with its history, result and error) and audit record (with its id)
from one store into another, e.g. from the SQLite file of a single server to
the PostgreSQL database that replicas share. Stop the servers using either
first. The target must hold no trioscope data unless --into-non-empty is
given (then rows of the same key are replaced, so an interrupted copy can be
run again). A source that holds no trioscope data is refused. A source
written by an earlier trioscope is refused unless
--upgrade-source is given: copying upgrades it first, and the trioscope that
wrote it can then no longer open it. User tokens stay valid where the same auth.secret (or the data
directory's jwt-secret) is used.
Exit codes: 0 copied, 1 refused or failed, 2 bad arguments, 130 or 143
stopped by Ctrl-C or SIGTERM (said with what was copied so far).
"""


def _add_store_parser(commands: argparse._SubParsersAction[CommandParser]) -> None:
    store = commands.add_parser("store", help="manage the store (store copy)", description="Manage the store.",
                                allow_abbrev=False)
    actions = store.add_subparsers(title="commands", metavar="COMMAND", dest="store_command", required=True)
    copy = actions.add_parser(
        "copy", help="copy every row of one store into another (SQLite to PostgreSQL, or back)",
        description=STORE_COPY_DESCRIPTION, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="the store to copy: sqlite:PATH or postgresql://[user@]host[:port]/database")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="the store to fill: sqlite:PATH or postgresql://[user@]host[:port]/database")
    copy.add_argument("--into-non-empty", "--force", dest="into_non_empty", action="store_true",
                      help="copy into a store that already holds data (rows of the same key are replaced)")
    copy.add_argument("--upgrade-source", action="store_true",
                      help="upgrade a source written by an earlier trioscope to this version's schema first (that "
                           "trioscope can then no longer open it: back it up before)")
    copy.set_defaults(run=run_store_copy)


def run_store_copy(args: argparse.Namespace) -> int:
    """Copy one store into another, printing the counts."""
    from trioscope.store import (
        CopyCounts, CopyFailed, CopyRefused, ForeignDatabase, NewerSchema, Unavailable, copy_store, describe_database,
        sqlite_path,
    )

    for flag, value in (("--from", args.source), ("--to", args.target)):
        try:
            sqlite_path(value)
        except ValueError as exc:
            print(f"trioscope store copy: {flag}: {exc}", file=sys.stderr)
            return ExitCode.USAGE
    so_far = [CopyCounts()]
    try:
        with sigterm_raises():
            counts = copy_store(args.source, args.target, into_non_empty=args.into_non_empty,
                                upgrade_source=args.upgrade_source, progress=so_far.append)
    except (CopyRefused, CopyFailed, Unavailable, NewerSchema, ForeignDatabase) as exc:
        print(f"trioscope store copy: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``Terminated``)
        # Rows are written a batch per transaction: a stopped copy leaves a
        # part in the target, which then refuses a plain copy as "not empty".
        terminated = isinstance(exc, Terminated)
        print(f"trioscope store copy: {'received SIGTERM' if terminated else 'interrupted'}; the target may hold "
              f"part of the source (copied at least {_copied(so_far[-1])}): run the copy again with "
              "--into-non-empty to finish it (rows of the same key are replaced)", file=sys.stderr)
        return ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    print(f"copied {_copied(counts)} from {describe_database(args.source)} to {describe_database(args.target)}")
    return ExitCode.OK


def _copied(counts: CopyCounts) -> str:
    return (f"{counts.deployments} deployments, {counts.agents} agents, {counts.commands} commands, "
            f"{counts.audit} audit records, {counts.apps} app statuses, {counts.idempotency_keys} idempotency keys")


HEALTH_DESCRIPTION = """\
Ask a running server whether it is alive (GET /health) or ready for traffic
(--ready: GET /health/ready), print its answer, and exit 0 when it is, 1
when it is not or cannot be reached: for container HEALTHCHECKs, systemd and
scripts. https:// servers are verified against the system's authorities or
--ca-file.

Exit codes: 0 healthy (or ready), 1 not, or not reached, 2 bad arguments (a
--server that is no http:// or https:// URL, a --timeout out of range).
"""


def _add_health_parser(commands: argparse._SubParsersAction[CommandParser]) -> None:
    health = commands.add_parser(
        "health", help="check a running server's health or readiness", description=HEALTH_DESCRIPTION,
        allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # No defaults here: run_health takes them from the environment, to name where a bad value came from.
    health.add_argument("--server",
                        help=f"the server's base URL, http:// or https:// (env {SERVER_URL_ENV}; default "
                        "this machine at the server's own TRIOSCOPE_SERVER_PORT, https with TRIOSCOPE_SERVER_TLS_CERT, "
                        f"else {DEFAULT_SERVER_URL})")
    health.add_argument("--ca-file",
                        help="PEM certificates to trust for an https:// server instead of the system's (a private "
                        f"CA, or the server's own certificate) (env {CA_FILE_ENV})")
    health.add_argument("--ready", action="store_true", help="ask whether it is ready for traffic (/health/ready)")
    health.add_argument("--timeout", type=_health_timeout, default=10.0,
                        help=f"seconds to wait for the answer, more than 0 and at most {MAX_HEALTH_TIMEOUT:g} "
                        "(default 10)")
    health.set_defaults(run=run_health)


SERVER_URL_ENV = "TRIOSCOPE_SERVER_URL"
CA_FILE_ENV = "TRIOSCOPE_CA_FILE"
DEFAULT_SERVER_URL = "http://127.0.0.1:8080"

MAX_HEALTH_TIMEOUT = 300.0
"""Longer than any health check should wait (container HEALTHCHECKs default to 30 s)."""


def _health_timeout(text: str) -> float:
    """``health --timeout``: seconds, finite, more than 0 (httpx reads 0 as "do
    not wait" and fails oddly) and at most ``MAX_HEALTH_TIMEOUT``."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_HEALTH_TIMEOUT):
        raise argparse.ArgumentTypeError(
            f"{text} is out of range; give seconds more than 0 and at most {MAX_HEALTH_TIMEOUT:g}"
        )
    return seconds


def _own_server_url(environ: Mapping[str, str]) -> tuple[str, str]:
    """The URL of a server configured by this environment on this machine
    (``TRIOSCOPE_SERVER_PORT``, HTTPS with ``TRIOSCOPE_SERVER_TLS_CERT``): a
    container's HEALTHCHECK runs beside the server with its variables, and
    asked port 8080 of a server told to listen elsewhere. Else ``DEFAULT_SERVER_URL``."""
    port = environ.get("TRIOSCOPE_SERVER_PORT", "").strip()
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        port = ""
    tls = bool(environ.get("TRIOSCOPE_SERVER_TLS_CERT", "").strip())
    if not port and not tls:
        return DEFAULT_SERVER_URL, "default"
    return f"{'https' if tls else 'http'}://127.0.0.1:{port or 8080}", "the server's TRIOSCOPE_SERVER_PORT and _TLS_CERT"


def run_health(args: argparse.Namespace) -> int:
    """Print the server's health (or readiness) answer; 0 when it is 200."""
    import httpx

    from trioscope.wire import client_tls, server_url_problem, shown_url

    server, server_from = _flag_or_env(args.server, "--server", SERVER_URL_ENV)
    if server is None:
        server, server_from = _own_server_url(os.environ)
    problem = server_url_problem(server)
    if problem is not None:
        says = "is not an http:// or https:// URL" if problem.startswith("must be an http") else problem
        print(f"trioscope health: --server: {json.dumps(shown_url(server), ensure_ascii=False)} from {server_from} {says}",
              file=sys.stderr)
        return ExitCode.USAGE
    ca_file, ca_file_from = _flag_or_env(args.ca_file, "--ca-file", CA_FILE_ENV)
    try:
        tls = client_tls(ca_file)
    except (OSError, ssl.SSLError) as exc:
        named_by = "" if args.ca_file is not None else f" (from {ca_file_from})"
        print(f"trioscope health: --ca-file: cannot use {ca_file}{named_by}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    url = server.rstrip("/") + ("/health/ready" if args.ready else "/health")
    try:
        answer = httpx.get(url, verify=tls, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"trioscope health: {shown_url(url)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    ours = answer.headers.get("content-type", "").startswith("application/json")
    if ours:
        print(answer.text)  # a trioscope server's answer: its status and reasons
    if answer.status_code == 200 and ours:
        return ExitCode.OK
    # Not a page of another server printed whole (14 lines of HTML), nor an empty line for an empty 404.
    other = "" if ours else f" (not a trioscope server's answer: {answer.headers.get('content-type') or 'no content type'}; is --server right?)"
    phrase = answer.reason_phrase or _phrase(answer.status_code)  # (Hypercorn sends none)
    print(f"trioscope health: {shown_url(url)}: {answer.status_code} {phrase}{other}", file=sys.stderr)
    return ExitCode.FAILED


def _phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (empty for one that has none)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _flag_or_env(value: str | None, flag: str, env: str) -> tuple[str | None, str]:
    """An option of a command outside the configuration (``health``): the flag's
    value, else the environment variable's (None: neither is set), and where it
    came from as configuration problems say it (``flag --server``, ``env NAME``)."""
    if value is not None:
        return value, f"flag {flag}"
    return os.environ.get(env), f"env {env}"


def _data_dir_settings(args: argparse.Namespace, database: str | None = None) -> Settings | None:
    """The settings a command that reads the server's data directory needs: its
    ``--config`` and ``--data-dir`` (and ``--database``, when it reads the
    store), with the file and environment as for serve (None after printing
    the problems)."""
    flags: dict[str, FlagValue] = {}
    if args.config is not None:
        flags["config"] = FlagValue(args.config, "--config")
    if args.data_dir is not None:
        flags["storage.data_dir"] = FlagValue(args.data_dir, "--data-dir")
    if database is not None:
        flags["store.database"] = FlagValue(database, "--database")
    return _settings_or_report(flags)


def _with_default_command(argv: list[str]) -> list[str]:
    # The seed's server is started as `app-server -port 9090`: flags with no
    # command mean `serve`.
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return ["serve", *argv]
    return argv or ["serve"]


def _settings_or_report(source: Any) -> Settings | None:
    """The settings from ``source`` (parsed flags) and the environment, or None
    after printing one line per configuration problem."""
    try:
        return load_settings(source, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"trioscope: configuration error: {problem}", file=sys.stderr)
        return None


def run_serve(args: argparse.Namespace) -> int:
    settings = _settings_or_report(args)
    if settings is None:
        return ExitCode.USAGE
    from trioscope.workers import workers_refusal

    # Checked before --print-config too: it says whether serve would start.
    try:
        chosen = allocator.plan_here(settings.server.allocator)
        refusal = workers_refusal(settings)
    except allocator.AllocatorUnavailable as exc:
        refusal = str(exc)
    if refusal is not None:
        print(f"trioscope: configuration error: {refusal}", file=sys.stderr)
        return ExitCode.USAGE
    if args.print_config:
        print(format_effective(settings))
        return ExitCode.OK
    configure_logging(settings.log.level, settings.log.format)
    _use_allocator(chosen, can_reexec=args.own_process)
    import trio

    from trioscope.server import serve, tune_interpreter
    from trioscope.workers import run_workers

    if settings.server.workers > 1:
        return int(trio.run(run_workers, settings, sys.stdout))
    tune_interpreter()
    return int(trio.run(serve, settings, sys.stdout))


def _use_allocator(chosen: allocator.Plan, can_reexec: bool) -> None:
    """Re-execute this process with the allocator ``server.allocator`` asks
    (``trioscope.allocator``: ``chosen``) if it does not run it yet, or log why not and go on."""
    reason = chosen.reason
    if chosen.reexec_env is not None:
        if can_reexec:
            allocator.reexec(chosen.reexec_env)  # returns only if that failed (logged)
        else:  # serve() called inside another program (tests): its process is not ours to replace
            reason += "; not re-executed: called from another program"
    running = chosen.running
    # The banner says it once the server started (a failed start stays one line).
    log.debug("allocator: %s%s (%s)", running.allocator.value,
             f" from {running.library}" if running.library else "", reason,
             extra={"event": "allocator", "allocator": running.allocator.value})


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that an argument no command knows is
    refused by the command it was given to, with that command's usage and the
    closest option it has (argparse refuses it with the top level's usage,
    which names no option of ``serve``)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _command_parser(parser, args)
        options = list(command._option_string_actions)  # argparse has no public list of them
        close = difflib.get_close_matches(unknown[0].split("=", 1)[0], options, n=1)
        hint = f" (did you mean {close[0]}?)" if close and unknown[0].startswith("-") else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` chose."""
    while True:
        commands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, commands.dest, None) if commands is not None else None
        if commands is None or chosen not in commands.choices:
            return parser
        parser = commands.choices[chosen]


def main(argv: Sequence[str] | None = None) -> None:
    try:
        args = parse_arguments(build_parser(), _with_default_command(list(sys.argv[1:] if argv is None else argv)))
        # Only the process's own command line can be re-executed (with another allocator).
        args.own_process = argv is None
        code = int(args.run(args))
    except BrokenPipeError:  # e.g. `trioscope serve --print-config | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.OK
    except KeyboardInterrupt:  # Ctrl-C where no command handles it, e.g. while `serve` imports the server
        print("trioscope: interrupted", file=sys.stderr)
        code = ExitCode.INTERRUPTED
    sys.exit(code)

