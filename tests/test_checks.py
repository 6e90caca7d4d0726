"""Static checks, run with the suite (so by ``.ci/run``): ruff and mypy over every package's
source directory (src/, probe/: pyproject's package-dir).

Their configuration is in pyproject.toml; README "Checks" says why these rules. To run only
these: ``.venv/bin/python -m pytest -q tests/test_checks.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES: dict[str, str] = {
    name: directory
    for name, directory in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].items()
    if any((ROOT / directory).rglob("*.py"))  # not config/, installed as trioscope.examples: files only
}
"""Import name -> source directory (``trioscope`` -> src, ``trioscope_probe`` -> probe, and any added later)."""
CHECKED = tuple(PACKAGES.values())


def _run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          check=False)


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _import_tree() -> Path:
    """A directory holding the packages under their import names, as links to their
    source directories (pyproject maps ``trioscope`` to src/, ``trioscope_probe`` to
    probe/, which mypy cannot follow from the source tree, nor through setuptools'
    editable-install finder). Kept in .mypy_cache so mypy's cache stays valid."""
    tree = ROOT / ".mypy_cache" / "packages"
    tree.mkdir(parents=True, exist_ok=True)
    for name, directory in PACKAGES.items():
        link = tree / name
        if not (link.is_symlink() and link.resolve() == (ROOT / directory).resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(ROOT / directory, target_is_directory=True)
    return tree


def test_mypy_finds_nothing():
    tree = _import_tree()
    modules = [arg for name in PACKAGES for arg in ("-p", name)]
    result = _run("mypy", "--config-file", ROOT / "pyproject.toml", "--cache-dir", ROOT / ".mypy_cache",
                  *modules, cwd=tree)
    report = result.stdout + result.stderr
    for name, directory in sorted(PACKAGES.items(), key=lambda item: -len(item[0])):
        report = re.sub(rf"(?m)^{name}/", f"{directory}/", report)  # paths as in the repository
    assert result.returncode == 0, report


SUPPRESSION = re.compile(r"#\s*(type:\s*ignore|noqa)\b(\S*)(.*)$")


def test_every_suppression_names_its_code_and_says_why():
    unexplained = []
    for directory in CHECKED:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = SUPPRESSION.search(line)
                if match is None:
                    continue
                code, reason = match.group(2), match.group(3).strip(" -#:,")
                if match.group(1) == "noqa":
                    code, reason = reason.partition(" ")[0], reason.partition(" ")[2].strip(" -#")
                if not code or len(reason) < 8:
                    unexplained.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not unexplained, "a suppression without its code or a reason:\n" + "\n".join(unexplained)
