"""The key table against the Settings records, the example file and the package exports."""

import pathlib

import attrs
import yaml

import trioscope.config
from trioscope.config import KEYS, ConfigFile, Settings, format_duration, resolve_settings

EXAMPLE = pathlib.Path(__file__).parents[2] / "config" / "trioscope.example.yaml"


def test_keys_match_settings_fields():
    sections = {key.section for key in KEYS}
    assert sections < {field.name for field in attrs.fields(Settings)}
    from_records = {
        f"{section}.{field.name}"
        for section in sections
        for field in attrs.fields(type(getattr(Settings.defaults(), section)))
    }
    assert from_records == {key.name for key in KEYS}
    assert len({key.name for key in KEYS}) == len(KEYS), "a key is declared twice"


def test_defaults_are_valid_values_of_their_kinds():
    for key in KEYS:
        text = key.kind.format_compact(key.default)
        assert key.kind.parse(text) == key.default, key.name


def test_names_flags_and_env_vars_are_unique():
    names = [key.name for key in KEYS]
    flags = [flag for key in KEYS for flag in key.flags]
    env = [name for key in KEYS for name in key.env]
    assert len(set(names)) == len(names)
    assert len(set(flags)) == len(flags)
    assert len(set(env)) == len(env)
    for key in KEYS:
        assert key.env[0] == "TRIOSCOPE_" + key.name.replace(".", "_").upper()


def test_defaults_have_expected_values():
    defaults = Settings.defaults()
    assert defaults.server.host == "0.0.0.0"
    assert defaults.server.backlog == 2048
    assert format_duration(defaults.server.shutdown_timeout) == "10s"
    assert format_duration(defaults.agents.heartbeat_timeout) == "2m0s"
    assert (defaults.log.level, defaults.log.format) == ("info", "human")
    assert all(defaults.origin(key.name) == "default" for key in KEYS)


def test_example_file_yields_exactly_the_defaults():
    settings = resolve_settings({}, {}, ConfigFile(path=str(EXAMPLE), text=EXAMPLE.read_text()))
    assert settings == Settings.defaults()
    assert all(settings.origin(key.name).startswith(f"file {EXAMPLE}:") for key in KEYS)


def test_example_file_documents_every_key():
    text = EXAMPLE.read_text()
    document = yaml.safe_load(text)
    lines = text.splitlines()
    for key in KEYS:
        assert key.leaf in document[key.section], key.name
        # The comment block right above the key names its env vars and flags.
        section = lines.index(f"{key.section}:")  # a leaf (url) may be in several sections
        index = next(i for i, line in enumerate(lines) if i > section and line.strip().startswith(f"{key.leaf}:"))
        comment = []
        for line in reversed(lines[:index]):
            if not line.strip().startswith("#"):
                break
            comment.append(line)
        block = " ".join(comment)
        assert block, key.name
        assert f"Default {key.kind.format_compact(key.default)}" in block, key.name
        limits = key.kind.limits()
        if limits is not None and ".." in limits:
            assert limits in block, key.name
        for name in (*key.env, *key.flags):
            assert name in block, (key.name, name)


def test_exports():
    expected = {
        "ALERT_RULES",
        "SERVER_EXAMPLE",
        "example_file",
        "AgentsSettings",
        "AlertsSettings",
        "AuthSettings",
        "CommandsSettings",
        "LimitsSettings",
        "TenantsSettings",
        "BusSettings",
        "ConfigError",
        "ConfigFile",
        "FlagValue",
        "KEYS",
        "Key",
        "LogSettings",
        "Problem",
        "ServerSettings",
        "Settings",
        "Source",
        "SourceKind",
        "StorageSettings",
        "StoreSettings",
        "WebSocketSettings",
        "add_arguments",
        "format_duration",
        "format_duration_compact",
        "format_effective",
        "format_size",
        "hide_passwords",
        "load_settings",
        "mask_passwords",
        "parse_duration",
        "resolve_settings",
    }
    public = {name for name in vars(trioscope.config) if not name.startswith("_")}
    assert public == expected
