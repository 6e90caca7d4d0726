"""The probe's command agent on its own: what it does when the engine, the
server or its own state directory misbehave (each once ended the probe)."""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests.exceptions
import trio

from tests.probe.trioscope_answers import report_taken
from tests.synthetic import host_report
from trioscope.wire import decode_report
from trioscope_probe._agent import (
    POLL_SECONDS, RECOVERY_POLL_SECONDS, CommandAgent, Credentials, load_credentials, save_credentials,
)
from trioscope_probe._refusals import REFUSED_RETRY
from trioscope_probe.cli import _credentials
from trioscope_probe._executor import MAX_OUTPUT, ControlError, _tail, execute
from trioscope_probe._transport import REPORT_MARGIN, encode_report

CREDENTIALS = Credentials("dep", "agent-1", "token-1")


def agent_with(handler: Any) -> CommandAgent:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://server")
    return CommandAgent(client, CREDENTIALS, docker_host=None)


async def test_a_final_report_answered_503_is_sent_again_until_taken(autojump_clock: Any) -> None:
    answers = [503, 503, 200]
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["status"])
        status = answers.pop(0)
        return report_taken(request) if status == 200 else httpx.Response(status, json={})

    await agent_with(handler)._report({"command_id": "cmd_1", "status": "completed", "result": {}})
    assert seen == ["completed"] * 3 and answers == []


async def test_a_poll_answered_with_a_proxy_page_is_a_control_error() -> None:
    agent = agent_with(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(ControlError, match="without a JSON object"):
        await agent._poll()


def test_an_engine_that_stops_answering_is_a_control_error() -> None:
    class HungEngine:
        class containers:  # noqa: N801 - the docker client's attribute
            @staticmethod
            def get(_target: str) -> Any:
                raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=50)")

    with pytest.raises(ControlError, match="did not answer: ReadTimeout"):
        execute(HungEngine(), "docker.stop", {"container": "web"})  # type: ignore[arg-type]


def test_output_is_kept_to_its_last_bytes_as_it_streams() -> None:
    chunks = (bytes([65 + i % 26]) * 10_000 for i in range(100))  # 1 MB in 10 KB pieces
    kept = _tail(chunks)
    assert kept["bytes"] == 1_000_000 and kept["truncated"] is True
    assert len(kept["output"]) == MAX_OUTPUT and kept["output"].endswith("V" * 10_000)


@pytest.mark.parametrize("content", ["[]", "{not json", '{"deployment_hash": "dep"}'])
def test_a_damaged_credentials_file_is_named_in_a_control_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    path.chmod(0o600)  # (one others may read is refused as such: tests/probe/test_state_dir.py)
    with pytest.raises(ControlError, match=str(path)):
        load_credentials(path, "dep")
    assert load_credentials(tmp_path / "absent.json", "dep") is None


def test_credentials_are_0600_even_over_a_leftover_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    leftover = path.with_suffix(".partial")
    leftover.write_text("old")
    os.chmod(leftover, 0o644)
    save_credentials(path, CREDENTIALS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials(path, "dep") == CREDENTIALS


def test_a_report_too_large_for_the_server_leaves_connections_out_listening_ones_last() -> None:
    document = host_report(1, timestamp=1_800_000_000.0, processes=50, connections=2_000, peers=[2])
    report = decode_report(document)
    listening = {(c.local_port, c.pid) for c in report.network_info.connections if c.state == "LISTEN"}
    assert listening and encode_report(report)[1] == 0
    limit = len(json.dumps(document)) // 4
    body, dropped = encode_report(report, limit=limit)
    raw = gzip.decompress(body)
    sent = json.loads(raw)
    kept = sent["network_info"]["connections"]
    assert len(raw) <= limit - min(REPORT_MARGIN, limit // 8) and dropped > 0 and len(kept) + dropped == len(report.network_info.connections)
    assert listening <= {(c["local_port"], c["pid"]) for c in kept}
    assert len(sent["processes_info"]["processes"]) == 50


async def test_a_decommissioned_agents_poll_is_logged_once_and_asked_again_rarely(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    polls = []

    def handler(request: httpx.Request) -> httpx.Response:
        polls.append(trio.current_time())
        return httpx.Response(410, json={"error": {"code": "agent_decommissioned", "message": "decommissioned"}})

    with trio.move_on_after(3600):
        await agent_with(handler)._poll_loop()
    refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refused) == 1 and "410 agent_decommissioned" in refused[0] and "--enrollment-token" in refused[0]
    assert len(polls) <= 3600 / REFUSED_RETRY + 1


async def test_a_poll_refused_for_a_clock_off_is_logged_once_and_asked_again_with_backoff(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    """It waited REFUSED_RETRY and told the operator to enroll the probe again."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    polls = []

    def handler(request: httpx.Request) -> httpx.Response:
        polls.append(trio.current_time())
        return httpx.Response(401, json={"error": {"code": "clock_skew", "message": "300 s away"}})

    with trio.move_on_after(REFUSED_RETRY):
        await agent_with(handler)._poll_loop()
    refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refused) == 1 and "401 clock_skew" in refused[0] and "retrying with backoff" in refused[0]
    assert "--enrollment-token" not in refused[0]
    assert len(polls) > 3  # backoff, capped at a minute


async def test_a_final_report_refused_for_a_clock_off_is_sent_again_until_taken(autojump_clock: Any) -> None:
    answers = [(401, "clock_skew"), (401, "clock_skew"), (200, "")]

    def handler(request: httpx.Request) -> httpx.Response:
        status, code = answers.pop(0)
        if status == 200:
            return report_taken(request)
        return httpx.Response(status, json={"error": {"code": code, "message": "m"}})

    await agent_with(handler)._report({"command_id": "cmd_1", "status": "completed", "result": {}})
    assert answers == []


async def test_polling_is_said_to_work_again_as_soon_as_a_poll_is_accepted(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Not when the next long poll ends, a minute later: after a failure the
    probe asks with a short poll, whose answer says the server is back."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    asked: list[str] = []

    class Enough(Exception):
        pass

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["timeout"])
        if len(asked) <= 3:
            raise httpx.ConnectError("connection refused", request=request)
        if len(asked) == 5:  # the long poll after the recovery: enough seen (a mock answers without a checkpoint)
            raise Enough
        return httpx.Response(204)

    with pytest.raises(Enough):
        await agent_with(handler)._poll_loop()
    assert asked == [str(POLL_SECONDS), str(RECOVERY_POLL_SECONDS), str(RECOVERY_POLL_SECONDS),
                     str(RECOVERY_POLL_SECONDS), str(POLL_SECONDS)]
    assert [r.getMessage() for r in caplog.records][-1] == "command polling works again"


async def test_a_new_enrollment_token_enrolls_again_and_replaces_the_saved_credentials(tmp_path: Path) -> None:
    """A decommissioned probe restarted with a fresh token kept its dead credentials."""
    enrolled = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = json.loads(request.content)["enrollment_token"]
        enrolled.append(token)
        return httpx.Response(201, json={"agent_id": f"agent-{len(enrolled)}", "agent_token": f"secret-{token}"})

    state = tmp_path / "fresh" / "state"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://server") as client:
        def args(token: str | None) -> argparse.Namespace:
            return argparse.Namespace(state_dir=str(state), deployment_hash="dep", enrollment_token=token,
                                      server="http://server")

        first = await _credentials(client, args("tok-1"), ("docker.inspect",))
        assert stat.S_IMODE(state.stat().st_mode) == 0o700  # it holds agent tokens
        assert await _credentials(client, args("tok-1"), ()) == first  # a restart with the same token
        assert await _credentials(client, args(None), ()) == first
        second = await _credentials(client, args("tok-2"), ())
    assert enrolled == ["tok-1", "tok-2"] and second.agent_id == "agent-2"
    assert load_credentials(state / "credentials.json", "dep") == second


async def test_a_final_report_is_sent_again_while_the_server_is_away_for_ten_minutes(autojump_clock: Any) -> None:
    """Twelve attempts were ~100 s: a server restarted or upgraded for longer
    lost the result of a command that had run (a reviewer's: the container
    stopped, the command later ``timed out``)."""
    sent_at: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(trio.current_time())
        return httpx.Response(503, json={}) if trio.current_time() < start + 600 else report_taken(request)

    start = trio.current_time()
    await agent_with(handler)._report({"command_id": "cmd_1", "status": "completed", "result": {}})
    assert sent_at[-1] >= start + 600 and len(sent_at) > 12


async def test_a_final_report_refused_for_a_full_disk_is_sent_again_after_its_retry_after(
        autojump_clock: Any) -> None:
    """The server answers 507 insufficient_storage while its disk is full: a
    final report so refused was taken as refused for good and dropped."""
    sent_at: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(trio.current_time())
        if len(sent_at) < 3:
            return httpx.Response(507, headers={"Retry-After": "60"},
                                  json={"error": {"code": "insufficient_storage"}})
        return report_taken(request)

    start = trio.current_time()
    await agent_with(handler)._report({"command_id": "cmd_1", "status": "completed", "result": {}})
    assert len(sent_at) == 3 and sent_at[1] - start >= 60 and sent_at[2] - sent_at[1] >= 60


async def test_a_final_report_the_probe_stopped_sending_is_kept_and_sent_when_it_starts_again(
        tmp_path: Path) -> None:
    from tests.waiting import eventually
    from trioscope_probe._pending import PendingReports

    pending = PendingReports(tmp_path / "pending-reports")
    stopped = trio.Event()

    async def away(request: httpx.Request) -> httpx.Response:
        stopped.set()
        await trio.sleep_forever()  # the server away: the probe is stopped meanwhile (SIGTERM, or kill -9)
        raise AssertionError

    client = httpx.AsyncClient(transport=httpx.MockTransport(away), base_url="http://server")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(CommandAgent(client, CREDENTIALS, docker_host=None, pending=pending)._report,
                           {"command_id": "cmd_1", "status": "completed", "result": {"ok": True}})
        await stopped.wait()
        nursery.cancel_scope.cancel()
    assert len(list((tmp_path / "pending-reports").iterdir())) == 1
    reports: list[dict[str, Any]] = []

    async def back(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/report"):
            reports.append(json.loads(request.content))
            return report_taken(request)
        await trio.sleep(60)  # a long poll, held
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(back), base_url="http://server")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(CommandAgent(client, CREDENTIALS, docker_host=None, pending=pending).run)

        async def sent_and_dropped() -> bool:
            return bool(reports) and not list((tmp_path / "pending-reports").iterdir())
        await eventually(sent_and_dropped)
        nursery.cancel_scope.cancel()
    assert [(r["command_id"], r["result"]) for r in reports] == [("cmd_1", {"ok": True})]


async def test_a_kept_report_the_server_refuses_for_good_is_dropped(tmp_path: Path) -> None:
    from trioscope_probe._pending import PendingReports

    pending = PendingReports(tmp_path)
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(
        409, json={"error": {"code": "report_conflict", "message": "the command timed out"}})),
        base_url="http://server")
    await CommandAgent(client, CREDENTIALS, docker_host=None, pending=pending)._report(
        {"command_id": "cmd_1", "status": "failed", "error": "x"})
    assert list(tmp_path.iterdir()) == []


async def test_commands_that_time_out_on_a_stuck_engine_leave_the_collections_threads_alone(
        autojump_clock: Any) -> None:
    """Each timed-out command leaves its thread waiting on the engine: 42 took
    every thread of Trio's default pool, which the collection needs, and no
    report went for a minute (a reviewer's stubborn container)."""
    import threading

    from trioscope_probe._agent import COMMAND_THREADS

    released = threading.Event()
    agent = agent_with(report_taken)
    agent._execute = lambda kind, parameters: released.wait(30) and {}  # type: ignore[method-assign]
    try:
        for index in range(COMMAND_THREADS + 4):
            await agent._run_command({"command_id": f"cmd_{index}", "type": "docker.stop",
                                      "parameters": {"container": "c1"}, "timeout_seconds": 1})
        assert trio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
        assert agent.threads.borrowed_tokens == COMMAND_THREADS
    finally:
        released.set()


def test_a_report_of_containers_with_large_labels_is_cut_to_their_identity_before_any_container_goes() -> None:
    """300 containers of ten 2 KiB labels were refused (413, the agent's memory
    budget) at every cycle, the host with them: connections and processes were
    all that the probe knew to leave out."""
    import attrs

    from trioscope_probe._transport import MEMORY_BUDGET, SHORT_LABEL

    report = decode_report(host_report(1, timestamp=1_800_000_000.0, processes=5, connections=5, containers=100))
    assert report.docker_info is not None
    labelled = [attrs.evolve(c, labels={f"label.{k}": "v" * 2048 for k in range(10)} | {"app": "shop"},
                             env={"PATH": "/bin"}, env_names=["PATH"])
                for c in report.docker_info.containers]
    report = attrs.evolve(report, docker_info=attrs.evolve(report.docker_info, containers=labelled))
    body, dropped = encode_report(report)
    sent = json.loads(gzip.decompress(body))
    containers = sent["docker_info"]["containers"]
    assert len(containers) == 100  # each cut short (connections and processes first), none left out
    assert dropped == 100 + len(report.network_info.connections) + len(report.processes_info.processes) - len(
        sent["network_info"]["connections"]) - len(sent["processes_info"]["processes"])  # each counted once
    assert sent["left_out"]["containers"] == 100 and sum(sent["left_out"].values()) == dropped
    assert all(c["labels"]["app"] == "shop" and len(c["labels"]["label.0"]) == SHORT_LABEL for c in containers)
    assert MEMORY_BUDGET.footprint(decode_report(sent), len(gzip.decompress(body))).bytes <= MEMORY_BUDGET.limit


async def test_a_servers_retry_after_is_waited_before_the_next_request(autojump_clock: Any) -> None:
    """The probe's backoff started at 1 s whatever the server asked: 18 requests
    in 15 s to a server that answered 429 with Retry-After: 60 (a reviewer's)."""
    sent_at: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(trio.current_time())
        if len(sent_at) == 1:
            return httpx.Response(429, headers={"Retry-After": "60"}, json={"error": {"code": "rate_limited"}})
        return report_taken(request)

    start = trio.current_time()
    await agent_with(handler)._report({"command_id": "cmd_1", "status": "completed", "result": {}})
    assert len(sent_at) == 2 and sent_at[1] - start >= 60


def test_a_retry_after_of_digits_python_takes_for_digits_is_no_wait_not_a_crash() -> None:
    """``str.isdigit`` takes "²", which ``float`` refuses: a 503 with that header ended the probe."""
    from trioscope_probe._refusals import retry_after

    request = httpx.Request("GET", "http://server/x")
    for raw, expected in ((b"\xb2", None), (b"\xc2\xb2", None), (b"12", 12.0), (b"soon", None), (b"99999", 300.0)):
        answer = httpx.Response(503, headers=[(b"Retry-After", raw)], request=request)
        assert retry_after(answer) == expected, raw


async def test_a_progress_report_is_given_up_after_minutes_not_the_final_reports_patience(
        autojump_clock: Any) -> None:
    """The command waits for its ``executing`` report before it runs: tried for
    15 minutes, a command ran up to 15 minutes after it was sent (a reviewer's)."""
    from trioscope_probe._agent import PROGRESS_PATIENCE, REPORT_PATIENCE

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={})

    start = trio.current_time()
    await agent_with(handler)._report({"command_id": "cmd_1", "status": "executing", "progress": 0})
    assert PROGRESS_PATIENCE <= trio.current_time() - start < PROGRESS_PATIENCE + 60 < REPORT_PATIENCE


@pytest.mark.parametrize("first", [
    httpx.Response(404, text="<html>default backend - 404</html>"),
    httpx.Response(301, headers={"Location": "https://trioscope.example.com/api/v1/agent/commands/report"}),
    httpx.Response(404, json={"error": {"code": "not_found", "message": "no such route"}}),
    httpx.Response(403, json={"error": {"code": "wrong_deployment", "message": "another deployment's"}}),
    httpx.Response(401, json={"error": {"code": "invalid_token", "message": "unknown token"}}),
    httpx.Response(400, text="Bad Request"),
    httpx.Response(200, text="<html>Sign in to the hotel Wi-Fi</html>", headers={"Content-Type": "text/html"}),
    httpx.Response(204),
    httpx.Response(200, json={}),
    httpx.Response(200, json={"item": {"accepted": True, "command_id": "cmd_0"}}),  # another command's
], ids=["proxy-404", "redirect", "no-route", "forbidden", "credentials", "proxy-400", "portal-200", "proxy-204",
        "other-json-200", "other-command-200"])
async def test_a_final_report_answered_by_anything_but_the_servers_refusal_of_it_is_kept_until_taken(
        first: httpx.Response, autojump_clock: Any, tmp_path: Path) -> None:
    """A proxy's 404 page to the report deleted it from pending-reports: never
    sent again, even after a restart, and its command timed out although it
    had run (a reviewer's)."""
    from trioscope_probe._pending import PendingReports

    pending = PendingReports(tmp_path)
    kept_when_sent: list[int] = []

    def server(request: httpx.Request) -> httpx.Response:
        kept_when_sent.append(len(list(tmp_path.iterdir())))
        return first if len(kept_when_sent) == 1 else report_taken(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server")
    await CommandAgent(client, CREDENTIALS, docker_host=None, pending=pending)._report(
        {"command_id": "cmd_1", "status": "completed", "result": {}})
    assert kept_when_sent == [1, 1]  # still kept when sent again, after the first answer
    assert list(tmp_path.iterdir()) == []  # and dropped once taken


@pytest.mark.parametrize("refusal", [
    httpx.Response(413, text="<html>413 Request Entity Too Large</html>"),  # a proxy's: too large for it, for ever
    httpx.Response(409, json={"error": {"code": "report_conflict", "message": "timed out meanwhile"}}),
], ids=["proxy-413", "conflict"])
async def test_a_final_report_refused_for_good_is_dropped(refusal: httpx.Response, autojump_clock: Any,
                                                           tmp_path: Path) -> None:
    """Kept, a report a proxy found too large was sent again at every start, for ever."""
    from trioscope_probe._pending import PendingReports

    sent: list[int] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        return refusal

    client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server")
    await CommandAgent(client, CREDENTIALS, docker_host=None, pending=PendingReports(tmp_path))._report(
        {"command_id": "cmd_1", "status": "completed", "result": {}})
    assert sent == [1] and list(tmp_path.iterdir()) == []


async def test_a_poll_answered_at_once_without_a_command_is_asked_again_with_backoff_and_said_once(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A server answering the long poll at once (204, or 200 {"item": null}) was
    polled ~320 times a second, each signed, with nothing logged (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    polls: list[str] = []

    class Spinning(Exception):
        pass

    def handler(request: httpx.Request) -> httpx.Response:
        polls.append(request.url.params["timeout"])
        if len(polls) > 1000:
            raise Spinning  # polled without a pause (a mock answers without a checkpoint)
        return httpx.Response(204) if len(polls) % 2 else httpx.Response(200, json={"item": None})

    with trio.move_on_after(600):
        await agent_with(handler)._poll_loop()
    assert 10 < len(polls) < 100, len(polls)  # backoff up to a minute apart, not a spin
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "answers the command poll at once" in said[0], said


@pytest.mark.parametrize(("field", "value", "says"), [
    ("timeout_seconds", 1e999, "timeout_seconds must be a number of seconds from 1 to 604800, not 'inf'"),
    ("timeout_seconds", float("nan"), "not 'nan'"), ("timeout_seconds", 0, "not '0'"),
    ("timeout_seconds", 604_801, "not '604801'"), ("timeout_seconds", "300", "not '300'"),
    ("timeout_seconds", True, "not 'True'"), ("type", ["docker.stop"], "type must be a command type (a string)"),
])
async def test_a_command_with_a_malformed_field_fails_before_it_acts(field: str, value: Any, says: str) -> None:
    """A timeout_seconds of 1e999 raised OverflowError and nothing was reported (a reviewer's)."""
    reports: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        reports.append(json.loads(request.content))
        return report_taken(request)

    agent = agent_with(server)
    agent._execute = lambda kind, parameters: pytest.fail("ran")  # type: ignore[method-assign]
    await agent._run_command({"command_id": "cmd_1", "type": "docker.stop", "parameters": {"container": "c1"},
                              "timeout_seconds": 30, field: value})
    assert [(r["command_id"], r["status"]) for r in reports] == [("cmd_1", "failed")]
    assert says in reports[0]["error"], reports[0]["error"]


@pytest.mark.parametrize("command_id", [12345, "", "x" * 257, ["cmd_1"]])
async def test_a_command_whose_id_is_no_id_is_dropped_and_said_before_it_acts(
        command_id: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A command_id of 12345 stopped the container, then crashed the agent before the final report."""
    requests: list[httpx.Request] = []
    agent = agent_with(lambda request: requests.append(request) or report_taken(request))
    agent._execute = lambda kind, parameters: pytest.fail("ran")  # type: ignore[method-assign]
    await agent._run_command({"command_id": command_id, "type": "docker.stop", "parameters": {"container": "c1"}})
    assert requests == []
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and "command_id is no id" in said[0], said


async def test_a_command_within_the_servers_limits_runs() -> None:
    reports: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        reports.append(json.loads(request.content))
        return report_taken(request)

    agent = agent_with(server)
    agent._execute = lambda kind, parameters: {"ran": kind}  # type: ignore[method-assign]
    await agent._run_command({"command_id": "c" * 135, "type": "docker.stop", "parameters": {"container": "c1"},
                              "timeout_seconds": 604_800})
    assert [r["status"] for r in reports] == ["executing", "completed"] and reports[-1]["result"] == {
        "ran": "docker.stop"}
