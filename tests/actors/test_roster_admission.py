"""``CheckAdmission``: with a report bus, the replica that receives a new
probe's report asks whether the probe would have a place before publishing
it. The answer is the one its report then meets as every replica reads it
from the stream (``ReportArrived``), and asking starts no actor and forgets
no probe: a report the bus then refuses leaves no trace."""

from __future__ import annotations

import attrs
import pytest

from tests.actors.test_roster_signers import enrolled_agent, report, tracked, with_max_agents
from trioscope.actors.directory import AttachReporter
from trioscope.actors.refusals import TooManyAgents
from trioscope.actors.roster import CheckAdmission
from trioscope.runtime import open_actor_system
from trioscope.system import DIRECTORY, ROSTER, supervision_tree

HELD = (("held-1", "10.0.0.1"), ("held-2", "10.0.0.1"), ("held-3", "10.0.0.2"))
"""Three fresh unsigned probes: two places held by 10.0.0.1, one by 10.0.0.2."""


@attrs.frozen
class Newcomer:
    address: str
    signed: bool = False
    admitted: bool = True


CASES = {
    # Counted in its address's share, 10.0.0.2 holds as many as 10.0.0.1: no place
    # (asked without counting it, a place of 10.0.0.1 looked free).
    "from_an_address_holding_one": Newcomer("10.0.0.2", admitted=False),
    "from_an_address_holding_all": Newcomer("10.0.0.1", admitted=False),
    "from_an_address_holding_none": Newcomer("10.0.0.3"),
    "signed_by_an_enrolled_agent": Newcomer("10.0.0.1", signed=True),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_the_answer_is_the_one_the_report_meets_and_asking_changes_nothing(settings, case: Newcomer) -> None:
    async with open_actor_system(supervision_tree(with_max_agents(settings, len(HELD)))) as system:
        roster = system.lookup(ROSTER)
        for agent_id, address in HELD:
            await roster.ask(report(agent_id, address=address))
        signer = None
        if case.signed:  # as the HTTP edge does first (``_gate.vouch``)
            signer = await enrolled_agent(system)
            await system.lookup(DIRECTORY).ask(AttachReporter("newcomer", signer))
        before = tracked(system)
        check = CheckAdmission("newcomer", enrolled=case.signed, address=case.address, signer=signer)
        for _ in range(3):  # as a probe resending while the bus is away
            if case.admitted:
                assert await roster.ask(check) is None
            else:
                with pytest.raises(TooManyAgents):
                    await roster.ask(check)
            assert tracked(system) == before
        arrived = report("newcomer", address=case.address, enrolled=case.signed, signer=signer)
        if case.admitted:
            await roster.ask(arrived)
            assert "newcomer" in tracked(system)
            assert len(tracked(system)) == len(HELD)
        else:
            with pytest.raises(TooManyAgents):
                await roster.ask(arrived)
            assert tracked(system) == before


async def test_below_max_agents_a_new_probe_is_admitted_and_no_actor_started(settings) -> None:
    async with open_actor_system(supervision_tree(with_max_agents(settings, 2))) as system:
        roster = system.lookup(ROSTER)
        await roster.ask(report("held", address="10.0.0.1"))
        assert await roster.ask(CheckAdmission("newcomer", address="10.0.0.1")) is None
        assert tracked(system) == {"held"}
