"""The project's promises about itself: set-up commands and packaging."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    commands = _readme_commands()
    first, second = commands[0], commands[1]
    assert readme.index(first) < readme.index(second) < readme.index("##")
    assert "trioscope serve" in first
    assert "pytest" in second
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert second in ci_lines


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, directory in config["package-dir"].items():
        for init in (ROOT / directory).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / directory)
            found.add(".".join([name, *relative.parts]))
    # A directory of files only (config/, installed as trioscope.examples) is
    # listed for its package data, with no __init__.py to find it by.
    data_only = {name for name, directory in config["package-dir"].items() if not list((ROOT / directory).rglob("*.py"))}
    assert data_only <= set(config["package-data"])
    assert found | data_only == listed
