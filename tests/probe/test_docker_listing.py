"""What the probe makes of the engine's container list and inspects, against a
fake engine that answers as Podman's Docker-compatible API does (and counts
the calls): what changes while a container lives comes from each cycle's list,
a state the probe does not know is placed and logged once, and a failed cycle
repeats the last containers, as last known, for up to a day."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import requests.exceptions

from trioscope_probe import _docker
from trioscope.wire import KEEP_LISTED_SECONDS
from trioscope_probe._docker import ContainerCollector

CID = "3ec892e9e13d" + "0" * 52
IMAGE_ID = "sha256:" + "e4" * 32


def listed(name: str = "/listener", state: str = "running", status: str = "Up 3 days",
           networks: dict[str, str] | None = None, names: list[str] | None = None) -> dict[str, Any]:
    """One entry of GET /containers/json, as Podman 4 answers it."""
    networks = {"podman": "10.88.0.22"} if networks is None else networks
    return {
        "Id": CID, "Names": names or [name], "Image": "localhost/busybox:latest", "ImageID": IMAGE_ID,
        "Command": "sleep 600", "Created": 1_700_000_000, "Labels": {"app": "shop"}, "State": state,
        "Status": status, "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
        "NetworkSettings": {"Networks": {net: {"NetworkID": net, "IPAddress": ip} for net, ip in networks.items()}},
    }


def inspected(name: str = "/listener", state: str = "running", pid: int = 4242) -> dict[str, Any]:
    """GET /containers/{id}/json, as it was when the container was first seen."""
    return {
        "Id": CID, "Name": name, "Image": IMAGE_ID,
        "State": {"Status": state, "Pid": pid},
        "Config": {"Image": "localhost/busybox:latest", "Cmd": ["sleep", "600"], "Env": ["PATH=/bin"],
                   "Labels": {"app": "shop"}},
        "NetworkSettings": {"Networks": {"podman": {"IPAddress": "10.88.0.22"}}},
    }


class Engine:
    """The docker SDK's low-level API, as the collector uses it."""

    def __init__(self, listing: list[dict[str, Any]], details: dict[str, Any]) -> None:
        self.listing = listing
        self.details = details
        self.down = False
        self.calls: Counter[str] = Counter()

    def version(self) -> dict[str, Any]:
        self.calls["version"] += 1
        return {"Version": "4.3.1"}

    def containers(self, all: bool) -> list[dict[str, Any]]:  # the SDK's names
        self.calls["list"] += 1
        if self.down:
            raise requests.exceptions.ConnectionError("connection refused")
        return self.listing

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self.calls["inspect"] += 1
        return self.details

    def stats(self, container_id: str, stream: bool) -> dict[str, Any]:
        self.calls["stats"] += 1
        return {"cpu_stats": {"cpu_usage": {"total_usage": 1}, "system_cpu_usage": 1, "online_cpus": 1},
                "memory_stats": {"usage": 2**20, "limit": 2**30}, "pids_stats": {"current": 1}}


class Collector(ContainerCollector):
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("unix:///fake.sock", clock=clock)
        self.engine = engine

    def _connect(self) -> Any:
        return SimpleNamespace(api=self.engine)


def test_a_rename_and_a_network_connect_show_in_the_next_report_while_the_status_text_stays() -> None:
    engine = Engine([listed()], inspected())
    collector = Collector(engine)
    (before,) = collector.collect().containers  # type: ignore[union-attr]
    assert (before.name, [(n.name, n.ip_address) for n in before.networks]) == ("listener", [("podman", "10.88.0.22")])

    # podman rename listener listener-renamed; podman network connect revnet ...: the
    # status text is the same "Up 3 days", the inspect (were it asked) still the old one.
    # Docker lists a legacy link's alias among the names, before or after the own one.
    engine.listing = [listed(names=["/web/listener", "/listener-renamed"],
                             networks={"podman": "10.88.0.22", "revnet": "10.89.0.5"})]
    (after,) = collector.collect().containers  # type: ignore[union-attr]
    assert after.name == "listener-renamed"
    assert [(n.name, n.ip_address) for n in after.networks] == [("podman", "10.88.0.22"), ("revnet", "10.89.0.5")]
    assert (after.pid, after.env_names, after.command) == (4242, ["PATH"], "sleep 600")  # still the inspect's
    # The cost stays one list per cycle and a stats call per running container; an
    # inspect only when the list shows a new status text (a new run: its new pid).
    assert engine.calls == Counter(version=1, list=2, inspect=1, stats=2)
    engine.listing, engine.details = [listed(status="Up Less than a second")], inspected(pid=5151)
    (restarted,) = collector.collect().containers  # type: ignore[union-attr]
    assert (restarted.name, restarted.pid, engine.calls["inspect"]) == ("listener", 5151, 2)


def test_a_status_text_whose_time_moves_asks_for_no_inspect_and_a_new_run_does() -> None:
    """"Up 17 minutes", then 18: the text changed every minute and every container
    was inspected again, one after another (131 on a slow engine: a report every
    two minutes). Only a new run (its time starts again) or another state is asked about."""
    engine = Engine([listed(status="Up 17 minutes (healthy)")], inspected())
    collector = Collector(engine)
    for status in ("Up 18 minutes (healthy)", "Up 19 minutes (healthy)", "Up About an hour (healthy)"):
        engine.listing = [listed(status=status)]
        (same,) = collector.collect().containers  # type: ignore[union-attr]
        assert same.status == status
    assert engine.calls["inspect"] == 1
    engine.listing = [listed(status="Up About an hour (unhealthy)")]  # another state of its health
    collector.collect()
    assert engine.calls["inspect"] == 2
    engine.listing, engine.details = [listed(status="Up 2 seconds (unhealthy)")], inspected(pid=5151)  # a new run
    (again,) = collector.collect().containers  # type: ignore[union-attr]
    assert (again.pid, engine.calls["inspect"]) == (5151, 3)
    # Seen up 2 seconds, then up 2 hours, then restarted and listed 15 s after: a new run all the
    # same (the time to compare with is the last listed, not the first inspected).
    engine.listing = [listed(status="Up 2 hours (unhealthy)")]
    collector.collect()
    engine.listing, engine.details = [listed(status="Up 15 seconds (unhealthy)")], inspected(pid=6262)
    (third,) = collector.collect().containers  # type: ignore[union-attr]
    assert (third.pid, engine.calls["inspect"]) == (6262, 4)


def test_podman_stopping_is_running_with_its_status_text() -> None:
    # Podman's state while a stop waits out its grace period (Docker says "running").
    engine = Engine([listed(state="stopping", status="Stopping")], inspected(state="stopping"))
    (stopping,) = Collector(engine).collect().containers  # type: ignore[union-attr]
    assert (stopping.state, stopping.status) == ("running", "Stopping")
    assert stopping.stats is not None


@pytest.mark.parametrize(("status", "shown"), [("Up 2 hours", "running"), ("Unknown", "exited")])
def test_an_unknown_state_is_placed_by_its_status_text_and_logged_once(
        caplog: pytest.LogCaptureFixture, status: str, shown: str) -> None:
    engine = Engine([listed(state="hibernating", status=status)], inspected(state="hibernating"))
    collector = Collector(engine)
    with caplog.at_level(logging.WARNING, logger="trioscope_probe"):
        states = [c.state for _ in range(3) for c in collector.collect().containers]  # type: ignore[union-attr]
    assert states == [shown] * 3
    assert [r.getMessage() for r in caplog.records if "unknown container state" in r.getMessage()] == [
        f"container engine unix:///fake.sock: unknown container state 'hibernating' (container 3ec892e9e13d, "
        f"status '{status}'), shown as {shown}"]


def test_while_the_engine_fails_its_last_listing_is_repeated_without_statistics_for_a_day_then_none(
        caplog: pytest.LogCaptureFixture) -> None:
    """The probe keeps its engine's last listing through an outage, saying
    when it was (``listed_at``): its reports are the whole of its host, for a
    server restarted meanwhile too. It was once only, then none: the server
    alone kept them, and lost them as it restarted."""
    clock = [1000.0]
    engine = Engine([listed()], inspected())
    collector = Collector(engine, clock=lambda: clock[0])
    before = datetime.now(UTC)
    first = collector.collect()
    assert first.reachable and first.problem == "" and first.listed_at is None
    assert first.containers[0].stats is not None
    engine.down = True
    outage = []
    with caplog.at_level(logging.INFO, logger="trioscope_probe"):
        for seconds in (15, 3600, KEEP_LISTED_SECONDS):
            clock[0] = 1000.0 + seconds
            outage.append(collector.collect())
        clock[0] = 1000.0 + KEEP_LISTED_SECONDS + 15
        after = [collector.collect() for _ in range(2)]
    assert [[(c.id, c.name, c.state, c.stats, [n.ip_address for n in c.networks], [p.host_port for p in c.ports])
             for c in info.containers] for info in outage] == [
        [(CID, "listener", "running", None, ["10.88.0.22"], [8080])]] * 3
    assert [info.containers for info in after] == [[], []]
    listed_at = outage[0].listed_at
    assert listed_at is not None and before <= listed_at <= datetime.now(UTC)
    assert [(info.reachable, info.problem, info.engine_version, info.listed_at) for info in (*outage, *after)] == [
        (False, "connection refused", "4.3.1", listed_at)] * 5
    assert [r.getMessage() for r in caplog.records] == [
        "container engine unix:///fake.sock unreachable: connection refused",
        "container engine unix:///fake.sock: reporting the 1 containers it last listed, as last known, for up to "
        "24 h while it does not answer",
        f"container engine unix:///fake.sock: its containers, last listed {listed_at.isoformat(timespec='seconds')}, "
        "are no longer reported (kept for 24 h)"]
    engine.down = False
    back = collector.collect()
    assert back.reachable and back.problem == "" and back.listed_at is None and back.containers[0].stats is not None


def test_an_engine_that_never_answered_says_no_listing() -> None:
    """A probe started during an outage has no listing to repeat: its report
    says none (``listed_at`` None), and the server keeps the containers of the
    host's earlier reports, if it has them."""
    engine = Engine([listed()], inspected())
    engine.down = True
    info = Collector(engine).collect()
    assert (info.reachable, info.containers, info.listed_at) == (False, [], None)


def test_an_engine_that_cannot_be_reached_is_named_by_its_socket(tmp_path: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Not requests' tuple ``('Connection aborted.', FileNotFoundError(2, ...))``."""
    caplog.set_level(logging.WARNING, logger="trioscope_probe")
    socket = tmp_path / "absent.sock"
    info = ContainerCollector(f"unix://{socket}").collect()
    assert (info.reachable, info.problem, info.containers) == (
        False, f"cannot connect to socket {socket}: No such file or directory", [])
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.endswith(f"unreachable: cannot connect to socket {socket}: No such file or directory"), said


def test_a_container_whose_answer_has_fields_of_another_shape_is_left_out_alone_and_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Labels as a list ended the probe with an AttributeError (a reviewer's fake engine)."""
    odd = {**listed(), "Id": "0dd" + "0" * 61, "Labels": ["app=shop"]}
    engine = Engine([odd, listed()], inspected())
    collector = Collector(engine)
    with caplog.at_level(logging.WARNING, logger="trioscope_probe"):
        for _ in range(2):
            assert [c.id for c in collector.collect().containers] == [CID]  # type: ignore[union-attr]
    said = [r.getMessage() for r in caplog.records if "left out of the reports" in r.getMessage()]
    assert len(said) == 1 and "0dd000000000" in said[0] and "AttributeError" in said[0]


def test_statistics_of_another_shape_leave_that_containers_statistics_out() -> None:
    engine = Engine([listed()], inspected())
    engine.stats = lambda container_id, stream: {  # type: ignore[method-assign]
        "networks": {"eth0": {"rx_bytes": None, "tx_bytes": 1}}, "memory_stats": {"usage": "lots"}}
    (container,) = Collector(engine).collect().containers  # type: ignore[union-attr]
    assert container.name == "listener" and container.stats is None


def test_statistics_are_asked_of_several_containers_at_once_and_a_slow_ones_are_left_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One stats call after another: ten containers whose calls took 3 s made a
    cycle of 30 s, and the host's heartbeats waited with it (a reviewer's)."""
    ids = [f"{index:02d}" + "0" * 62 for index in range(10)]
    engine = Engine([{**listed(), "Id": cid, "Names": [f"/c{index}"]} for index, cid in enumerate(ids)], inspected())
    at_once = peak = 0
    lock, stuck, gathered = threading.Lock(), threading.Event(), threading.Event()
    plain = engine.stats

    def stats(container_id: str, stream: bool) -> dict[str, Any]:
        nonlocal at_once, peak
        with lock:
            at_once += 1
            peak = max(peak, at_once)
            if at_once == _docker.STATS_AT_ONCE:
                gathered.set()
        try:
            if container_id == ids[0]:
                stuck.wait(10)  # an engine that never answers for this one within the cycle's budget
            else:
                gathered.wait(5)  # until as many calls as may be are out together
            return plain(container_id, stream)
        finally:
            with lock:
                at_once -= 1

    engine.stats = stats  # type: ignore[method-assign]
    real_wait = concurrent.futures.wait

    def budget_spent(futures: Any, timeout: float | None = None) -> Any:
        """The cycle's budget, spent once every call but the stuck one answered
        (however long a loaded machine takes them: not 2 s of it)."""
        futures = list(futures)
        deadline = time.monotonic() + 30
        while sum(f.done() for f in futures) < len(futures) - 1:
            assert time.monotonic() < deadline, "the calls that may answer did not"
            time.sleep(0.01)  # the next look at the condition
        return real_wait(futures, timeout=0)

    monkeypatch.setattr(_docker.concurrent.futures, "wait", budget_spent)
    try:
        found = {c.id: c for c in Collector(engine).collect().containers}  # type: ignore[union-attr]
    finally:
        stuck.set()
    assert peak == _docker.STATS_AT_ONCE
    assert len(found) == 10 and found[ids[0]].stats is None
    assert all(found[cid].stats is not None for cid in ids[1:])


def test_containers_a_cycle_had_no_time_for_have_their_statistics_in_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """In listing order with a cut-off, the same containers went without
    statistics at every cycle on a host with many (a reviewer's)."""
    import time as clock

    ids = [f"{index:02d}" + "0" * 62 for index in range(9)]
    engine = Engine([{**listed(), "Id": cid, "Names": [f"/c{index}"]} for index, cid in enumerate(ids)], inspected())
    plain = engine.stats

    def slow(container_id: str, stream: bool) -> dict[str, Any]:
        clock.sleep(0.2)  # the engine's own time for a stats call
        return plain(container_id, stream)

    engine.stats = slow  # type: ignore[method-assign]
    monkeypatch.setattr(_docker, "STATS_AT_ONCE", 2)
    monkeypatch.setattr(_docker, "STATS_BUDGET", 0.5)
    collector = Collector(engine)
    had: set[str] = set()
    cycles = 0
    while had != set(ids) and cycles < 40:  # ~5 cycles of 2 at a time; many more on a loaded machine
        had |= {c.id for c in collector.collect().containers if c.stats is not None}  # type: ignore[union-attr]
        cycles += 1
    assert had == set(ids)


def test_label_values_named_like_secrets_are_masked_as_environment_values_are() -> None:
    """Labels went out as they were: ``DB_PASSWORD=hunter2`` reached every reader (a reviewer's)."""
    labels = {"app": "shop", "DB_PASSWORD": "hunter2", "api.token": "tok-42",
              "traefik.http.middlewares.x.basicauth.users": "admin:$apr1$salt$hash",
              "com.example/secret-key": "k-17", "org.opencontainers.image.source": "https://github.com/o/r",
              "traefik.http.routers.web.rule": "Host(`shop.example`)",
              "db.url": "postgresql://shop:pw-5@db/shop", "empty.password": ""}
    entry = listed()
    entry["Labels"] = labels
    (container,) = Collector(Engine([entry], inspected())).collect().containers  # type: ignore[union-attr]
    assert container.labels == {
        "app": "shop", "DB_PASSWORD": "***", "api.token": "***", "traefik.http.middlewares.x.basicauth.users": "***",
        "com.example/secret-key": "***", "org.opencontainers.image.source": "https://github.com/o/r",
        "traefik.http.routers.web.rule": "Host(`shop.example`)", "db.url": "postgresql://shop:***@db/shop",
        "empty.password": ""}


def test_an_engine_that_closes_the_connection_is_said_so_not_as_a_tuple(tmp_path: Any) -> None:
    """An engine (or what listens on its socket) that closes each connection
    gave requests' ``('Connection aborted.', RemoteDisconnected(...))``."""
    import socket as sockets

    path = tmp_path / "closing.sock"
    with sockets.socket(sockets.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(10)

        def close_each() -> None:
            for _ in range(8):
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                connection.recv(65536)
                connection.close()

        closer = threading.Thread(target=close_each, daemon=True)
        closer.start()
        info = ContainerCollector(f"unix://{path}").collect()
    assert info.reachable is False
    assert info.problem == f"socket {path} closed the connection without an answer (Remote end closed connection " \
                           "without response)"


def test_an_engine_socket_the_probe_may_not_use_says_what_to_do() -> None:
    from trioscope_probe._engine import engine_problem

    refused = requests.exceptions.ConnectionError(PermissionError(13, "Permission denied"))
    assert engine_problem(refused, "unix:///var/run/docker.sock") == (
        "cannot connect to socket /var/run/docker.sock: Permission denied; the probe's user may not use it: add "
        "the user to the socket's group (docker), or run the probe as root")


def test_a_containers_global_ipv6_address_is_reported_beside_its_ipv4_one() -> None:
    """Only ``IPAddress`` was read: a connection to a container's routed IPv6
    address made no edge (an IPv6 reviewer's)."""
    listing = listed()
    listing["NetworkSettings"]["Networks"]["podman"]["GlobalIPv6Address"] = "fd00:88::22"
    (container,) = Collector(Engine([listing], inspected())).collect().containers  # type: ignore[union-attr]
    assert [(n.name, n.ip_address, n.ipv6_address) for n in container.networks] == [
        ("podman", "10.88.0.22", "fd00:88::22")]
