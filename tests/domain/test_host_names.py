"""Host names name nodes and are shown as they are: control characters and
invisible formatting characters (zero-width, bidi overrides) are refused
naming the field, at the HTTP edge and on the report bus; letters of any
script are not."""

from __future__ import annotations

import pytest

from tests.synthetic import host_report
from trioscope.bus import BadEnvelope, pack_report, unpack_report
from trioscope.wire import InvalidDocument, decode_report

REFUSED = ["web\n1", "web\x00", "web\x7f", "web\u0085", "\u202eweb1", "web\u200b1", "web\u2066", "\ufeffweb",
           "web\u061c1", "web\u2028", "web\u00ad1", "web\U000e0041", "db-prod\u034f", "db-prod\ufe0f",
           "db-prod\U000e0100", "db\u180b-prod", "db\u3164prod", "db\uffa0prod", "db\u115fprod"]


@pytest.mark.parametrize("name", REFUSED)
@pytest.mark.parametrize("field", ["hostname", "host_info.hostname"])
def test_a_host_name_with_a_control_or_invisible_character_is_refused_naming_its_field(name: str, field: str) -> None:
    document = host_report(0, timestamp=1_760_000_000.0)
    if field == "hostname":
        document["hostname"] = name
    else:
        document.pop("hostname", None)
        document["host_info"]["hostname"] = name
    with pytest.raises(InvalidDocument) as refused:
        decode_report(document)
    assert str(refused.value).startswith(f"$.{field}: must be a host name without control characters")


@pytest.mark.parametrize("name", ["café", "サーバー1", "web-1.example.com", "a:b", "ӂ" * 256])
def test_names_of_any_script_are_taken(name: str) -> None:
    document = host_report(0, timestamp=1_760_000_000.0)
    document["hostname"] = name
    assert decode_report(document).host_name == name


def test_the_report_bus_refuses_such_a_name_as_the_edge_does() -> None:
    report = decode_report(host_report(0, timestamp=1_760_000_000.0))
    data, _ = pack_report(report.__class__(**{**{a: getattr(report, a) for a in ("agent_id", "timestamp",
                                                 "host_info", "docker_info", "processes_info", "network_info")},
                                              "hostname": "\u202eweb1"}), 1_760_000_000.0, False)
    with pytest.raises(BadEnvelope, match=r"\$\.hostname must be a host name"):
        unpack_report(data)
