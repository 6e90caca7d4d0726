"""The shipped alerting rules (config/prometheus/alerts.yml), checked and
unit-tested with Debian's promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus"


def test_rules_are_valid(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout


def test_rules_fire_as_their_unit_tests_say(promtool: str) -> None:
    done = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
