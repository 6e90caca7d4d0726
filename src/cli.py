"""The ``trioscope`` command line: ``serve`` (the default) and ``version``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import trio

from trioscope.config import ConfigError, add_arguments, format_effective, load_settings
from trioscope.log_output import configure_logging
from trioscope.server import ExitCode, serve, tune_garbage_collector


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
Exit codes: 0 clean stop, 1 failure (cannot listen, internal failure, shutdown
overran), 2 bad configuration.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioscope", description=DESCRIPTION, allow_abbrev=False)
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

    version_parser = commands.add_parser("version", help="print the version and exit")
    version_parser.set_defaults(run=lambda _args: print(f"trioscope {_version()}") or ExitCode.OK)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    # The seed's server is started as `app-server -port 9090`: flags with no
    # command mean `serve`.
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return ["serve", *argv]
    return argv or ["serve"]


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"trioscope: configuration error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    if args.print_config:
        print(format_effective(settings))
        return ExitCode.OK
    configure_logging(settings.log.level, settings.log.format)
    tune_garbage_collector()
    return int(trio.run(serve, settings, sys.stdout))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(_with_default_command(list(sys.argv[1:] if argv is None else argv)))
    try:
        code = int(args.run(args))
    except BrokenPipeError:  # e.g. `trioscope serve --print-config | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.OK
    sys.exit(code)
