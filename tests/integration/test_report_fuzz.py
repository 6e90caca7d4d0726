"""Fuzzing ``POST /api/v1/reports`` on a real server with hypothesis.

Bodies start from a valid synthetic report and get a few random mutations: a
nested value replaced by one of another JSON type (null, booleans, integers
beyond 64 bits, negative numbers, floats, long strings, lists, objects, deeply
nested arrays), a value replaced by another of the same type (which keeps many
reports valid, so that odd but valid input reaches the topology too), required
keys deleted, unknown keys inserted, list items duplicated; some bodies are not
objects at all, some are gzip-compressed, some carry invalid UTF-8, and some are
raw bytes.

Whatever comes in, the server answers 202 or a 400 with the JSON error shape,
never a 5xx, and afterwards it is healthy, every accepted report can be read
back, and its log holds no traceback.

A last test sends odd but valid reports (shared container ids and host names,
loopback, wildcard and IPv4-mapped addresses, pods and services with odd names)
from a few agents and checks that the topology stays whole: every edge joins
nodes of its view, every parent exists, and every node's details can be read.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server_process import ServerProcess
from tests.synthetic import host_report

Path = tuple[Any, ...]

BASE = host_report(5, timestamp=time.time(), containers=2, processes=4, connections=6, peers=[6],
                   agent_prefix="fuzz")
DEEP = "@@deep@@"
"""Placeholder for a deeply nested array, spliced into the encoded text (json.dumps
would hit Python's recursion limit first)."""
_DEEP_TEXT = re.compile(r'"@@deep@@(\d+)"')
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- strategies -------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 2**31, 2**63 - 1, 2**63, 2**64, 2**70, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e-320, 1e18, 1e19, -1e308, 1.7976931348623157e308]),
)
strings = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=200, max_value=20_000).map(lambda n: "x" * n),
    st.sampled_from(["", "0", "null", "true", "1e999", "\u0000", "\ud7ff\ue000", "a" * 129,
                     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2025-02-29T00:00:00Z",
                     "2025-10-12T00:00:00.123456789+14:00", "9999-12-31T23:59:59-23:59",
                     "0::/system.slice/docker-" + "a" * 64 + ".scope", "::ffff:10.0.0.6", "127.0.0.1"]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
deep = st.integers(min_value=2, max_value=3000).map(lambda depth: f"{DEEP}{depth}")
other_values = st.one_of(json_values, deep)


def same_type(value: Any) -> st.SearchStrategy[Any]:
    """Values of the JSON type ``value`` has: these often keep the report valid."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min_value=0, max_value=70_000)
    if isinstance(value, float):
        return st.floats(min_value=0.0, max_value=100.0)
    if isinstance(value, str):
        return strings
    if isinstance(value, list):
        return st.just([])
    if isinstance(value, dict):
        return st.just({})
    return st.none()


def paths(document: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every value's path in ``document`` (the document itself is ``()``)."""
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, (*prefix, index))


def get(document: Any, path: Path) -> Any:
    for key in path:
        document = document[key]
    return document


def mutate(data: st.DataObject, document: dict[str, Any]) -> Any:
    """Apply one random mutation to ``document`` (in place where possible); returns
    the new document (which may no longer be an object)."""
    kind = data.draw(st.sampled_from(["other-type", "same-type", "same-type", "delete", "insert",
                                      "duplicate", "top-level"]), label="mutation")
    if kind == "top-level":
        return data.draw(st.one_of(leaves, st.lists(json_values, max_size=3), deep), label="document")
    path = data.draw(st.sampled_from(list(paths(document))[1:]), label="path")
    parent, key = get(document, path[:-1]), path[-1]
    if kind == "other-type":
        parent[key] = data.draw(other_values, label="value")
    elif kind == "same-type":
        parent[key] = data.draw(same_type(parent[key]), label="value")
    elif kind == "delete":
        del parent[key]
    elif kind == "insert":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[data.draw(st.text(max_size=12), label="new key")] = data.draw(json_values, label="value")
    elif kind == "duplicate" and isinstance(parent, list):
        parent.append(json.loads(json.dumps(parent[key])))
    return document


def encode(document: Any) -> bytes:
    text = json.dumps(document, ensure_ascii=False)
    text = _DEEP_TEXT.sub(lambda match: "[" * int(match[1]) + "]" * int(match[1]), text)
    return text.encode()


# ---- the server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # The fuzz reads the topology some 2,700 times in a row from one address,
    # which the address's API budget (open reads count too) would refuse.
    with ServerProcess(["--rate-per-address", "1000000"]) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


def check_answer(response: httpx.Response, document: Any = None) -> None:
    assert response.status_code in (202, 400), (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code == 202:
        assert body["status"] == "accepted"
        if isinstance(document, dict):
            assert body["agent_id"] == document["agent_id"]
        return
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if error["code"] == "invalid_report":
        problems = error["details"]["errors"]
        assert isinstance(problems, list) and problems
        assert error["details"]["total"] >= len(problems)
        for problem in problems:
            assert problem["path"].startswith("$") and problem["message"], problem


def check_still_healthy(server: ServerProcess, client: httpx.Client) -> None:
    """Up, and everything the fuzzing left behind can be read back."""
    assert client.get("/health").status_code == 200
    topology = client.get("/api/v1/query/topology")
    assert topology.status_code == 200, topology.text[:2000]
    nodes = topology.json()["topology"]["nodes"]
    for node_id, node in nodes.items():
        if node["type"] == "host":
            details = client.get(f"/api/v1/query/nodes/{urllib.parse.quote(node_id, safe=':/')}")
            assert details.status_code == 200, (node_id, details.text[:2000])
    agents = client.get("/api/v1/agents/list")
    assert agents.status_code == 200
    for agent in agents.json()["agents"]:
        latest = client.get(f"/api/v1/query/agents/{agent['agent_id']}/latest")
        assert latest.status_code == 200, (agent, latest.text[:2000])
        assert client.get(f"/api/v1/query/agents/{agent['agent_id']}/timeseries").status_code == 200
    assert client.get("/api/v1/query/stats").status_code == 200
    assert client.get("/metrics").status_code == 200
    log = server.stderr()
    for sign in ("Traceback", "unhandled error", "could not be merged"):
        assert sign not in log, log[-5000:]


# ---- the fuzz tests ------------------------------------------------------------------------------


def test_valid_base_report_is_accepted(client: httpx.Client) -> None:
    check_answer(client.post("/api/v1/reports", content=encode(BASE)), BASE)
    assert client.post("/api/v1/reports", content=encode(BASE)).status_code == 202


def test_mutated_reports_get_202_or_a_400_naming_the_problem(server: ServerProcess, client: httpx.Client) -> None:
    @FUZZ
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        document: Any = json.loads(json.dumps(BASE))
        for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="mutations")):
            if not isinstance(document, dict):
                break
            document = mutate(data, document)
        body = encode(document)
        headers = {"Content-Type": "application/json"}
        if data.draw(st.booleans(), label="gzip"):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        check_answer(client.post("/api/v1/reports", content=body, headers=headers), document)

    fuzz()
    check_still_healthy(server, client)


def test_garbage_bodies_get_400(server: ServerProcess, client: httpx.Client) -> None:
    valid = encode(BASE)

    @FUZZ
    @given(
        body=st.one_of(
            st.binary(max_size=2000),
            # invalid UTF-8 spliced into an otherwise valid report
            st.tuples(st.integers(min_value=0, max_value=len(valid)),
                      st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]))
            .map(lambda cut: valid[:cut[0]] + cut[1] + valid[cut[0]:]),
            # a valid report cut short
            st.integers(min_value=0, max_value=len(valid) - 1).map(lambda n: valid[:n]),
        ),
        gzipped=st.sampled_from(["no", "compressed", "claimed"]),
    )
    def fuzz(body: bytes, gzipped: str) -> None:
        headers = {"Content-Type": "application/json"}
        if gzipped != "no":
            headers["Content-Encoding"] = "gzip"
        if gzipped == "compressed":
            body = gzip.compress(body)
        response = client.post("/api/v1/reports", content=body, headers=headers)
        check_answer(response)
        assert response.status_code == 400, response.text

    fuzz()
    check_still_healthy(server, client)


# ---- odd but valid reports ---------------------------------------------------------------------

NOW = time.time()
ADDRESSES = st.sampled_from(["10.9.0.1", "10.9.0.2", "10.9.0.3", "172.17.0.2", "127.0.0.1", "::1", "::ffff:10.9.0.1",
                             "0.0.0.0", "", "fe80::1", "::", "*", "localhost"])
PORTS = st.sampled_from([0, 80, 5432, 8080, 65535])
CONTAINER_IDS = st.sampled_from(["a" * 64, "b" * 64, "c" * 64, "abc", "a" * 12, "b" * 12 + "x"])
NAMES = st.sampled_from(["", "web", "a/b", "db", "x:y", "ünï", "sp ace", "q?#%"])
LABELS = st.dictionaries(
    st.sampled_from(["io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid", "app",
                     "app.kubernetes.io/name", "com.docker.compose.project", "com.docker.compose.service"]),
    NAMES, max_size=5)
CONTAINER = st.fixed_dictionaries(
    {"id": CONTAINER_IDS, "name": NAMES, "state": st.sampled_from(["running", "paused", "exited"]), "labels": LABELS,
     "networks": st.lists(st.fixed_dictionaries({"name": NAMES, "ip_address": ADDRESSES}), max_size=2),
     "ports": st.lists(st.fixed_dictionaries({"container_port": PORTS, "protocol": st.sampled_from(["tcp", "udp", "tcp6"])},
                                             optional={"host_port": st.one_of(st.none(), PORTS), "host_ip": ADDRESSES}),
                       max_size=2)},
    optional={"pid": st.integers(1, 6),
              "stats": st.fixed_dictionaries({"cpu_percent": st.floats(0, 1e3), "memory_usage_mb": st.floats(0, 1e6)})})
PROCESS = st.fixed_dictionaries(
    {"pid": st.integers(1, 6), "ppid": st.integers(0, 6), "name": NAMES},
    optional={"container_id": st.one_of(st.none(), CONTAINER_IDS),
              "cgroup": CONTAINER_IDS.map(lambda cid: f"0::/system.slice/docker-{cid}.scope\n"),
              "cpu_percent": st.floats(0, 400)})
CONNECTION = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["tcp", "udp", "tcp6", "udp6"]), "local_address": ADDRESSES, "local_port": PORTS,
     "remote_address": ADDRESSES, "remote_port": PORTS,
     "state": st.sampled_from(["LISTEN", "ESTABLISHED", "", "listen", "TIME_WAIT"])},
    optional={"pid": st.one_of(st.none(), st.integers(1, 7))})
ODD_REPORT = st.fixed_dictionaries(
    {"agent_id": st.sampled_from(["odd-1", "odd-2", "odd-3", "odd-4"]),
     "hostname": st.sampled_from(["odd-a", "odd-b", "", "odd:c", "odd/d", "ödd"]),
     "timestamp": st.floats(NOW - 120, NOW).map(
         lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))},
    optional={"host_info": st.fixed_dictionaries({"hostname": NAMES, "ip_addresses": st.lists(ADDRESSES, max_size=3)}),
              "docker_info": st.fixed_dictionaries({"containers": st.lists(CONTAINER, max_size=3)}),
              "processes_info": st.fixed_dictionaries({"processes": st.lists(PROCESS, max_size=5)}),
              "network_info": st.fixed_dictionaries({"connections": st.lists(CONNECTION, max_size=6)})})


def test_odd_valid_reports_keep_the_topology_whole(server: ServerProcess, client: httpx.Client) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(reports=st.lists(ODD_REPORT, min_size=1, max_size=3))
    def fuzz(reports: list[dict[str, Any]]) -> None:
        for report in reports:
            response = client.post("/api/v1/reports", json=report)
            assert response.status_code == 202, (response.text, report)
        everything = client.get("/api/v1/query/topology").json()["topology"]
        nodes = everything["nodes"]
        for node in nodes.values():
            assert node["parent"] is None or node["parent"] in nodes, node
        for view in ("hosts", "containers", "processes", "pods", "services"):
            shown = client.get("/api/v1/query/topology", params={"view": view}).json()["topology"]
            for edge in shown["edges"].values():
                assert edge["source"] in shown["nodes"] and edge["target"] in shown["nodes"], (view, edge)
        senders = {report["agent_id"] for report in reports}
        for node_id in [n for n, node in nodes.items() if node["agent_id"] in senders][:12]:
            details = client.get(f"/api/v1/query/nodes/{urllib.parse.quote(node_id, safe=':/')}")
            assert details.status_code == 200, (node_id, details.text[:2000])
            assert details.json()["node"]["id"] == node_id

    fuzz()
    check_still_healthy(server, client)
