"""A container's command and environment values, as the probe reports them:
masked as a process's command line is (the process inside the container was
masked, its container node showed the same secrets whole), against the fake
engine of test_docker_listing and a real one.

The real engine's test is skipped only if it cannot start here (tests/engine.py)."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from tests.probe.engine import IMAGE, unique
from tests.probe.test_docker_listing import Collector, Engine, inspected, listed
from trioscope.wire import ContainerInfo
from trioscope_probe._docker import ContainerCollector
from trioscope_probe._masking import MASK

SECRETS = ("CTRMYSQL", "CTRSECRET", "CTRENV", "CTRURL", "CTRTOKEN")


def _reported(config: dict[str, Any], *, env_values: bool = True) -> ContainerInfo:
    """The container the collector makes of an inspect whose ``Config`` has ``config``."""
    details = inspected()
    details["Config"] = {**details["Config"], **config}
    collector = Collector(Engine([listed()], details))
    collector.env_values = env_values
    info = collector.collect()
    assert info is not None
    return info.containers[0]


@pytest.mark.parametrize(("config", "command"), [
    ({"Cmd": ["sh", "-c", "sleep 10000; mysql -pCTRMYSQL --password=CTRSECRET"]},
     "sh -c sleep 10000; mysql -p*** --password=***"),
    # The entrypoint is read, not shown: it says whose flags the command's are.
    ({"Entrypoint": ["mysql"], "Cmd": ["-uroot", "-pCTRMYSQL"]}, "-uroot -p***"),
    ({"Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"], "Cmd": ["redis-server", "--requirepass", "CTRSECRET"]},
     "redis-server --requirepass ***"),
    ({"Entrypoint": "redis-cli -a", "Cmd": ["CTRSECRET", "ping"]}, "*** ping"),  # a string, as Podman's own API has
    ({"Cmd": ["postgres", "-c", "log_min_duration_statement=0"]}, "postgres -c log_min_duration_statement=0"),
    ({"Cmd": None}, ""),
])
def test_the_command_is_masked_as_a_process_command_line(config: dict[str, Any], command: str) -> None:
    assert _reported(config).command == command


def test_environment_values_are_masked_by_name_and_as_command_lines() -> None:
    container = _reported({"Env": ["PATH=/bin", "POSTGRES_PASSWORD=CTRENV", "MYSQL_PWD=CTRENV", "EMPTY_TOKEN=",
                                   "DATABASE_URL=postgres://app:CTRURL@db:5432/shop",
                                   "JAVA_OPTS=-Xmx1g -Dapp.api.token=CTRTOKEN", "MODE=prod"]})
    assert container.env == {"PATH": "/bin", "POSTGRES_PASSWORD": MASK, "MYSQL_PWD": MASK, "EMPTY_TOKEN": "",
                             "DATABASE_URL": "postgres://app:***@db:5432/shop",
                             "JAVA_OPTS": "-Xmx1g -Dapp.api.token=***", "MODE": "prod"}
    assert container.env_names == ["PATH", "POSTGRES_PASSWORD", "MYSQL_PWD", "EMPTY_TOKEN", "DATABASE_URL",
                                   "JAVA_OPTS", "MODE"]


def test_environment_values_are_not_reported_without_env_values() -> None:
    assert _reported({"Env": ["POSTGRES_PASSWORD=CTRENV"]}, env_values=False).env == {}


def test_labels_are_not_command_lines() -> None:
    # The list's labels are the engine's metadata, shown as they are but for secrets (below).
    assert _reported({"Cmd": ["sleep", "1"]}).labels == {"app": "shop"}


def test_a_real_container_shows_no_secret_of_its_command_or_environment(docker_host: str,
                                                                         engine: docker.DockerClient) -> None:
    # Created, not started: the inspect has the command and environment all the same.
    container = engine.containers.create(
        IMAGE, ["sh", "-c", "sleep 10000; mysql -pCTRMYSQL --password=CTRSECRET"], name=unique("probe-masking"),
        environment={"DB_PASSWORD": "CTRENV", "DATABASE_URL": "postgres://app:CTRURL@db/shop"},
        labels={"DB_PASSWORD": "CTRLABEL", "traefik.http.middlewares.x.basicauth.users": "admin:CTRBASIC",
                "app": "shop"})
    try:
        info = ContainerCollector(docker_host, env_values=True).collect()
        assert info is not None
        mine = next(c for c in info.containers if c.id == container.id)
        assert mine.command == "sh -c sleep 10000; mysql -p*** --password=***"
        assert (mine.env["DB_PASSWORD"], mine.env["DATABASE_URL"]) == (MASK, "postgres://app:***@db/shop")
        assert (mine.labels["DB_PASSWORD"], mine.labels["traefik.http.middlewares.x.basicauth.users"],
                mine.labels["app"]) == (MASK, MASK, "shop")
        shown = repr(mine)
        assert not [secret for secret in (*SECRETS, "CTRLABEL", "CTRBASIC") if secret in shown]
    finally:
        container.remove(force=True)
