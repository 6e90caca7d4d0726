"""YAML file content: types, unknown keys, syntax errors, all with file:line."""

import attrs
import pytest

from trioscope.config import KEYS, ConfigError, ConfigFile, Settings, resolve_settings

FILE = "/etc/t.yaml"
SERVER_KEYS = ", ".join(key.leaf for key in KEYS if key.section == "server")

SEED = """\
server:
  host: 0.0.0.0
  port: 8080
storage:
  max_data_age: 1h
  cleanup_interval: 5m
agents:
  stale_threshold: 5m
  heartbeat_timeout: 2m
websocket:
  buffer_size: 256
  ping_interval: 30s
"""


def load(text):
    return resolve_settings({}, {}, ConfigFile(path=FILE, text=text))


def problems(text):
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [str(problem) for problem in caught.value.problems]


def test_seed_file_loads():
    settings = load(SEED)
    defaults = Settings.defaults()
    # Every seed value is our default but the per-client buffer, which we keep
    # smaller (16) so that a stalled client is noticed within seconds.
    assert settings == attrs.evolve(defaults, websocket=attrs.evolve(defaults.websocket, buffer_size=256))
    assert settings.origin("websocket.ping_interval") == f"file {FILE}:12"
    assert settings.origin("log.level") == "default"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "server:\n  # port: 1\n"])
def test_empty_file_or_section_sets_nothing(text):
    assert load(text) == Settings.defaults()


def test_unknown_key_suggests_the_closest():
    text = "server:\n  host: a\n\n  port: 1\nserve:\n  prot: 9\n"
    assert problems(text) == [f"serve.prot: unknown key in {FILE}:6 (did you mean server.port?)"]


def test_key_without_its_section_is_unknown_with_a_suggestion():
    assert problems("port: 9090\n") == [f"port: unknown key in {FILE}:1 (did you mean server.port?)"]


def test_unknown_key_with_nothing_close_has_no_suggestion():
    assert problems("server:\n  zzzzqqq: 1\n") == [f"server.zzzzqqq: unknown key in {FILE}:2"]


def test_syntax_error_names_the_line():
    text = "server:\n  port: 8080\n  host: ::\n"
    (line,) = problems(text)
    assert line.startswith(f"{FILE}:3: invalid YAML: ")
    assert "mapping values are not allowed here" in line


def test_bad_indentation_is_a_syntax_error_with_line():
    text = "server:\n  port: 8080\n host: x\n"
    (line,) = problems(text)
    assert line.startswith(f"{FILE}:3: invalid YAML: ")


def test_top_level_must_be_sections():
    assert problems("- server\n- port\n") == [
        f"{FILE}:1: expected sections (server, storage, store, bus, metrics, auth, agents, commands, tenants, limits, websocket, log, alerts) at the top level"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('server:\n  port: "abc"\n', 'server.port: "abc" from file {f}:2 is not a whole number; expected a whole number in 0..65535'),
        ("server:\n  port: true\n", "server.port: true from file {f}:2 is a boolean; expected a whole number in 0..65535"),
        ("server:\n  port: 80.5\n", "server.port: 80.5 from file {f}:2 is a decimal number; expected a whole number in 0..65535"),
        ("server:\n  port:\n", "server.port: null from file {f}:2 has no value; expected a whole number in 0..65535"),
        ("server:\n  port:\n    a: 1\n", "server.port: {{...}} from file {f}:3 is a mapping; expected a whole number in 0..65535"),
        ("server:\n  port: [1, 2]\n", "server.port: [1, 2] from file {f}:2 is a list; expected a whole number in 0..65535"),
        ("server:\n  host: 8080\n", "server.host: 8080 from file {f}:2 is a whole number; expected a host name or IP address (quote it in YAML)"),
        ("storage:\n  max_data_age: 3600\n", "storage.max_data_age: 3600 from file {f}:2 has no unit; did you mean 3600s?"),
        ("storage:\n  max_data_age: yes\n", "storage.max_data_age: yes from file {f}:2 is a boolean; expected a duration in 1m..720h, like 90s, 5m or 1h"),
        ("log:\n  level: 3\n", "log.level: 3 from file {f}:2 is a whole number; expected one of debug, info, warning, error"),
        ("server: 8080\n", "server: 8080 from file {f}:1 is not a section; expected its keys indented below it ({server_keys})"),
        ("server:\n  - port\n", "server: [...] from file {f}:2 is not a section; expected its keys indented below it ({server_keys})"),
    ],
)
def test_wrong_yaml_types(text, expected):
    assert problems(text) == [expected.format(f=FILE, server_keys=SERVER_KEYS)]


def test_quoted_number_is_accepted_for_integers():
    # Documented choice: quoted text goes through the same parser as env and flags.
    assert load('server:\n  port: "9090"\n').server.port == 9090


def test_keys_and_sections_set_twice_are_problems():
    text = "server:\n  port: 1\n  port: 2\nlog:\n  level: info\nlog:\n  format: json\n"
    assert problems(text) == [
        f"server.port: key set again in {FILE}:3; first set on line 2",
        f"log: section set again in {FILE}:6; first set on line 4",
    ]


def test_unsafe_tag_is_a_problem_for_that_key_only():
    text = "server:\n  port: !!python/name:os.system x\n  backlog: 0\n"
    lines = problems(text)
    assert len(lines) == 2
    assert lines[0].startswith(f"server.port: x from file {FILE}:2 cannot be read: ")
    assert lines[1] == f"server.backlog: 0 from file {FILE}:3 is out of range; allowed 1..65535"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('server:\n  host: ""\n', 'server.host: "" from file {f}:2 is empty; expected a host name or IP address'),
        ("server:\n  host: ''\n", 'server.host: "" from file {f}:2 is empty; expected a host name or IP address'),
        ("server:\n  host:\n", "server.host: null from file {f}:2 has no value; expected a host name or IP address "
         "(quote it in YAML)"),
        ("server:\n  host: ~\n", "server.host: ~ from file {f}:2 has no value; expected a host name or IP address "
         "(quote it in YAML)"),
        ('log:\n  level: ""\n', 'log.level: "" from file {f}:2 is not allowed; use one of debug, info, warning, error'),
    ],
)
def test_an_empty_string_is_shown_as_written_not_as_null(text, expected):
    assert problems(text) == [expected.format(f=FILE)]


@pytest.mark.parametrize("depth", [40, 1000, 100_000])
def test_a_value_nested_too_deep_is_one_problem_naming_the_file_and_line(depth):
    text = "server:\n  backlog: 0\n  port: " + "[" * depth + "]" * depth + "\n"
    assert problems(text) == [f"{FILE}:3: invalid YAML: nested too deep (more than 32 levels)"]


def test_block_mappings_nested_too_deep_are_one_problem_too():
    text = "server:\n" + "".join("  " * level + f"k{level}:\n" for level in range(1, 200))
    assert problems(text) == [f"{FILE}:32: invalid YAML: nested too deep (more than 32 levels)"]


def test_nesting_up_to_the_limit_is_read_and_checked_as_usual():
    # The document, the section and 30 lists: 32 levels.
    text = "server:\n  port: " + "[" * 30 + "]" * 30 + "\n"
    assert problems(text) == [f"server.port: [[...]] from file {FILE}:2 is a list; expected a whole number in 0..65535"]


def test_a_file_that_is_no_configuration_is_not_echoed():
    """``--config /etc/shadow`` printed each of its lines as an unknown key, password hashes included."""
    text = "root:$6$salt$hash:20593:0:99999:7:::\npostgres:!:20593::::::\n"
    assert problems(text) == [f"{FILE}:{line}: not a key of trioscope's configuration (is it a trioscope "
                              "configuration file?)" for line in (1, 2)]
