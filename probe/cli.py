"""The ``trioscope-probe`` command line.

The collectors, transport and control executor are not built yet; until they
are, the command explains itself instead of pretending to report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="trioscope-probe",
        description="trioscope host probe: reports this host's processes, containers and "
        "connections to a trioscope server and executes container controls. "
        "Not implemented yet in this version.",
        allow_abbrev=False,
    )


def main(argv: Sequence[str] | None = None) -> None:
    build_parser().parse_args(argv)
    print("trioscope-probe: the probe is not implemented in this version", file=sys.stderr)
    sys.exit(2)
