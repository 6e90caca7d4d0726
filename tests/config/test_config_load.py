"""The CLI surface: argparse flags, load_settings reading real files, the effective table."""

import argparse
import re
import sys

import pytest

from trioscope.config import (
    KEYS,
    ConfigError,
    FlagValue,
    Settings,
    add_arguments,
    format_effective,
    load_settings,
)


def parser():
    parser = argparse.ArgumentParser(prog="trioscope serve", allow_abbrev=False)
    parser.add_argument("--print-config", action="store_true")
    add_arguments(parser)
    return parser


@pytest.mark.parametrize("spelling", ["--port", "-port"])
def test_both_port_spellings_work_and_are_recorded(spelling):
    args = parser().parse_args([spelling, "9090"])
    settings = load_settings(args, {})
    assert settings.server.port == 9090
    assert settings.origin("server.port") == f"flag {spelling}"


def test_single_dash_go_style_flags_and_equals_form():
    args = parser().parse_args(["-max-data-age", "2h", "-host=127.0.0.1", "--stale-node-threshold=10m"])
    settings = load_settings(args, {})
    assert settings.storage.max_data_age == 7200.0
    assert settings.server.host == "127.0.0.1"
    assert settings.agents.stale_threshold == 600.0
    assert settings.origin("storage.max_data_age") == "flag -max-data-age"


def test_untyped_flags_are_absent_and_other_options_are_ignored():
    args = parser().parse_args(["--print-config"])
    assert args.print_config is True
    assert not [name for name in vars(args) if name.startswith("cfg__")]
    assert load_settings(args, {}) == Settings.defaults()


def test_dest_names_are_prefixed():
    args = parser().parse_args(["--port", "1", "--config", "x.yaml", "--log-level", "debug"])
    assert args.cfg__server__port == FlagValue("1", "--port")
    assert args.cfg__config == FlagValue("x.yaml", "--config")
    assert args.cfg__log__level == FlagValue("debug", "--log-level")


# How argparse lists an option's spellings in the help: from Python 3.13 the
# metavar is written once, after the last (CPython gh-101599), before it after
# each. Both spellings and the metavar are there either way.
MAX_DATA_AGE_FLAGS = (
    "--max-data-age, -max-data-age DURATION"
    if sys.version_info >= (3, 13)
    else "--max-data-age DURATION, -max-data-age DURATION"
)


def test_every_key_has_its_flags_and_help_names_default_limits_and_env():
    help_text = " ".join(parser().format_help().split())
    for key in KEYS:
        for flag in key.flags:
            assert f"{flag} {key.kind.metavar}" in help_text
        for name in key.env:
            assert name in help_text
    assert (
        f"{MAX_DATA_AGE_FLAGS} keep reports and metric history this long "
        "(default 1h; 1m..720h; env TRIOSCOPE_STORAGE_MAX_DATA_AGE, MAX_DATA_AGE)"
    ) in help_text
    assert "--config PATH read settings from this YAML file (env TRIOSCOPE_CONFIG)" in help_text


def test_bad_flag_values_reach_load_settings_not_argparse():
    args = parser().parse_args(["--port", "70000", "--log-level", "loud"])
    with pytest.raises(ConfigError) as caught:
        load_settings(args, {})
    assert len(caught.value.problems) == 2


def test_config_flag_reads_the_file(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("server:\n  port: 7000\n")
    settings = load_settings(parser().parse_args(["--config", str(path)]), {})
    assert settings.server.port == 7000
    assert settings.origin("server.port") == f"file {path}:2"
    assert settings.config_file == str(path)


def test_config_flag_beats_config_env(tmp_path):
    by_flag = tmp_path / "flag.yaml"
    by_flag.write_text("server:\n  port: 7001\n")
    by_env = tmp_path / "env.yaml"
    by_env.write_text("server:\n  port: 7002\n")
    environ = {"TRIOSCOPE_CONFIG": str(by_env)}
    assert load_settings({}, environ).server.port == 7002
    assert load_settings({"config": str(by_flag)}, environ).server.port == 7001


def test_env_overrides_file_read_from_disk(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("server:\n  port: 7000\n  host: 10.0.0.1\n")
    settings = load_settings({"config": str(path)}, {"APP_PORT": "7003"})
    assert settings.server.port == 7003
    assert settings.server.host == "10.0.0.1"


def test_missing_file_is_one_problem(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(parser().parse_args(["--config", str(missing)]), {})
    assert str(caught.value) == f"cannot read config file {missing} (named by flag --config): No such file or directory"


def test_directory_and_non_utf8_files_are_problems(tmp_path):
    with pytest.raises(ConfigError, match="named by env TRIOSCOPE_CONFIG"):
        load_settings({}, {"TRIOSCOPE_CONFIG": str(tmp_path)})
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"server:\n  host: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings({"config": str(binary)}, {})


def test_format_effective_shows_values_and_sources(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("storage:\n  max_data_age: 90m\n")
    settings = load_settings(
        parser().parse_args(["--config", str(path), "-port", "9090"]),
        {"TRIOSCOPE_LOG_FORMAT": "json"},
    )
    lines = format_effective(settings).splitlines()
    assert len(lines) == len(KEYS)
    # Columns are separated by at least two spaces; values may contain single ones.
    rows = {line.split()[0]: re.split(r"\s{2,}", line.rstrip())[1:] for line in lines}
    assert rows["server.port"] == ["9090", "flag -port"]
    assert rows["storage.max_data_age"] == ["1h30m0s", f"file {path}:2"]
    assert rows["log.format"] == ["json", "env TRIOSCOPE_LOG_FORMAT"]
    assert rows["websocket.ping_interval"] == ["30s", "default"]
    assert rows["server.shutdown_timeout"] == ["10s", "default"]
    # Columns line up: every source starts at the same offset.
    assert len({line.index(rows[line.split()[0]][1]) for line in lines}) == 1
