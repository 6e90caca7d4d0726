"""Alerts reach users as system_alert events on a real /ws/user socket: from
Alertmanager's webhook, and from the server's own AgentOffline rule (once
when it fires, once when it resolves)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh
from tests.runtime_counts import processed
from tests.server_process import ServerProcess, run_cli
from tests.waiting import eventually

SECRET = "alertmanager-webhook-secret-for-tests-0123456789"
WEBHOOK = "/api/v1/alerts/webhook"


def user_socket(server: ServerProcess, operator: Operator) -> str:
    token = server.user_token(operator.user_id, operator.tenant, operator.role)
    return server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}?token={token}"


async def next_alert(ws: Any, deadline: float = 15.0) -> dict[str, Any]:
    with trio.fail_after(deadline):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == "system_alert":
                return event


async def nothing_else(ws: Any) -> None:
    """No alert was queued on the socket: whatever it had came before this pong."""
    await ws.send_message('{"type":"ping"}')
    with trio.fail_after(10):
        while (event := json.loads(await ws.get_message())) != {"type": "pong"}:
            assert event["type"] != "system_alert", event


async def active(client: httpx.AsyncClient, server: ServerProcess, user: Operator) -> list[dict[str, Any]]:
    """``GET /api/v1/alerts`` as ``user``: their tenant's alerts firing now."""
    answer = await client.get(f"{server.base_url}/api/v1/alerts", headers=user.auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["alerts"]  # type: ignore[no-any-return]


async def agent_status(client: httpx.AsyncClient, operator: Operator, agent: Any) -> str:
    """The status the agent's deployment shows for it (the agent alone in its deployment)."""
    found = await client.get(operator.url(agent.deployment_hash), headers=operator.auth)
    return str(found.json()["agents"][0]["status"])


async def offline(client: httpx.AsyncClient, operator: Operator, agent: Any) -> bool:
    return await agent_status(client, operator, agent) == "offline"


def webhook_body(tenant: str, status: str, **labels: str) -> dict[str, Any]:
    alert = {"status": status, "labels": {"alertname": "DiskFull", "severity": "critical", "tenant": tenant, **labels},
             "annotations": {"summary": "Disk full on web-1", "description": "/var is 99% full"},
             "startsAt": "2026-12-02T10:00:00.123456789Z",
             "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-02T10:05:00Z",
             "generatorURL": "http://prometheus:9090/graph", "fingerprint": "c0ffee0123456789"}
    return {"version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "truncatedAlerts": 0, "status": status,
            "receiver": "trioscope", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": [alert]}


async def test_alertmanager_webhook_reaches_the_tenants_users_and_the_audit_log() -> None:
    with ServerProcess(env={"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}) as server:
        url = server.base_url + WEBHOOK
        auth = {"Authorization": f"Bearer {SECRET}"}
        viewer = Operator(server, fresh("user"), fresh("tenant"), "VIEWER")
        other = Operator(server, fresh("user"), fresh("tenant"), "ADMIN")
        async with httpx.AsyncClient(timeout=30) as client, \
                open_websocket_url(user_socket(server, viewer)) as mine, \
                open_websocket_url(user_socket(server, other)) as theirs:
            answer = await client.post(url, json=webhook_body(viewer.tenant, "firing"), headers=auth)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"delivered": 1, "skipped_without_tenant": 0}
            firing = await next_alert(mine)
            assert {k: firing[k] for k in ("alert", "status", "severity", "message", "source", "fingerprint")} == {
                "alert": "DiskFull", "status": "firing", "severity": "critical", "message": "Disk full on web-1",
                "source": "alertmanager", "fingerprint": "c0ffee0123456789"}
            assert firing["labels"]["tenant"] == viewer.tenant and firing["ends_at"] is None
            assert await active(client, server, viewer) == [firing]  # for a page opened later
            assert await active(client, server, other) == []

            answer = await client.post(url, json=webhook_body(viewer.tenant, "resolved"), headers=auth)
            assert answer.status_code == 200, answer.text
            resolved = await next_alert(mine)
            assert (resolved["status"], resolved["ends_at"]) == ("resolved", "2026-12-02T10:05:00Z")
            assert await active(client, server, viewer) == []
            await nothing_else(theirs)  # another tenant's users heard nothing

            # No tenant label: nobody to tell.
            unrouted = webhook_body(viewer.tenant, "firing")
            del unrouted["alerts"][0]["labels"]["tenant"]
            assert (await client.post(url, json=unrouted, headers=auth)).json() == {
                "delivered": 0, "skipped_without_tenant": 1}
            await nothing_else(mine)

            # Refusals: a wrong secret, a bad body (naming the field), too many alerts.
            assert (await client.post(url, json=webhook_body(viewer.tenant, "firing"),
                                      headers={"Authorization": "Bearer nope"})).status_code == 401
            bad = webhook_body(viewer.tenant, "firing")
            bad["alerts"][0]["status"] = "on fire"
            refused = await client.post(url, json=bad, headers=auth)
            assert refused.status_code == 400 and "$.alerts[0].status" in refused.text, refused.text
            bad = webhook_body(viewer.tenant, "firing")
            bad["alerts"][0]["startsAt"] = "x"
            refused = await client.post(url, json=bad, headers=auth)
            assert refused.status_code == 400 and "$.alerts[0].startsAt" in refused.text, refused.text
            assert "RFC 3339" in refused.text
            bad = webhook_body(viewer.tenant, "resolved")
            bad["alerts"][0]["endsAt"] = "2026-13-02T10:05:00Z"  # the pattern's shape, no date
            refused = await client.post(url, json=bad, headers=auth)
            assert refused.status_code == 400 and "$.alerts[0].endsAt" in refused.text, refused.text
            assert "not a valid date" in refused.text
            many = webhook_body(viewer.tenant, "firing")
            many["alerts"] = many["alerts"] * 1001
            refused = await client.post(url, json=many, headers=auth)
            assert refused.status_code in (400, 413), refused.text

            admin = Operator(server, fresh("admin"), viewer.tenant, "ADMIN")
            audit = await client.get(f"{server.base_url}/api/v1/audit", params={"action": "alert.firing"},
                                     headers=admin.auth)
            assert audit.status_code == 200, audit.text
            entries = audit.json()["entries"]
            assert [(e["actor"], e["resource_id"], e["details"]["alert"]) for e in entries] == [
                ("alertmanager", "c0ffee0123456789", "DiskFull")]
            # The wrong secret above is audited as every credential refused (in no tenant's log).
            async def refused_secret() -> list[dict[str, Any]] | None:
                done = run_cli(["audit", "--unattributed", "--json", "--action", "auth.failure", "--data-dir",
                                server.data_dir], env=server.env)
                assert done.returncode == 0, done.stderr
                rows = [json.loads(line) for line in done.stdout.splitlines()]
                return [r for r in rows if r["details"].get("credential") == "alerts.webhook_secret"] or None

            assert (await eventually(refused_secret))[0]["actor"] == "anonymous"


async def test_builtin_agent_offline_fires_once_and_resolves_when_the_agent_is_heard_from() -> None:
    args = ["--alert-agent-offline-after", "1s", "--alert-evaluation-interval", "100ms"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.post(server.base_url + WEBHOOK, json={})).status_code == 404  # no secret: off
            operator = Operator(server, fresh("user"), fresh("tenant"))
            admin = Operator(server, fresh("admin"), fresh("tenant"), "ADMIN")
            async with open_websocket_url(user_socket(server, operator)) as ws:
                agent = await enroll(client, server, operator)  # then silent
                firing = await next_alert(ws)
                assert (firing["alert"], firing["status"], firing["severity"], firing["source"]) == (
                    "AgentOffline", "firing", "critical", "trioscope")
                assert firing["labels"]["agent"] == agent.agent_id
                assert firing["labels"]["deployment_hash"] == agent.deployment_hash
                assert await active(client, server, operator) == [firing]

                # Many evaluations later, still one event: the alert is told once per transition.
                async def evaluations() -> int:
                    runtime = (await client.get(f"{server.base_url}/api/v1/runtime", headers=admin.auth)).json()
                    return processed(runtime, "/root/alerts")

                start = await evaluations()
                await eventually(lambda: _at_least(evaluations, start + 10))
                await nothing_else(ws)

                assert await agent.poll(client, timeout=1) is None  # heard from again
                resolved = await next_alert(ws)
                assert (resolved["alert"], resolved["status"], resolved["fingerprint"]) == (
                    "AgentOffline", "resolved", firing["fingerprint"])
                assert resolved["ends_at"] is not None


async def test_an_agent_running_a_command_it_was_handed_is_not_offline_until_its_timeout() -> None:
    """The status agent sends nothing while it runs a command (a deploy of
    minutes): it was shown offline after the heartbeat timeout and a critical
    AgentOffline fired, while it worked. Its command's timeout bounds that."""
    args = ["--alert-agent-offline-after", "2s", "--alert-evaluation-interval", "100ms", "--heartbeat-timeout", "2s"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            async with open_websocket_url(user_socket(server, operator)) as ws:
                busy = await enroll(client, server, operator)
                idle = await enroll(client, server, operator)
                created = await operator.command(client, busy.deployment_hash, timeout_seconds=120)
                polled = await busy.poll(client, timeout=5)
                assert polled is not None and polled.command_id == created["command_id"]
                assert await idle.poll(client, timeout=1) is None
                # Both silent from here: the idle one goes offline, the busy one does not.
                while (alert := await next_alert(ws))["labels"]["agent"] != idle.agent_id:
                    assert alert["labels"]["agent"] != busy.agent_id, alert
                assert alert["status"] == "firing"
                await eventually(lambda: offline(client, operator, idle), deadline=20)
                assert await agent_status(client, operator, busy) == "online"


async def test_an_agent_is_heard_from_while_any_command_it_was_handed_runs_and_not_after() -> None:
    """Two commands handed to one agent: its outcome of the first (over HTTP)
    leaves it heard from while the second runs; its outcome of the second
    (over its socket, then closed) lets it go offline when silent, not only at
    the command's timeout (120 s here)."""
    args = ["--alert-agent-offline-after", "2s", "--alert-evaluation-interval", "100ms", "--heartbeat-timeout", "2s"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            busy = await enroll(client, server, operator)
            handed = []
            for _ in range(2):
                created = await operator.command(client, busy.deployment_hash, timeout_seconds=120)
                polled = await busy.poll(client, timeout=5)
                assert polled is not None and polled.command_id == created["command_id"]
                handed.append(polled.command_id)
            assert (await busy.report(client, handed[0], "success")).status_code == 200
            # A witness silent from a moment after the busy agent's last request: once it
            # is offline, so would the busy one be were its second command not running.
            witness = await enroll(client, server, operator)
            assert await witness.poll(client, timeout=1) is None

            await eventually(lambda: offline(client, operator, witness), deadline=20)
            assert await agent_status(client, operator, busy) == "online"
            async with busy.socket() as socket:
                ack = await socket.report(busy.report_body(handed[1], "success"))
                assert ack["status"] == "accepted", ack
            await eventually(lambda: offline(client, operator, busy), deadline=20)


async def next_of(ws: Any, kind: str, deadline: float = 15.0) -> dict[str, Any]:
    with trio.fail_after(deadline):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == kind:
                return event


async def test_the_users_hear_their_agent_go_offline_and_come_back_online() -> None:
    """The seed's ``agent_status`` beside AgentOffline: ``offline`` as the agent
    goes silent past the threshold, ``online`` when it is heard from again."""
    args = ["--alert-agent-offline-after", "1s", "--alert-evaluation-interval", "100ms"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            async with open_websocket_url(user_socket(server, operator)) as ws:
                agent = await enroll(client, server, operator)  # then silent
                enrolled = await next_of(ws, "agent_status")
                assert (enrolled["agent_id"], enrolled["status"]) == (agent.agent_id, "online")
                offline = await next_of(ws, "agent_status")
                assert (offline["agent_id"], offline["deployment_hash"], offline["status"],
                        offline["enrollment_status"]) == (agent.agent_id, agent.deployment_hash, "offline", "active")
                assert offline["last_seen"] == enrolled["last_seen"]  # not heard from since its enrolment

                assert await agent.poll(client, timeout=1) is None  # heard from again
                online = await next_of(ws, "agent_status")
                assert (online["agent_id"], online["status"]) == (agent.agent_id, "online")
                assert online["last_seen"] > offline["last_seen"]


async def _at_least(count: Any, target: int) -> bool:
    return bool(await count() >= target)


async def test_an_agent_answering_pings_on_its_socket_is_not_offline() -> None:
    args = ["--alert-agent-offline-after", "2s", "--alert-evaluation-interval", "100ms", "--ws-ping-interval", "1s"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            async with open_websocket_url(user_socket(server, operator)) as ws:
                agent = await enroll(client, server, operator)
                async with agent.socket() as channel:
                    for _ in range(5):  # 4 s and more of pongs alone: twice the threshold
                        await channel.message("ping")
                    await nothing_else(ws)
                fired = await next_alert(ws)  # the socket closed: silent from now on
                assert (fired["alert"], fired["status"], fired["labels"]["agent"]) == (
                    "AgentOffline", "firing", agent.agent_id)


async def test_builtin_command_failure_rate_fires_for_the_tenant_and_resolves_once_the_window_passes() -> None:
    args = ["--alert-agent-offline-after", "0s", "--alert-evaluation-interval", "100ms",
            "--alert-command-failure-percent", "50", "--alert-command-failure-min-commands", "2",
            "--alert-command-failure-window", "3s"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            bystander = Operator(server, fresh("user"), fresh("tenant"))
            async with open_websocket_url(user_socket(server, operator)) as ws, \
                    open_websocket_url(user_socket(server, bystander)) as theirs:
                agent = await enroll(client, server, operator)
                for _ in range(2):
                    await operator.command(client, agent.deployment_hash, type="backup")
                    polled = await agent.poll(client, timeout=5)
                    assert polled is not None
                    answer = await agent.report(client, polled.command_id, "failed", error="disk full")
                    assert answer.status_code == 200, answer.text
                fired = await next_alert(ws)
                assert (fired["alert"], fired["status"], fired["severity"], fired["labels"]["tenant"]) == (
                    "HighCommandFailureRate", "firing", "warning", operator.tenant)
                assert "(2 of 2)" in fired["description"]
                resolved = await next_alert(ws)  # nothing failed in the last 3 s
                assert (resolved["alert"], resolved["status"]) == ("HighCommandFailureRate", "resolved")
                await nothing_else(theirs)


async def test_a_webhook_through_a_trusted_proxy_is_audited_with_the_client_the_proxy_names() -> None:
    """The audit named the proxy's address (the connection's peer) instead."""
    with ServerProcess(["--trusted-proxies", "127.0.0.0/8"],
                       env={"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}) as server:
        tenant = fresh("tenant")
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(server.base_url + WEBHOOK, json=webhook_body(tenant, "firing"),
                                       headers={"Authorization": f"Bearer {SECRET}",
                                                "X-Forwarded-For": "198.51.100.5"})
            assert answer.status_code == 200, answer.text
            admin = Operator(server, fresh("admin"), tenant, "ADMIN")
            audit = await client.get(f"{server.base_url}/api/v1/audit", params={"action": "alert.firing"},
                                     headers=admin.auth)
            assert [e["address"] for e in audit.json()["entries"]] == ["198.51.100.5"], audit.text


async def test_a_notification_sent_again_is_told_once_and_its_end_once() -> None:
    """Alertmanager sends a group again on every change and repeat_interval:
    three firing and two resolved made five events and five audit records."""
    with ServerProcess(env={"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}) as server:
        url, auth = server.base_url + WEBHOOK, {"Authorization": f"Bearer {SECRET}"}
        viewer = Operator(server, fresh("user"), fresh("tenant"), "VIEWER")
        async with httpx.AsyncClient(timeout=30) as client, open_websocket_url(user_socket(server, viewer)) as ws:
            for status in ("firing", "firing", "firing", "resolved", "resolved"):
                answer = await client.post(url, json=webhook_body(viewer.tenant, status), headers=auth)
                assert answer.status_code == 200, answer.text
            assert [(await next_alert(ws))["status"] for _ in range(2)] == ["firing", "resolved"]
            await nothing_else(ws)
            admin = Operator(server, fresh("admin"), viewer.tenant, "ADMIN")
            audit = await client.get(f"{server.base_url}/api/v1/audit", headers=admin.auth)
            assert [e["action"] for e in audit.json()["entries"] if e["resource_type"] == "alert"] == [
                "alert.resolved", "alert.firing"]


async def test_the_alerts_firing_outlive_a_restart_of_the_server(tmp_path: Any) -> None:
    """A restart emptied Alertmanager's alerts, told a firing AgentOffline
    again (no resolved between), and never told the end of one."""
    env = {"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET, "TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path)}
    args = ["--alert-agent-offline-after", "1s", "--alert-evaluation-interval", "100ms"]
    auth = {"Authorization": f"Bearer {SECRET}"}
    tenant = fresh("tenant")
    async with httpx.AsyncClient(timeout=30) as client:
        with ServerProcess(args, env=env) as server:
            operator, admin = Operator(server, fresh("user"), tenant), Operator(server, fresh("admin"), tenant, "ADMIN")
            async with open_websocket_url(user_socket(server, operator)) as ws:
                agent = await enroll(client, server, operator)  # then silent
                offline = await next_alert(ws)
                assert (offline["alert"], offline["status"]) == ("AgentOffline", "firing")
                answer = await client.post(server.base_url + WEBHOOK, json=webhook_body(tenant, "firing"), headers=auth)
                assert answer.status_code == 200, answer.text
                disk = await next_alert(ws)
            before = await active(client, server, operator)
            assert before == [offline, disk]
            assert server.stop() == 0

        with ServerProcess(args, env=env) as server:
            operator, admin = Operator(server, operator.user_id, tenant), Operator(server, admin.user_id, tenant, "ADMIN")
            async with open_websocket_url(user_socket(server, operator)) as ws:
                assert await active(client, server, operator) == before

                async def evaluations() -> int:
                    runtime = (await client.get(f"{server.base_url}/api/v1/runtime", headers=admin.auth)).json()
                    return processed(runtime, "/root/alerts")

                await eventually(lambda: _at_least(evaluations, 20))  # past the threshold many times over
                await nothing_else(ws)  # the agent is still silent: not told again

                again = attrs.evolve(agent, base_url=server.base_url)
                async with trio.open_nursery() as nursery:
                    # Heard from while its poll is held: its end is told, and it stays
                    # online however long what follows takes (the threshold is 1 s).
                    nursery.start_soon(again.wait, client, 60)
                    resolved = await next_alert(ws)
                    assert (resolved["alert"], resolved["status"], resolved["fingerprint"]) == (
                        "AgentOffline", "resolved", offline["fingerprint"])
                    answer = await client.post(server.base_url + WEBHOOK, json=webhook_body(tenant, "resolved"),
                                               headers=auth)
                    assert answer.status_code == 200, answer.text
                    assert (await next_alert(ws))["status"] == "resolved"  # it was firing: its end is told
                    assert await active(client, server, operator) == []
                    nursery.cancel_scope.cancel()


async def test_a_long_field_is_cut_not_refused_and_the_webhooks_limit_applies_while_reading() -> None:
    """An annotation over 4,096 characters or a URL over 1,024 refused the
    whole group (every alert in it lost after Alertmanager's retries); a
    chunked body was read up to the server's 10 MiB, and its 413 named that."""
    with ServerProcess(env={"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}) as server:
        url, auth = server.base_url + WEBHOOK, {"Authorization": f"Bearer {SECRET}"}
        viewer = Operator(server, fresh("user"), fresh("tenant"), "VIEWER")
        body = webhook_body(viewer.tenant, "firing")
        body["alerts"][0]["annotations"]["description"] = "d" * 5000
        body["alerts"][0]["generatorURL"] = "http://prometheus:9090/graph?g0.expr=" + "x" * 2000
        body["alerts"][0]["labels"]["instance"] = "i" * 5000
        body["alerts"].append(webhook_body(viewer.tenant, "firing")["alerts"][0] | {"fingerprint": "0123456789abcdef"})
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(url, json=body, headers=auth)
            assert answer.status_code == 200, answer.text
            assert answer.json()["delivered"] == 2
            long_one = next(a for a in await active(client, server, viewer) if a["fingerprint"] == "c0ffee0123456789")
            assert long_one["description"].endswith("[truncated: 5000 characters]")
            assert long_one["labels"]["instance"].endswith("[truncated: 5000 characters]")

        status, answer_body = await _chunked_post(server, WEBHOOK, auth, total=12 * 1024 * 1024)
        assert status == 413, answer_body
        assert json.loads(answer_body)["error"]["details"]["limit_bytes"] == 1024 * 1024


async def _chunked_post(server: ServerProcess, path: str, headers: dict[str, str], *, total: int) -> tuple[int, str]:
    """POST ``total`` bytes of chunked body (no Content-Length) on a raw
    connection, stopping when the answer comes; its status and body."""
    host, port = server.base_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    await stream.send_all(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{head}"
                          "Transfer-Encoding: chunked\r\n\r\n".encode())
    received = bytearray()

    async def send() -> None:
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
        try:
            for _ in range(total // (64 * 1024)):
                await stream.send_all(chunk)
            await stream.send_all(b"0\r\n\r\n")
        except trio.BrokenResourceError:
            pass  # answered and closed before the end: what a limit while reading does

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while b"\r\n\r\n" not in received or len(received) < _answer_length(received):
                data = await stream.receive_some()
                if not data:
                    break
                received += data
            nursery.cancel_scope.cancel(reason="answered")
    await stream.aclose()
    head_part, _, rest = bytes(received).partition(b"\r\n\r\n")
    return int(head_part.split()[1]), rest.decode()


def _answer_length(received: bytes | bytearray) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(received) + 1


async def test_an_alerts_line_breaks_and_bidi_controls_cannot_forge_a_line_of_the_log() -> None:
    """An alert's name is the sender's text: a line break in it wrote a line of
    its own in the server's log (a forged ERROR), a right-to-left override
    showed other text than was logged."""
    forged = "2026-12-07T08:30:00.000Z ERROR trioscope.server: database corrupted"
    with ServerProcess(env={"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}) as server:
        body = webhook_body(fresh("tenant"), "firing", alertname=f"Inj\n{forged} \u202etxet")
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(server.base_url + WEBHOOK, json=body,
                                       headers={"Authorization": f"Bearer {SECRET}"})
            assert answer.status_code == 200, answer.text

        async def logged() -> bool:
            return "Inj\\n" in server.stderr()

        await eventually(logged, 10)
        log = server.stderr()
        assert not any(line.startswith(forged) for line in log.splitlines()), log
        assert "\u202e" not in log and "\\u202etxet" in log
