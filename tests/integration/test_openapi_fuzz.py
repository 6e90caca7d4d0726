"""Schemathesis against a real server, from the server's own OpenAPI document:
every HTTP operation, with a real user token (``trioscope token create``) and
a real enrolled agent whose requests are signed as the probe signs them.

Checked on every response: no server error (5xx), a status the document lists,
the content type it lists and a body that matches its schema. WebSocket
handshakes (``x-websocket``) are not HTTP operations a fuzzer can call; the
WebSocket tests cover them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from tests.server_process import ServerProcess, run_cli
from trioscope.wire import request_signing

MAX_EXAMPLES = int(os.environ.get("TRIOSCOPE_FUZZ_EXAMPLES", "15"))
"""Generated cases per operation: sized so that the whole run takes under two
minutes on a 2-core machine (README "Checks"); raise it for a longer hunt."""

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
USER, TENANT = "fuzzer", "fuzzing"
LIMITS = {name: "1000000" for name in (
    "TRIOSCOPE_LIMITS_PER_ADDRESS", "TRIOSCOPE_LIMITS_REPORTS_PER_ADDRESS",
    "TRIOSCOPE_LIMITS_REGISTRATIONS_PER_ADDRESS", "TRIOSCOPE_LIMITS_PER_AGENT", "TRIOSCOPE_LIMITS_PER_USER")}
"""Rate limits out of the way: a 429 is a documented answer, but the point is
to reach the handlers behind them."""


ONE_TIME = {"POST /api/v1/agent/register"}
"""Operations whose credential is a one-time token in the body (an
enrollment's, which the ``credentials`` fixture spent): a generated one is
refused 401 every time, as it should be."""
MAX_HASH = 128
"""The longest deployment hash a body may name (the wire models' ``AnyId``)."""


class Credentials(requests.auth.AuthBase):
    """A user's bearer token, or for agent operations the agent's token and an
    RFC 9421 signature over the request as it is sent (``request_signing``),
    whose JSON body names the agent's own deployment where it names one: past
    the 403 of another deployment's hash into the handlers, as the path
    parameters (``_fuzz``). Done here, not in the cases' test function: its
    source seeds the examples of every operation (``derandomize``)."""

    def __init__(self, user_token: str, agent_id: str, agent_token: str, signed: bool,
                 deployment_hash: str = "") -> None:
        self.user_token, self.agent_id, self.agent_token, self.signed = user_token, agent_id, agent_token, signed
        self.deployment_hash = deployment_hash

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self.signed:
            prepared.headers["Authorization"] = f"Bearer {self.user_token}"
            return prepared
        prepared.headers["Authorization"] = f"Bearer {self.agent_token}"
        prepared.headers["X-Agent-Id"] = self.agent_id
        body = self._own_deployment(prepared.body or b"")
        if prepared.body is not None:
            prepared.body = body
            prepared.headers["Content-Length"] = str(len(body))
        request_signing.sign(prepared.method or "GET", prepared.url or "", prepared.headers, body,
                             agent_id=self.agent_id, token=self.agent_token, now=time.time(), nonce=str(uuid.uuid4()))
        return prepared

    def _own_deployment(self, body: bytes | str) -> bytes:
        raw = body.encode() if isinstance(body, str) else body
        try:
            document = json.loads(raw)
        except ValueError:
            return raw
        named = document.get("deployment_hash") if isinstance(document, dict) else None
        if not self.deployment_hash or not isinstance(named, str) or len(named) > MAX_HASH:
            return raw  # a negative case's hash of the wrong type or length stays as wrong as it was
        return json.dumps({**document, "deployment_hash": self.deployment_hash}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(env=LIMITS) as process:
        yield process


@pytest.fixture(scope="module")
def credentials(server: ServerProcess) -> dict[str, str]:
    """A user token from the CLI and an agent enrolled in that user's deployment."""
    created = run_cli(["token", "create", "--user", USER, "--tenant", TENANT, "--role", "ADMIN"], env=server.env)
    assert created.returncode == 0, created.stderr
    user_token = created.stdout.strip()
    user = {"Authorization": f"Bearer {user_token}"}
    deployment = requests.post(f"{server.base_url}/api/v1/users/{USER}/deployments", json={}, headers=user,
                               timeout=30)
    assert deployment.status_code == 201, deployment.text
    enrolled = requests.post(f"{server.base_url}/api/v1/agent/register", timeout=30, json={
        "deployment_hash": deployment.json()["deployment_hash"],
        "enrollment_token": deployment.json()["enrollment_token"], "capabilities": ["docker"]})
    assert enrolled.status_code == 201, enrolled.text
    return {"user_token": user_token, "agent_id": enrolled.json()["agent_id"],
            "agent_token": enrolled.json()["agent_token"], "deployment_hash": deployment.json()["deployment_hash"]}


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(f"{server.base_url}/api/v1/openapi.json")


def _operations(api: Any) -> Iterator[Any]:
    for result in api.get_all_operations():
        operation = result.ok()
        if not operation.definition.raw.get("x-websocket"):
            yield operation


def _fuzz(operation: Any, mode: GenerationMode, server: ServerProcess, credentials: dict[str, str],
          statuses: Counter[int]) -> None:
    """``MAX_EXAMPLES`` cases of ``operation``, each sent and checked; the
    statuses answered counted in ``statuses``."""
    definition = operation.definition.raw
    signed = any("agentToken" in requirement for requirement in definition.get("security", []))
    auth = Credentials(credentials["user_token"], credentials["agent_id"], credentials["agent_token"], signed,
                       credentials["deployment_hash"])
    # The user's and deployment's real names: past the 404 of an unknown
    # deployment into the handlers (other path parameters stay generated).
    names = {p["name"] for p in definition.get("parameters", []) if p["in"] == "path"}
    known = {k: v for k, v in (("user_id", USER), ("deployment_hash", credentials["deployment_hash"])) if k in names}

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=known or None))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
    def run(case: Any) -> None:
        if isinstance(case.headers, dict):
            # Framing, not an API parameter: a Transfer-Encoding the server does not
            # implement is answered 501 by the HTTP layer before any route (RFC 9112
            # 6.1), as it should; the document describes what routes answer.
            for name in [n for n in case.headers if n.lower() == "transfer-encoding"]:
                del case.headers[name]
        if operation.path.startswith("/api/v1/agent/commands/wait/") and isinstance(case.query, dict):
            case.query["timeout"] = 1  # the long poll holds up to 120 s otherwise; 1 is in its range
        response = case.call(base_url=server.base_url, auth=auth, timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # Nothing to send wrong: no parameters or body, or only path
        # parameters that any non-empty segment satisfies.


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_conforms_to_the_document(mode: GenerationMode, api: Any, server: ServerProcess,
                                                  credentials: dict[str, str]) -> None:
    failures, refused = [], []
    operations = list(_operations(api))
    assert len(operations) > 40
    for operation in operations:
        statuses: Counter[int] = Counter()
        try:
            _fuzz(operation, mode, server, credentials, statuses)
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failure (schemathesis' are groups)
            causes = [exc, *getattr(exc, "exceptions", ())]  # hypothesis' flaky failures hold the real ones
            failures.append(f"{operation.method.upper()} {operation.path}: "
                            + "\n".join(f"{type(c).__name__}: {str(c)[:1500]}" for c in causes))
        print(f"{mode.value} {operation.method.upper()} {operation.path}: {dict(sorted(statuses.items()))}")
        if statuses and set(statuses) <= {401, 403} and f"{operation.method.upper()} {operation.path}" not in ONE_TIME:
            refused.append(f"{operation.method.upper()} {operation.path}")
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)
    # The credentials work: no operation was refused every time.
    assert not refused, f"every request refused (401/403): {refused}"
