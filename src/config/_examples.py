"""Where this installation keeps the example files: the server's and the
probe's settings, every key documented, and the Prometheus alerting rules.

A source tree has them in ``config/``; a wheel installs that directory as
``trioscope/examples`` (package data, pyproject.toml). Help texts and
messages name the file where it is on this machine: they said
``config/prometheus/alerts.yml``, which only the source distribution had.
"""

from __future__ import annotations

from pathlib import Path

SERVER_EXAMPLE = "trioscope.example.yaml"
"""``trioscope serve``'s settings, every key documented with its default."""
ALERT_RULES = "prometheus/alerts.yml"
"""The alerting rules, for Prometheus or vmalert, over every replica."""


def example_file(name: str) -> str:
    """Where ``name`` (a path under ``config/``, e.g. ``ALERT_RULES``) is on
    this machine: the copy installed with trioscope, or the source tree's;
    failing both (a copy installed without them), where to get it."""
    package = Path(__file__).resolve().parent.parent
    for directory in (package / "examples", package.parent / "config"):
        if (directory / name).is_file():
            return str(directory / name)
    return f"config/{name} in trioscope's source distribution"
