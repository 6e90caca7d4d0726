"""The example files (``config/``: the server's and the probe's settings, the
alerting rules) are in the wheel, and what names them names where an
installed copy has them: a wheel had none, while ``--help`` and the log said
``config/prometheus/alerts.yml``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from trioscope.config import ALERT_RULES, SERVER_EXAMPLE, example_file
from trioscope_probe import _config as probe_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.relative_to(ROOT / "config").as_posix() for p in (ROOT / "config").rglob("*.y*ml"))


def test_in_a_source_tree_each_is_named_where_config_has_it() -> None:
    assert example_file(ALERT_RULES) == str(ROOT / "config" / "prometheus" / "alerts.yml")
    assert example_file(SERVER_EXAMPLE) == str(ROOT / "config" / "trioscope.example.yaml")
    assert probe_config.example_file() == str(ROOT / "config" / "probe.example.yaml")


def test_the_wheel_holds_them_and_an_installed_copy_names_its_own(tmp_path: Path) -> None:
    work = tmp_path / "with-a-hyphen"  # as site-packages has
    source = work / "source"  # a clean copy: an in-tree build/ may hold files of older builds
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    for name in ("src", "probe", "config"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                            str(work / "wheel"), str(source)], capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "wheel").glob("trioscope-*.whl")
    installed = work / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(n.removeprefix("trioscope/examples/") for n in archive.namelist()
                      if n.startswith("trioscope/examples/")) == EXAMPLES
        archive.extractall(installed)  # what installing it lays out
    examples = installed / "trioscope" / "examples"
    for name in EXAMPLES:
        assert (examples / name).read_bytes() == (ROOT / "config" / name).read_bytes()

    def run(*argv: str) -> str:
        # The installed copy, ahead of this checkout (the editable finder comes after the path).
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60, cwd=work,
                              env={"PYTHONPATH": str(installed)})
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("-c", "from trioscope.config import ALERT_RULES, example_file; print(example_file(ALERT_RULES))") \
        == f"{examples / 'prometheus' / 'alerts.yml'}\n"
    # Each --help names its example whole, on one line (a path cut at a hyphen cannot be copied).
    assert f"  {examples / 'trioscope.example.yaml'}\n" in run("-m", "trioscope", "serve", "--help")
    assert f"  {examples / 'probe.example.yaml'}\n" in run("-m", "trioscope_probe", "--help")
