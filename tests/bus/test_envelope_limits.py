"""How long a report read back from the stream may unpack to: as long as the
wire JSON a replica writes for the largest body it accepts
(``server.max_body_size``), and no longer, so that a compression bomb costs a
replica nothing; refused by the size its frame declares where it declares one."""

from __future__ import annotations

import time
from typing import Any

import attrs
import msgspec
import orjson
import pytest
import zstandard

from tests.bus.test_envelope import bomb_declaring
from tests.conftest import settings_in
from trioscope.bus import BadEnvelope, open_report_bus, unpack_report, unpacked_limit
from trioscope.bus._envelope import FORMAT, RECORDS_BYTES, WIRE_EXPANSION, _Frame
from trioscope.wire import CHECKS, _models, decode_report

T = "2026-01-01T00:00:00Z"

CAPPED: dict[str, tuple[tuple[str, str], dict[str, Any]]] = {
    "Connections": (("network_info", "connections"), {}),
    "Processes": (("processes_info", "processes"), {"pid": 1}),
    "Containers": (("docker_info", "containers"), {"id": "a", "stats": {}}),
    "Interfaces": (("network_info", "interfaces"), {"name": ""}),
    "Disks": (("host_info", "disks"), {"mount_point": ""}),
}
"""The model's records that a body may give with next to no keys and that
grow most written out, each list's cap (``bounded_list``), and its smallest item."""


def written(document: dict[str, Any]) -> int:
    """Bytes of the wire JSON a replica publishes for ``document`` (``pack_report``'s)."""
    return len(msgspec.json.encode(decode_report(document)))


def growth(section: str, key: str, item: Any, count: int = 10) -> tuple[float, float]:
    """Bytes one ``item`` more takes in a body, and in the wire JSON written of it."""
    def document(items: int) -> dict[str, Any]:
        return {"agent_id": "a", "timestamp": T, section: {key: [item] * items}}

    body = (len(orjson.dumps(document(count))) - len(orjson.dumps(document(0)))) / count
    return body, (written(document(count)) - written(document(0))) / count


def test_records_written_at_their_smallest_up_to_their_caps_fit_in_records_bytes() -> None:
    sections = {"agent_id": "a", "timestamp": T, "host_info": {"cpu_info": {}, "memory_info": {}, "load_average": {}},
                "docker_info": {}, "processes_info": {}, "network_info": {}}
    total = written(sections)
    for name, ((section, key), item) in CAPPED.items():
        cap = CHECKS[getattr(_models, name)].max_items
        total += cap * growth(section, key, item)[1]
    assert total <= RECORDS_BYTES, total


@pytest.mark.parametrize(("key", "item"), [("ports", {"container_port": 0}), ("networks", {"name": ""}),
                                           ("env_names", ""), ("labels", None)])
def test_anything_else_written_grows_at_most_wire_expansion_times(key: str, item: Any) -> None:
    def document(items: int) -> dict[str, Any]:
        container: dict[str, Any] = {"id": "a"}
        container[key] = {f"k{n}": "" for n in range(items)} if item is None else [item] * items
        return {"agent_id": "a", "timestamp": T, "docker_info": {"containers": [container]}}

    body = len(orjson.dumps(document(60))) - len(orjson.dumps(document(0)))
    assert written(document(60)) - written(document(0)) <= WIRE_EXPANSION * body


def test_times_and_numbers_written_grow_at_most_wire_expansion_times() -> None:
    given = {"agent_id": "a", "timestamp": "2026-01-01T00:00:00.1Z",
             "host_info": {"cpu_info": {"usage": 1e1, "cores": 0}, "uptime_seconds": 0}}
    # Beyond what every report writes, its sections null (a constant, within RECORDS_BYTES).
    fixed = written({"agent_id": "a", "timestamp": T})
    assert written(given) - fixed <= WIRE_EXPANSION * len(orjson.dumps(given))


def test_a_frame_declaring_more_than_a_replica_s_limit_is_refused_by_that_limit() -> None:
    limit = unpacked_limit(1024**2)
    bomb = msgspec.msgpack.encode(_Frame(FORMAT, bomb_declaring(limit + 1), time.time(), False))
    with pytest.raises(BadEnvelope, match=f"inflates beyond {limit} bytes"):
        unpack_report(bomb, limit)


async def test_a_replica_s_limit_follows_its_max_body_size(tmp_path: Any) -> None:
    settings = settings_in(tmp_path)
    settings = attrs.evolve(settings, bus=attrs.evolve(settings.bus, url="nats://127.0.0.1:1"),
                            server=attrs.evolve(settings.server, max_body_size=64 * 1024**2))
    async with open_report_bus(settings) as bus:
        assert bus is not None and bus.max_unpacked == unpacked_limit(64 * 1024**2)
    assert unpacked_limit(64 * 1024**2) == WIRE_EXPANSION * 64 * 1024**2 + RECORDS_BYTES


def test_a_frame_holding_more_than_it_declares_is_refused_within_what_it_declares() -> None:
    frame = zstandard.ZstdCompressor().compress(b" " * (64 * 1024**2))  # declares 64 MiB
    size = frame[6:10]
    assert int.from_bytes(size, "little") == 64 * 1024**2  # the header's content size (4 bytes, after the window)
    lying = frame[:6] + (1024).to_bytes(4, "little") + frame[10:]
    assert zstandard.frame_content_size(lying) == 1024
    with pytest.raises(BadEnvelope, match="not a packed report"):
        unpack_report(msgspec.msgpack.encode(_Frame(FORMAT, lying, time.time(), False)))
