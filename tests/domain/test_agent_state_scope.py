"""What a probe's actor keeps (its latest report, its host's metric history)
is the tenant's whose probe reported it: once its agent id is another
tenant's, or reports unsigned after its agent was retired, nothing of the
first one's stays to be read under it."""

from __future__ import annotations

from tests.domain.test_topology import T0, report
from trioscope.domain.agents import AgentState, PackedReport
from trioscope.domain.topology import node_scope
from trioscope.wire import AgentRegistration

ACME, GLOBEX = node_scope("acme"), node_scope("globex")


def _report(host: str, at: float, usage: float):  # noqa: ANN202  # the wire Report
    return report("r", host, at, host_info={"hostname": host, "cpu_info": {"model": "x", "cores": 1, "usage": usage}})


def test_a_report_under_another_scope_leaves_nothing_of_the_one_before() -> None:
    state = AgentState("r", T0, 3600.0)
    state.receive(_report("payroll", T0, 77.7), PackedReport.pack(b'{"secret": 1}'), T0, enrolled=True, scope=ACME)
    assert state.latest_raw == b'{"secret": 1}' and state.latest_scope == ACME
    assert [p.values["cpu_usage"] for p in state.points(T0 - 60)] == [77.7]
    # Another tenant's probe under the same agent id, its report dated before.
    state.receive(_report("other", T0 - 60, 5.0), PackedReport.pack(b'{"b": 1}'), T0 + 20, enrolled=True,
                  scope=GLOBEX)
    assert state.latest_raw == b'{"b": 1}' and state.latest_scope == GLOBEX and state.hostname == "other"
    assert [p.values["cpu_usage"] for p in state.points(T0 - 600)] == [5.0]
    # The same scope: the newest report stays the latest, the history grows.
    state.receive(_report("other", T0 - 120, 6.0), PackedReport.pack(b'{"c": 1}'), T0 + 40, enrolled=True,
                  scope=GLOBEX)
    assert state.latest_raw == b'{"b": 1}'
    assert sorted(p.values["cpu_usage"] for p in state.points(T0 - 600)) == [5.0, 6.0]


def test_a_report_under_another_scope_leaves_nothing_of_the_registration_before() -> None:
    """A tenant whose probe took over a lapsed agent id read the first tenant's
    registration metadata (its deployment's hash, free text), times and counts."""
    state = AgentState("r", T0, 3600.0)
    state.register(AgentRegistration(agent_id="r", hostname="payroll", metadata={"owner": "carol@acme"}), T0)
    state.heartbeat(T0 + 5)
    state.receive(_report("payroll", T0, 77.7), PackedReport.pack(b'{"a": 1}'), T0 + 10, enrolled=True, scope=ACME)
    state.receive(_report("other", T0 + 50, 5.0), PackedReport.pack(b'{"b": 1}'), T0 + 60, enrolled=True,
                  scope=GLOBEX)
    assert (state.metadata, state.registered_at, state.last_heartbeat) == ({}, None, None)
    assert (state.reports_received, state.first_seen, state.hostname) == (1, T0 + 60, "other")


def test_a_registration_alone_is_the_registrants_too() -> None:
    """Registered by one tenant's probe that never reported, then reported
    (or registered) under by another's: nothing of the first registration shows."""
    state = AgentState("r", T0, 3600.0)
    state.register(AgentRegistration(agent_id="r", hostname="payroll", metadata={"owner": "carol@acme"}), T0,
                   scope=ACME)
    state.receive(_report("other", T0 + 50, 5.0), PackedReport.pack(b'{"b": 1}'), T0 + 60, enrolled=True,
                  scope=GLOBEX)
    assert (state.metadata, state.registered_at) == ({}, None)
    again = AgentState("r", T0, 3600.0)
    again.register(AgentRegistration(agent_id="r", metadata={"owner": "carol@acme"}), T0, scope=ACME)
    again.register(AgentRegistration(agent_id="r", metadata={}), T0 + 5, scope=None)  # an unsigned probe's
    assert (again.metadata, again.registered_scope, again.first_seen) == ({}, None, T0 + 5)
    same = AgentState("r", T0, 3600.0)
    same.register(AgentRegistration(agent_id="r", metadata={"owner": "carol@acme"}), T0, scope=ACME)
    same.receive(_report("payroll", T0, 1.0), PackedReport.pack(b'{"a": 1}'), T0 + 10, enrolled=True, scope=ACME)
    assert same.metadata == {"owner": "carol@acme"}  # its own registration stays
