"""The pure core: layers, precedence, aliases and value checks, driven with plain values."""

import pytest

from trioscope.config import (
    ConfigError,
    ConfigFile,
    FlagValue,
    Settings,
    Source,
    SourceKind,
    resolve_settings,
)

FILE = "/etc/t.yaml"


def config(text):
    return ConfigFile(path=FILE, text=text)


def problems(flags=None, environ=None, text=None):
    with pytest.raises(ConfigError) as caught:
        resolve_settings(flags or {}, environ or {}, None if text is None else config(text))
    return [str(problem) for problem in caught.value.problems]


def test_nothing_set_gives_defaults_from_default():
    settings = resolve_settings({}, {})
    assert settings == Settings.defaults()
    assert settings.server.port == 8080
    assert settings.storage.max_data_age == 3600.0
    assert settings.origin("server.port") == "default"
    assert settings.config_file is None


def test_file_overrides_defaults_with_line_as_origin():
    text = "server:\n  host: 127.0.0.1\n  port: 7000\nstorage:\n  max_data_age: 2h\n"
    settings = resolve_settings({}, {}, config(text))
    assert settings.server.port == 7000
    assert settings.server.host == "127.0.0.1"
    assert settings.storage.max_data_age == 7200.0
    assert settings.origin("server.port") == f"file {FILE}:3"
    assert settings.origin("storage.max_data_age") == f"file {FILE}:5"
    assert settings.origin("server.backlog") == "default"
    assert settings.config_file == FILE


def test_env_overrides_file_and_flag_overrides_env():
    text = "server:\n  port: 7000\n  backlog: 100\nlog:\n  level: warning\n"
    environ = {"TRIOSCOPE_SERVER_PORT": "7001", "TRIOSCOPE_SERVER_BACKLOG": "200", "MAX_DATA_AGE": "3h"}
    flags = {"server.port": FlagValue("7002", "-port"), "storage.max_data_age": "4h"}
    settings = resolve_settings(flags, environ, config(text))
    assert (settings.server.port, settings.origin("server.port")) == (7002, "flag -port")
    assert (settings.server.backlog, settings.origin("server.backlog")) == (200, "env TRIOSCOPE_SERVER_BACKLOG")
    assert (settings.storage.max_data_age, settings.origin("storage.max_data_age")) == (
        14400.0,
        "flag --max-data-age",
    )
    assert (settings.log.level, settings.origin("log.level")) == ("warning", f"file {FILE}:5")
    assert (settings.log.format, settings.origin("log.format")) == ("human", "default")


def test_origin_is_structured_too():
    settings = resolve_settings({}, {"APP_PORT": "9000"})
    assert settings.source("server.port") == Source(kind=SourceKind.ENV, name="APP_PORT")
    with pytest.raises(KeyError, match="server.prot"):
        settings.origin("server.prot")


@pytest.mark.parametrize(
    ("key", "primary", "alias"),
    [
        ("server.port", "TRIOSCOPE_SERVER_PORT", "APP_PORT"),
        ("server.host", "TRIOSCOPE_SERVER_HOST", "APP_HOST"),
        ("storage.max_data_age", "TRIOSCOPE_STORAGE_MAX_DATA_AGE", "MAX_DATA_AGE"),
        # The command service seed's Kubernetes deployment (§10.1) passes the database so.
        ("store.database", "TRIOSCOPE_DATABASE", "DATABASE_URL"),
    ],
)
def test_trioscope_env_name_beats_alias(key, primary, alias):
    values = {"server.port": ("9001", "9002"), "server.host": ("h1", "h2"), "storage.max_data_age": ("2h", "3h"),
              "store.database": ("postgresql://a@db1/x", "postgresql://b@db2/y")}
    primary_text, alias_text = values[key]
    alone = resolve_settings({}, {alias: alias_text})
    assert alone.origin(key) == f"env {alias}"
    both = resolve_settings({}, {alias: alias_text, primary: primary_text})
    assert both.origin(key) == f"env {primary}"
    assert both.value(key) == resolve_settings({}, {primary: primary_text}).value(key)
    assert both.value(key) != alone.value(key)


def test_shadowed_alias_is_not_even_read():
    settings = resolve_settings({}, {"TRIOSCOPE_SERVER_PORT": "9001", "APP_PORT": "not a port"})
    assert settings.server.port == 9001


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_environment_value_is_refused_as_an_empty_flag_is(text):
    assert problems(environ={"TRIOSCOPE_SERVER_HOST": text}) == [
        'server.host: "" from env TRIOSCOPE_SERVER_HOST is empty; expected a host name or IP address'
    ]
    assert problems(flags={"server.host": text}) == [
        'server.host: "" from flag --host is empty; expected a host name or IP address'
    ]


def test_an_empty_environment_value_is_set_so_its_alias_is_not_read():
    assert problems(environ={"TRIOSCOPE_SERVER_PORT": "", "APP_PORT": "9002"}) == [
        'server.port: "" from env TRIOSCOPE_SERVER_PORT is not a whole number; expected a whole number in 0..65535'
    ]


@pytest.mark.parametrize("text", ["", " "])
def test_an_empty_environment_value_clears_a_list_from_the_file(text):
    settings = resolve_settings({}, {"TRIOSCOPE_SERVER_CORS_ORIGINS": text}, config('server:\n  cors_origins: "*"\n'))
    assert settings.server.cors_origins == ()
    assert settings.origin("server.cors_origins") == "env TRIOSCOPE_SERVER_CORS_ORIGINS"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TRIOSCOPE_AUTH_PROTECT_READ", "TRIOSCOPE_AUTH_PROTECT_READ: unknown environment variable "
         "(did you mean TRIOSCOPE_AUTH_PROTECT_READS?)"),
        ("TRIOSCOPE_SERVE_PORT", "TRIOSCOPE_SERVE_PORT: unknown environment variable "
         "(did you mean TRIOSCOPE_SERVER_PORT?)"),
        ("TRIOSCOPE_PORT", "TRIOSCOPE_PORT: unknown environment variable (did you mean TRIOSCOPE_SERVER_PORT?)"),
        ("TRIOSCOPE_CONFG", "TRIOSCOPE_CONFG: unknown environment variable (did you mean TRIOSCOPE_CONFIG?)"),
        ("TRIOSCOPE_XYZZY", "TRIOSCOPE_XYZZY: unknown environment variable; no setting has this name"),
    ],
)
def test_an_unknown_trioscope_environment_variable_is_a_problem_with_a_suggestion(name, expected):
    assert problems(environ={name: "true"}) == [expected]
    assert problems(environ={name: ""}) == [expected]  # set, even empty


KUBERNETES_SERVICE_LINKS = {  # what a pod gets for a Service named trioscope, port 8080 named http
    "TRIOSCOPE_SERVICE_HOST": "10.96.0.10", "TRIOSCOPE_SERVICE_PORT": "8080", "TRIOSCOPE_SERVICE_PORT_HTTP": "8080",
    "TRIOSCOPE_PORT": "tcp://10.96.0.10:8080", "TRIOSCOPE_PORT_8080_TCP": "tcp://10.96.0.10:8080",
    "TRIOSCOPE_PORT_8080_TCP_PROTO": "tcp", "TRIOSCOPE_PORT_8080_TCP_PORT": "8080",
    "TRIOSCOPE_PORT_8080_TCP_ADDR": "10.96.0.10",
    # and for one named trioscope-db
    "TRIOSCOPE_DB_SERVICE_HOST": "10.96.0.12", "TRIOSCOPE_DB_SERVICE_PORT": "5432",
    "TRIOSCOPE_DB_PORT": "tcp://10.96.0.12:5432",
}


def test_kubernetes_service_links_are_no_unknown_variables_but_a_typo_beside_them_is():
    """A Service named trioscope gave every pod variables no setting has: the
    server refused them (exit 2), and each pod started after it crashed in a loop."""
    assert resolve_settings({}, KUBERNETES_SERVICE_LINKS, None).server.port == 8080  # no problem, and none read
    assert problems(environ={**KUBERNETES_SERVICE_LINKS, "TRIOSCOPE_SERVR_PORT": "1"}) == [
        "TRIOSCOPE_SERVR_PORT: unknown environment variable (did you mean TRIOSCOPE_SERVER_PORT?)"]


def test_unknown_environment_variables_are_reported_with_the_other_problems_in_name_order():
    environ = {"TRIOSCOPE_ZZZ": "1", "TRIOSCOPE_SERVER_PORT": "x", "TRIOSCOPE_AAA": "1"}
    assert problems(environ=environ, text="serve:\n  prot: 1\n") == [
        f"serve.prot: unknown key in {FILE}:2 (did you mean server.port?)",
        "TRIOSCOPE_AAA: unknown environment variable; no setting has this name",
        "TRIOSCOPE_ZZZ: unknown environment variable; no setting has this name",
        'server.port: "x" from env TRIOSCOPE_SERVER_PORT is not a whole number; expected a whole number in 0..65535',
    ]


@pytest.mark.parametrize("name", [
    "TRIOSCOPE_CONFIG", "TRIOSCOPE_SERVER_URL", "TRIOSCOPE_CA_FILE", "TRIOSCOPE_ALLOCATOR_PRELOADED",
    "TRIOSCOPE_PROBE_SERVER", "TRIOSCOPE_PROBE_ANYTHING", "TRIOSCOPE_TEST_POSTGRES", "TRIOSCOPE_FUZZ_EXAMPLES",
    "TRIOSCOPE_PROFILE_DIR", "APP_PROTECT_READS", "trioscope_server_prot", "HOME",
])
def test_variables_read_elsewhere_and_other_programs_variables_are_no_problem(name):
    assert resolve_settings({}, {name: "/somewhere"}) == Settings.defaults()


def test_environment_and_flag_text_is_stripped_and_choices_ignore_case():
    settings = resolve_settings({"log.level": " WARNING "}, {"APP_PORT": " 9000\n"})
    assert settings.server.port == 9000
    assert settings.log.level == "warning"


def test_bad_duration_from_env_alias():
    assert problems(environ={"MAX_DATA_AGE": "1x"}) == [
        'storage.max_data_age: "1x" from env MAX_DATA_AGE is not a duration; '
        "use a number with a unit, like 90s, 5m or 1h"
    ]


def test_out_of_range_from_flag():
    assert problems(flags={"server.port": "70000"}) == [
        "server.port: 70000 from flag --port is out of range; allowed 0..65535"
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"storage.max_data_age": "31d"}, "storage.max_data_age: 31d from flag --max-data-age is out of range; allowed 1m..720h"),
        ({"storage.max_data_age": "59s"}, "storage.max_data_age: 59s from flag --max-data-age is out of range; allowed 1m..720h"),
        ({"websocket.buffer_size": "0"}, "websocket.buffer_size: 0 from flag --ws-buffer-size is out of range; allowed 1..65536"),
        ({"server.shutdown_timeout": "11m"}, "server.shutdown_timeout: 11m from flag --shutdown-timeout is out of range; allowed 1s..10m"),
        ({"server.port": "-1"}, "server.port: -1 from flag --port is out of range; allowed 0..65535"),
    ],
)
def test_limits_are_inclusive_and_enforced(flags, expected):
    assert problems(flags=flags) == [expected]


def test_limit_edges_are_accepted():
    settings = resolve_settings(
        # A budget that holds a host's metric history of 720h (_history_problem).
        {"server.port": "0", "storage.max_data_age": "720h", "agents.memory_budget": "16MiB",
         "websocket.buffer_size": "65536"},
        {"TRIOSCOPE_STORAGE_CLEANUP_INTERVAL": "1s"},
    )
    assert settings.server.port == 0
    assert settings.storage.max_data_age == 30 * 86400.0
    assert settings.storage.cleanup_interval == 1.0
    assert settings.websocket.buffer_size == 65536


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"server.port": "80.5"}, 'server.port: "80.5" from flag --port is not a whole number; expected a whole number in 0..65535'),
        ({"server.port": ""}, 'server.port: "" from flag --port is not a whole number; expected a whole number in 0..65535'),
        ({"log.level": "verbose"}, 'log.level: "verbose" from flag --log-level is not allowed; use one of debug, info, warning, error'),
        ({"server.host": "my host"}, 'server.host: "my host" from flag --host contains whitespace; expected a host name or IP address'),
        ({"server.host": "x" * 254}, f'server.host: "{"x" * 254}" from flag --host is longer than 253 characters; expected a host name or IP address'),
        ({"agents.heartbeat_timeout": "120"}, 'agents.heartbeat_timeout: "120" from flag --heartbeat-timeout has no unit; did you mean 120s?'),
    ],
)
def test_unparsable_text_is_quoted_and_explained(flags, expected):
    assert problems(flags=flags) == [expected]


def test_flag_problem_names_the_spelling_typed():
    assert problems(flags={"server.port": FlagValue("x", "-port")}) == [
        'server.port: "x" from flag -port is not a whole number; expected a whole number in 0..65535'
    ]


def test_overridden_bad_values_are_still_reported():
    assert problems(flags={"server.port": "9000"}, environ={"APP_PORT": "eighty"}) == [
        'server.port: "eighty" from env APP_PORT is not a whole number; expected a whole number in 0..65535'
    ]


def test_every_problem_is_reported_one_line_each_in_layer_order():
    text = "server:\n  port: true\n  backlg: 5\nstorage:\n  max_data_age: 3600\n"
    environ = {"MAX_DATA_AGE": "1x", "TRIOSCOPE_LOG_FORMAT": "xml"}
    flags = {"server.port": "70000", "websocket.ping_interval": "0s"}
    with pytest.raises(ConfigError) as caught:
        resolve_settings(flags, environ, config(text))
    lines = str(caught.value).splitlines()
    assert lines == [
        f"server.port: true from file {FILE}:2 is a boolean; expected a whole number in 0..65535",
        f"server.backlg: unknown key in {FILE}:3 (did you mean server.backlog?)",
        f"storage.max_data_age: 3600 from file {FILE}:5 has no unit; did you mean 3600s?",
        'storage.max_data_age: "1x" from env MAX_DATA_AGE is not a duration; use a number with a unit, like 90s, 5m or 1h',
        'log.format: "xml" from env TRIOSCOPE_LOG_FORMAT is not allowed; use one of human, json',
        "server.port: 70000 from flag --port is out of range; allowed 0..65535",
        "websocket.ping_interval: 0s from flag --ws-ping-interval is out of range; allowed 1s..1h",
    ]
    assert [problem.key for problem in caught.value.problems] == [
        "server.port",
        "server.backlg",
        "storage.max_data_age",
        "storage.max_data_age",
        "log.format",
        "server.port",
        "websocket.ping_interval",
    ]
    assert caught.value.problems[0].source == Source(kind=SourceKind.FILE, name=FILE, line=2)


def test_unreadable_file_is_one_problem_alongside_others():
    unreadable = ConfigFile(
        path="/missing.yaml", error="No such file or directory", named_by=Source(kind=SourceKind.ENV, name="TRIOSCOPE_CONFIG")
    )
    with pytest.raises(ConfigError) as caught:
        resolve_settings({"server.port": "x"}, {}, unreadable)
    assert str(caught.value).splitlines() == [
        "cannot read config file /missing.yaml (named by env TRIOSCOPE_CONFIG): No such file or directory",
        'server.port: "x" from flag --port is not a whole number; expected a whole number in 0..65535',
    ]


def test_flag_names_must_be_keys():
    with pytest.raises(ValueError, match="server.prot"):
        resolve_settings({"server.prot": "1"}, {})


def test_tls_needs_both_the_certificate_and_the_key():
    with pytest.raises(ConfigError) as caught:
        resolve_settings({"server.tls_cert": "/etc/tls/cert.pem"}, {})
    assert [str(p) for p in caught.value.problems] == [
        "server.tls_key: is needed with server.tls_cert (from flag --tls-cert): TLS takes both the certificate "
        "and its private key"]
    both = resolve_settings({}, {"TRIOSCOPE_SERVER_TLS_CERT": "/c.pem", "TRIOSCOPE_SERVER_TLS_KEY": "/k.pem"})
    assert both.server.tls and both.server.tls_key == "/k.pem"


def test_any_origin_with_credentials_is_refused_at_start():
    with pytest.raises(ConfigError) as caught:
        resolve_settings({"server.cors_origins": "*"}, {"TRIOSCOPE_SERVER_CORS_ALLOW_CREDENTIALS": "true"})
    (problem,) = caught.value.problems
    assert str(problem).startswith("server.cors_origins: * (from flag --cors-origins) cannot go with "
                                   "server.cors_allow_credentials true (from env TRIOSCOPE_SERVER_CORS_ALLOW_CREDENTIALS)")
    assert "list the origins instead" in str(problem)
    assert resolve_settings({"server.cors_origins": "*"}, {}).server.cors_origins == ("*",)


def test_origins_and_networks_are_lists():
    settings = resolve_settings({"server.cors_origins": "https://Ops.example.com, http://localhost:3000",
                                 "server.trusted_proxies": "10.0.0.0/8,::1"}, {})
    assert settings.server.cors_origins == ("https://ops.example.com", "http://localhost:3000")
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "::1/128")


def test_origins_are_kept_as_browsers_send_them():
    """A browser sends ``Origin: http://[::1]:3001`` for a page at
    ``http://[0:0::1]:3001``, and no default port: allowed as written, such an
    origin never matched (403 to its preflights)."""
    settings = resolve_settings({"server.cors_origins": "http://[0:0::1]:3001,http://[::FFFF:127.0.0.1]:3003,"
                                                        "https://a.example:443,http://b.example:80,"
                                                        "http://c.example:8080,http://[2001:DB8:0:0:1:0:0:1]"}, {})
    assert settings.server.cors_origins == ("http://[::1]:3001", "http://[::ffff:7f00:1]:3003", "https://a.example",
                                            "http://b.example", "http://c.example:8080", "http://[2001:db8::1:0:0:1]")


@pytest.mark.parametrize(("flags", "message"), [
    ({"server.cors_origins": "http://[:::]:3005"}, "is not an origin"),
    ({"server.cors_origins": "http://[1.2.3.4]:3006"}, "is not an origin"),
    ({"server.cors_origins": "http://a.example:70000"}, "is not an origin"),
    ({"server.cors_origins": "https://ops.example.com/"}, "server.cors_origins: \"https://ops.example.com/\" from "
     "flag --cors-origins is not an origin (scheme://host[:port], no path"),
    ({"server.cors_origins": "https://a.example,ftp://b"}, "has 'ftp://b', which is not an origin"),
    ({"server.cors_origins": "*,https://a.example"}, "mixes * with origins"),
    ({"server.trusted_proxies": "10.0.0.0/33"}, "\"10.0.0.0/33\" from flag --trusted-proxies is not an IP network"),
])
def test_bad_origins_and_networks_are_named(flags, message):
    with pytest.raises(ConfigError) as caught:
        resolve_settings(flags, {})
    assert message in str(caught.value)


@pytest.mark.parametrize("text", [
    "server:\n  trusted_proxies: [10.0.0.0/8, '::1']\n  cors_origins: [https://a.example, \"https://b.example\"]\n",
    "server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - ::1\n  cors_origins:\n    - https://a.example\n"
    "    - https://b.example\n",
])
def test_yaml_lists_are_read_item_by_item(text):
    """A YAML list (flow or block) was read as an empty one: the proxies not
    trusted and CORS off, without a word, though the help text and the example
    file invite the list form."""
    settings = resolve_settings({}, {}, config(text))
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "::1/128")
    assert settings.server.cors_origins == ("https://a.example", "https://b.example")


def test_a_yaml_list_item_that_is_no_text_is_refused_naming_the_list():
    assert problems(text="server:\n  trusted_proxies: [1, [2]]\n") == [
        f"server.trusted_proxies: [1, [...]] from file {FILE}:2 is a list; expected IP networks such as "
        "10.0.0.0/8,::1 (comma-separated or a YAML list), or empty"]


def test_a_long_bad_value_is_shown_cut_with_its_length():
    """A 5 MB --host was echoed whole in the one-line error."""
    [line] = problems(flags={"server.host": "a" * 5000})
    assert len(line) < 500 and "... (5000 characters)" in line, line


def test_an_unreadable_item_of_a_yaml_list_is_named_by_its_tag_at_its_own_line():
    assert problems(text="server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - !!python/name:os.system\n") == [
        f"server.trusted_proxies: tag:yaml.org,2002:python/name:os.system from file {FILE}:4 cannot be read: "
        "could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'"]
