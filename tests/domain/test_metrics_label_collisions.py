"""Write bodies whose labels would collide: two names that become one label,
or a server label pushed onto the ``exported_`` name a writer also gave. Such
a point used to keep one value without a word; it is refused (400), naming both."""

from __future__ import annotations

import pytest

from trioscope.domain.metrics import BadWrite, WriteLimits, parse_json_points, parse_line_protocol

NOW = 1_700_000_000.0
LIMITS = WriteLimits(max_points=100, max_labels=10, max_label_name_bytes=32, max_label_value_bytes=64)


def _lines(body: bytes) -> list[dict[str, str]]:
    samples = parse_line_protocol(body, precision="s", now=NOW, latest=NOW + 300, tenant="acme",
                                  deployment_hash="d1", limits=LIMITS)
    return [dict(sample.labels) for sample in samples]


def _points(points: list[dict[str, object]]) -> list[dict[str, str]]:
    samples = parse_json_points({"points": points}, now=NOW, latest=NOW + 300, tenant="acme", deployment_hash="d1",
                                limits=LIMITS)
    return [dict(sample.labels) for sample in samples]


def test_line_protocol_tags_that_become_one_label_are_refused_naming_both() -> None:
    with pytest.raises(BadWrite, match=r"line 2: tags 'a\.b' and 'a_b' are both label 'a_b'"):
        _lines(b"m f=1\nm,a.b=1,a_b=2 f=1\n")


def test_line_protocol_tenant_with_exported_tenant_is_refused() -> None:
    with pytest.raises(BadWrite, match="'tenant' and 'exported_tenant' are both label 'exported_tenant'"):
        _lines(b"m,tenant=other,exported_tenant=z f=1")
    with pytest.raises(BadWrite, match="'deployment_hash' and 'exported_deployment_hash'"):
        _lines(b"m,deployment_hash=x,exported_deployment_hash=y f=1")


def test_line_protocol_tag_named_like_the_metric_name_is_refused() -> None:
    with pytest.raises(BadWrite, match="__name__"):
        _lines(b"m,__name__=other f=1")


def test_line_protocol_fields_that_become_one_metric_are_refused() -> None:
    with pytest.raises(BadWrite, match=r"fields 'a\.b' and 'a_b' are both metric 'm_a_b'"):
        _lines(b"m a.b=1,a_b=2")


def test_line_protocol_fields_of_two_lines_that_become_one_point_are_refused_naming_both_lines() -> None:
    with pytest.raises(BadWrite, match=r"line 2: field 'c' of 'm_b' and field 'b_c' of 'm' \(line 1\) are both "
                                       "metric 'm_b_c'"):
        _lines(b"m b_c=1 1700000000\nm_b c=2 1700000000\n")
    with pytest.raises(BadWrite, match="line 3: .* are both metric 'disk_io_reads'"):
        _lines(b"disk.io reads=1\nother x=1\ndisk_io reads=2\n")  # without timestamps: both now


def test_line_protocol_points_of_one_field_at_two_times_or_written_again_are_kept() -> None:
    assert len(_lines(b"m b_c=1 1700000000\nm_b c=2 1700000001\nm b_c=3 1700000000\n")) == 3
    assert len(_lines(b"m,h=a b_c=1\nm_b,h=b c=2\n")) == 2  # other tags: other series


def test_line_protocol_labels_that_do_not_collide_are_kept() -> None:
    (labels,) = _lines(b"m,tenant=other,a.b=1,exported_x=2 f=1")
    assert labels == {"__name__": "m_f", "tenant": "acme", "deployment_hash": "d1", "exported_tenant": "other",
                      "a_b": "1", "exported_x": "2"}


def test_json_tenant_with_exported_tenant_is_refused_naming_the_path() -> None:
    with pytest.raises(BadWrite, match=r"\$\.points\[1\]\.labels\.exported_tenant: labels 'tenant' and "
                                       "'exported_tenant'"):
        _points([{"metric": "m", "value": 1},
                 {"metric": "m", "labels": {"tenant": "other", "exported_tenant": "z"}, "value": 1}])


def test_json_a_writers_tenant_alone_is_kept_as_exported_tenant() -> None:
    (labels,) = _points([{"metric": "m", "labels": {"tenant": "other"}, "value": 1}])
    assert labels["exported_tenant"] == "other" and labels["tenant"] == "acme"
    (labels,) = _points([{"metric": "m", "labels": {"tenant": "", "exported_tenant": "z"}, "value": 1}])
    assert labels["exported_tenant"] == "z"  # an empty value is no label: nothing collides


@pytest.mark.parametrize("raw", ["20261206T120000Z", "2026-W49-5T12:00:00Z", "2026-12-06T12:00:00", "2026-12-06"])
def test_json_timestamps_other_than_rfc_3339_are_refused_naming_the_path(raw: str) -> None:
    with pytest.raises(BadWrite, match=r"\$\.points\[0\]\.timestamp: must be unix seconds or an RFC 3339 time"):
        parse_json_points({"points": [{"metric": "m", "value": 1, "timestamp": raw}]}, now=NOW, latest=NOW + 300,
                          tenant="acme", deployment_hash="d1", limits=LIMITS)


def test_json_rfc_3339_timestamps_with_go_nanoseconds_and_offsets_are_read() -> None:
    (sample,) = parse_json_points({"points": [{"metric": "m", "value": 1,
                                                "timestamp": "2023-11-14T23:13:20.123456789+01:00"}]},
                                  now=NOW, latest=NOW + 300, tenant="acme", deployment_hash="d1", limits=LIMITS)
    assert abs(sample.timestamp - (NOW + 0.123456)) < 1e-6  # 22:13:20Z
