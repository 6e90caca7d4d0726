"""A control's body is checked whole: a key it does not have, a parameter the
control does not take, or a ``container`` other than the node's gets a 400
naming it. Before, ``{"paramters": {"follow": true}}`` (misspelt) was a 202
for a plain logs command; ``since`` or ``bogus`` were stored and sent for the
agent to ignore; a ``container`` was overwritten with the node's id (a
reviewer). What was accepted before still is, stored as it was."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.http.test_node_controls_rule import enrolled
from trioscope.config import Settings
from trioscope.domain.principals import Role, mint_user_token
from trioscope.domain.topology import CONTROL_ACTIONS
from trioscope.domain.topology._controls import _PARAMETERS
from trioscope.store import token_secret

EVERY_CONTROL = (["docker", "restart"], "0.2.1")
"""An agent that names no docker.<action>: it runs every control (allowed_actions)."""


def test_each_control_takes_the_parameters_its_values_are_checked_for() -> None:
    from trioscope.http._controls import TAKES  # here: the other tests run on a server without it
    assert set(TAKES) == set(CONTROL_ACTIONS)
    assert {action: set(names) for action, names in TAKES.items()} == {
        action: set(_PARAMETERS.get(action, {})) for action in CONTROL_ACTIONS}


async def _refused(found: Any, action: str, body: Any) -> dict[str, Any]:
    answer = await found.client.post(f"{found.node_url}/controls/{action}", json=body, headers=found.owner)
    error = (await answer.get_json())["error"]
    assert answer.status_code == 400, error
    return dict(error)


@pytest.mark.parametrize(("body", "path", "hint"), [
    ({"paramters": {"follow": True}}, "$.paramters", "did you mean parameters?"),
    ({"parameters": {"tail": 5}, "priorty": "low"}, "$.priorty", "did you mean priority?"),
    ({"bogus": 1}, "$.bogus", "a control's body has parameters, priority, timeout_seconds, requires_confirmation"),
    ({"not a name": 1}, '$["not a name"]', "unknown key"),
])
async def test_a_key_the_body_does_not_have_is_named(settings: Settings, body: dict[str, Any], path: str,
                                                     hint: str) -> None:
    async with enrolled(settings, *EVERY_CONTROL) as found:
        error = await _refused(found, "logs", body)
    assert error["code"] == "invalid_body", error
    assert error["details"]["errors"][0]["path"] == path, error
    assert error["message"].startswith(f"{path}: unknown key") and hint in error["message"], error


@pytest.mark.parametrize(("action", "parameters", "name", "hint"), [
    ("logs", {"since": "1h"}, "since", "it takes container, tail, follow"),
    ("logs", {"tail": 10, "bogus": 1}, "bogus", "it takes container, tail, follow"),
    ("logs", {"folow": True}, "folow", "did you mean follow?"),
    ("logs", {"timeout": 5}, "timeout", "'logs' takes no such parameter"),
    ("restart", {"force": True}, "force", "it takes container, timeout"),
    ("inspect", {"tail": 5}, "tail", "it takes container"),
    ("exec", {"argvs": ["ls"]}, "argvs", "did you mean argv?"),  # not "argv is required"
    ("stop", {"container_id": "x"}, "container_id", "did you mean container?"),
])
async def test_a_parameter_the_control_does_not_take_is_named(settings: Settings, action: str,
                                                              parameters: dict[str, Any], name: str, hint: str) -> None:
    async with enrolled(settings, *EVERY_CONTROL) as found:
        error = await _refused(found, action, {"parameters": parameters})
    assert error["code"] == "invalid_parameters", error
    assert error["details"]["errors"][0]["path"] == f"$.parameters.{name}", error
    assert hint in error["message"], error


async def test_a_container_other_than_the_nodes_is_refused(settings: Settings) -> None:
    async with enrolled(settings, *EVERY_CONTROL) as found:
        container = found.container
        for other in ("someone-elses", 5, None, container.upper()):
            error = await _refused(found, "restart", {"parameters": {"container": other}})
            assert error["code"] == "invalid_parameters", error
            assert error["details"]["errors"][0]["path"] == "$.parameters.container", error
            assert container in error["message"], error
        stored = await _accepted(found, "restart", {"parameters": {"container": container, "timeout": 3}})
        assert stored["parameters"] == {"container": container, "timeout": 3}
        # To a reader who may not control it, it is still no node: nothing says it exists.
        secret = token_secret(settings.auth.secret, settings.storage.data_dir)
        stranger = mint_user_token(secret, user_id="mallory", tenant="other", role=Role.ADMIN, now=time.time(), ttl=600)
        answer = await found.client.post(f"{found.node_url}/controls/restart", json={"parameters": {"container": "x"}},
                                         headers={"Authorization": f"Bearer {stranger}"})
        assert answer.status_code == 404 and (await answer.get_json())["error"]["code"] == "node_not_found"


async def _accepted(found: Any, action: str, body: Any) -> dict[str, Any]:
    """The command stored for a control asked with ``body`` (None: no body at all)."""
    sent = {} if body is None else {"json": body}
    answer = await found.client.post(f"{found.node_url}/controls/{action}", headers=found.owner, **sent)
    created = await answer.get_json()
    assert answer.status_code == 202, created
    command = await found.client.get(
        f"/api/v1/users/{created['user_id']}/deployments/{created['deployment_hash']}/commands/{created['command_id']}",
        headers=found.owner)
    assert command.status_code == 200
    return dict(await command.get_json())


async def test_what_was_accepted_before_still_is_stored_as_it_was(settings: Settings) -> None:
    async with enrolled(settings, *EVERY_CONTROL) as found:
        container = found.container
        cases: tuple[tuple[str, dict[str, Any] | None, dict[str, Any]], ...] = (
            ("restart", {}, {}), ("restart", None, {}), ("stop", {"parameters": {"timeout": 5}}, {"timeout": 5}),
            ("logs", {"parameters": {"tail": 200}}, {"tail": 200}),
            ("logs", {"parameters": {"follow": True, "tail": 0}, "timeout_seconds": 3600},
             {"follow": True, "tail": 0}),
            ("exec", {"parameters": {"argv": ["ls", "-l"]}, "priority": "low", "requires_confirmation": False},
             {"argv": ["ls", "-l"]}),
            ("inspect", {"parameters": {}}, {}))
        for action, body, parameters in cases:
            stored = await _accepted(found, action, body)
            assert stored["type"] == f"docker.{action}", stored
            assert stored["parameters"] == {**parameters, "container": container}, stored
