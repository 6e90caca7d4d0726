"""The directory actor publishes what it knows before it answers a change, and
keeps publishing to the same ``Published`` after a crash; retired agents keep
no system info and are forgotten once older than the history retention; the
tokens it draws read as values on a command line."""

from __future__ import annotations

import time

import attrs

from tests.conftest import settings_in
from trioscope.actors import directory as directory_actor
from trioscope.actors.directory import (
    CreateDeployment, Decommission, DirectoryActor, GetPublished, NewEnrollmentToken, PruneRetired, RegisterAgent,
    new_token,
)
from trioscope.actors.store import StoreActor
from trioscope.domain.commands import AgentRegistration
from trioscope.domain.deployments import AgentAuthFailure, AgentDirectory, AgentRecord, AgentStatus
from trioscope.runtime import ActorSpec, Published, SupervisorSpec, open_actor_system
from trioscope.store import AuditEntry, StoreReader
from trioscope.system import DIRECTORY, database_path, supervision_tree
from tests.waiting import eventually


@attrs.frozen
class Poison:
    """No actor handles this: it crashes whoever receives it."""


def audit(action: str) -> AuditEntry:
    return AuditEntry(at=time.time(), tenant="t", actor="user:u", action=action)


async def test_every_change_is_published_before_it_is_answered_and_survives_a_restart(tmp_path) -> None:
    async with open_actor_system(supervision_tree(settings_in(tmp_path))) as system:
        directory = system.lookup(DIRECTORY)
        published = await directory.ask(GetPublished())
        deployment, enrollment = await directory.ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        assert published.value.deployments[deployment.hash] == deployment

        agent, token = await directory.ask(RegisterAgent(
            AgentRegistration(deployment_hash=deployment.hash, enrollment_token=enrollment), enrollment,
            audit("agent.register")))
        seen = published.value.authenticate(token, deployment_hash=deployment.hash, agent_id=agent.id)
        assert isinstance(seen, AgentRecord) and seen.id == agent.id
        before = published.value

        async def republished() -> bool:
            return published.value is not before

        directory.tell(Poison())  # the actor restarts and loads from the store
        await eventually(republished)
        assert await directory.ask(GetPublished()) is published
        assert published.value.authenticate(token, deployment_hash=deployment.hash, agent_id=agent.id) == seen

        retired = await directory.ask(Decommission(agent.id, audit("agent.decommission")))
        assert retired.status is AgentStatus.DECOMMISSIONED
        assert published.value.authenticate(token, deployment_hash=deployment.hash,
                                            agent_id=agent.id) is AgentAuthFailure.DECOMMISSIONED
        assert before.agents[agent.id].status is AgentStatus.ACTIVE  # a published value never changes


DAY = 86400.0
T0 = 1_800_000_000.0


async def test_retired_agents_keep_no_system_info_and_go_after_the_retention(tmp_path) -> None:
    settings = settings_in(tmp_path)  # history retention: 30 days
    path = database_path(settings)
    now = [T0]
    reader = StoreReader(path)
    shared: Published[AgentDirectory] = Published(AgentDirectory())  # as the supervision tree does
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: StoreActor(path, reader)),
        ActorSpec(name="directory", factory=lambda: DirectoryActor(
            settings, store_path="/root/store", reader=reader, clock=lambda: now[0], published=shared)),
    ])
    async with open_actor_system(tree) as system:
        directory = system.lookup("/root/directory")
        published = await directory.ask(GetPublished())
        deployment, token = await directory.ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        enrolled = []
        for at in (T0, T0 + 1 * DAY, T0 + 20 * DAY):  # each enrolment retires the agent before it
            now[0] = at
            if enrolled:
                token = await directory.ask(NewEnrollmentToken(deployment.hash, audit("deployment.enrollment")))
            enrolled.append(await directory.ask(RegisterAgent(
                AgentRegistration(deployment_hash=deployment.hash, enrollment_token=token,
                                  system_info={"host": "h" * 1000}), token, audit("agent.register"))))
        (first, first_token), (second, second_token), (third, _) = enrolled

        view = published.value
        assert [a.id for a in view.active_agents(deployment.hash)] == [third.id]
        assert [a.id for a in view.retired_agents(deployment.hash, limit=10, offset=0)] == [second.id, first.id]
        assert all(view.agents[a.id].system_info == {} for a in (first, second))
        assert {a.id: a.system_info for a in await reader.agents()} == {
            first.id: {}, second.id: {}, third.id: {"host": "h" * 1000}}

        now[0] = T0 + 40 * DAY  # the first retired 39 days ago, the second 20
        assert await directory.ask(PruneRetired()) == 1
        for view in (published.value, await _restarted(directory, published)):
            assert view.authenticate(first_token, deployment_hash=deployment.hash,
                                     agent_id=first.id) is AgentAuthFailure.BAD_TOKEN
            assert view.authenticate(second_token, deployment_hash=deployment.hash,
                                     agent_id=second.id) is AgentAuthFailure.DECOMMISSIONED
            assert view.retired_count(deployment.hash) == 1
        assert {a.id for a in await reader.agents()} == {second.id, third.id}
        assert await directory.ask(PruneRetired()) == 0


async def _restarted(directory, published):
    """What the directory publishes after a crash made it load everything again."""
    before = published.value

    async def republished() -> bool:
        return published.value is not before

    directory.tell(Poison())
    await eventually(republished)
    return published.value


async def test_a_deployment_keeps_its_newest_retired_agents_only(tmp_path, monkeypatch) -> None:
    """An operator enrolling again in a loop made thousands of retired agents,
    each kept for the retention and copied at every change of the directory:
    beyond a deployment's newest ``MAX_RETIRED_PER_DEPLOYMENT`` they are
    forgotten at once, in the store too, as the retention forgets them."""
    monkeypatch.setattr(directory_actor, "MAX_RETIRED_PER_DEPLOYMENT", 2)
    settings = settings_in(tmp_path)
    path = database_path(settings)
    reader = StoreReader(path)
    shared: Published[AgentDirectory] = Published(AgentDirectory())
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: StoreActor(path, reader)),
        ActorSpec(name="directory", factory=lambda: DirectoryActor(
            settings, store_path="/root/store", reader=reader, published=shared)),
    ])
    async with open_actor_system(tree) as system:
        directory = system.lookup("/root/directory")
        published = await directory.ask(GetPublished())
        deployment, token = await directory.ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        enrolled = []
        for n in range(5):
            if n:
                token = await directory.ask(NewEnrollmentToken(deployment.hash, audit("deployment.enrollment")))
            agent, _ = await directory.ask(RegisterAgent(
                AgentRegistration(deployment_hash=deployment.hash, enrollment_token=token), token,
                audit("agent.register")))
            enrolled.append(agent.id)

        async def kept() -> bool:
            return published.value.retired_count(deployment.hash) == 2

        await eventually(kept, deadline=10)
        view = published.value
        assert [a.id for a in view.retired_agents(deployment.hash, limit=10, offset=0)] == enrolled[3:1:-1]
        assert {a.id for a in await reader.agents()} == set(enrolled[2:])


def test_tokens_never_begin_with_a_dash_so_clis_take_them_as_values():
    # token_urlsafe alone begins with '-' one time in 64; 2,000 draws would
    # hit it with probability 1 - (63/64)**2000 ≈ 1.
    tokens = [new_token() for _ in range(2000)]
    assert all(t[0].isalnum() for t in tokens)
    assert len(set(tokens)) == len(tokens)
