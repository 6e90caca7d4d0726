"""A body is read only as a media type its route takes: a page in a browser
posts ``text/plain`` and form bodies cross-origin without asking first, and
read as JSON they reached unprotected routes (reports, registrations)."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.synthetic import host_report

REPORT = orjson.dumps(host_report(1, timestamp=time.time()))


@pytest.mark.parametrize("media", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
async def test_a_report_sent_as_a_browser_form_or_text_is_refused_415(client, media: str) -> None:
    answer = await client.post("/api/v1/reports", data=REPORT, headers={"Content-Type": media})
    assert answer.status_code == 415
    error = (await answer.get_json())["error"]
    assert error["code"] == "unsupported_media_type" and error["details"]["accepted"] == ["application/json"]


@pytest.mark.parametrize("headers", [{"Content-Type": "application/json"},
                                     {"Content-Type": "application/json; charset=utf-8"},
                                     {"Content-Type": "application/vnd.trioscope+json"},
                                     {}], ids=["json", "json-charset", "a-json-kind", "none"])
async def test_a_report_sent_as_json_or_without_a_type_is_taken(client, headers: dict[str, str]) -> None:
    answer = await client.post("/api/v1/reports", data=REPORT, headers=headers)
    assert answer.status_code == 202, await answer.get_data()


async def test_a_route_that_takes_forms_takes_them(client) -> None:
    """The PromQL reads take the form Grafana posts."""
    answer = await client.post("/api/v1/query", data=b"query=up",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code != 415
