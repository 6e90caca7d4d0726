"""How an agent, a deployment and a stored command look on the wire, with plain
values: an agent's ``status`` is its liveness (``online`` within the heartbeat
timeout of its last sighting, an enrolment counting as one), ``enrollment_status``
whether it is enrolled; a deployment names its active agent and when one of its
agents was last heard from; no result is 0 bytes; the addresses noted for
agents' records forget agents the directory forgot."""

from __future__ import annotations

from trioscope.domain.commands import CommandEvent, Priority, new_command
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus, Deployment
from trioscope.http._command_views import agent_view, deployment_view, last_heard, stored_command_view
from trioscope.store import StoredCommand

T0 = 1_760_000_000.0
TIMEOUT = 120.0


def agent(agent_id: str = "a1", status: AgentStatus = AgentStatus.ACTIVE) -> AgentRecord:
    return AgentRecord(id=agent_id, deployment_hash="dep", token_hash=f"hash-{agent_id}", status=status,
                       created_at=T0, decommissioned_at=T0 + 500 if status is AgentStatus.DECOMMISSIONED else None)


def test_an_agent_heard_from_within_the_heartbeat_timeout_is_online() -> None:
    seen = {"a1": T0 + 60}
    view = agent_view(agent(), last_seen=last_heard(agent(), seen), online_within=TIMEOUT, now=T0 + 60 + TIMEOUT,
                      connection_info={"transport": None})
    assert (view["id"], view["status"], view["enrollment_status"]) == ("a1", "online", "active")
    assert view["last_heartbeat"] == view["last_seen"] == "2025-10-09T08:54:20.000Z"
    assert view["connection_info"] == {"transport": None}
    later = agent_view(agent(), last_seen=T0 + 60, online_within=TIMEOUT, now=T0 + 61 + TIMEOUT)
    assert later["status"] == "offline"


def test_an_enrolment_is_the_first_sighting() -> None:
    assert last_heard(agent(), {}) == T0
    assert agent_view(agent(), last_seen=last_heard(agent(), {}), online_within=TIMEOUT, now=T0 + 1)["status"] == "online"


def test_a_retired_agent_is_offline_without_connection_or_system_info() -> None:
    retired = agent(status=AgentStatus.DECOMMISSIONED)
    view = agent_view(retired, last_seen=T0 + 400, online_within=TIMEOUT, now=T0 + 401,
                      connection_info={"transport": "long_poll"})
    assert (view["status"], view["enrollment_status"]) == ("offline", "decommissioned")
    assert view["connection_info"] is None and "system_info" not in view


def test_a_deployment_names_its_agent_and_when_it_was_last_seen() -> None:
    deployment = Deployment(hash="dep", tenant="t", user_id="u", created_at=T0, enrollment_hash=None)
    view = deployment_view(deployment, agent_id="a1", last_seen_at=T0)
    assert (view["id"], view["deployment_hash"], view["agent_id"]) == ("dep", "dep", "a1")
    assert view["last_seen_at"] == "2025-10-09T08:53:20.000Z"
    assert deployment_view(deployment)["agent_id"] is None and deployment_view(deployment)["last_seen_at"] is None


def _stored(command_events: list[CommandEvent], *, result_bytes: int, included: bool) -> StoredCommand:
    command = new_command(command_id="c1", deployment_hash="dep", tenant="t", type="restart", parameters={},
                          priority=Priority.NORMAL, created_by="u", now=T0, schedule_at=None, timeout_seconds=60,
                          requires_confirmation=False, sequence=1)
    for n, event in enumerate(command_events, 1):
        command = command.apply(event, T0 + n)
    return StoredCommand(command=command, result_bytes=result_bytes, error_bytes=4, result_included=included,
                         error_included=True, history_included=included)


def test_no_result_is_0_bytes_as_no_error_is() -> None:
    done = _stored([CommandEvent.DELIVER, CommandEvent.COMPLETE], result_bytes=4, included=True)
    view = stored_command_view(done, "/c1", max_detail_bytes=4096)
    assert (view["result"], view["result_bytes"], view["error_bytes"]) == (None, 0, 0)
    # A listing reads no result: one no agent reported on has none.
    for events in ([], [CommandEvent.DELIVER], [CommandEvent.EXPIRE], [CommandEvent.DELIVER, CommandEvent.TIME_OUT]):
        summary = stored_command_view(_stored(events, result_bytes=4, included=False), "/c1", max_detail_bytes=4096)
        assert summary["result_bytes"] == 0, events
    reported = _stored([CommandEvent.DELIVER, CommandEvent.COMPLETE], result_bytes=4, included=False)
    assert stored_command_view(reported, "/c1", max_detail_bytes=4096)["result_bytes"] == 4  # null or "ab": as stored
