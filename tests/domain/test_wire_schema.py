"""The JSON Schema of the wire models (``trioscope.wire.SchemaBuilder``) says
what the strict decoder accepts: documents at a limit pass both, documents
past it fail both."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from trioscope.domain.alerts import WebhookPayload
from trioscope.domain.commands import AgentRegistration, CommandReport, CreateCommand
from trioscope.wire import InvalidDocument, Report, SchemaBuilder, decode


def _validator(model: type) -> Draft202012Validator:
    builder = SchemaBuilder()
    root = builder.of(model)
    return Draft202012Validator({**root, "$defs": builder.defs}, format_checker=Draft202012Validator.FORMAT_CHECKER)


CASES: list[tuple[type, dict[str, Any], bool]] = [
    (CreateCommand, {"type": "restart"}, True),
    (CreateCommand, {"type": "a" * 100, "timeout_seconds": 604800, "priority": "critical",
                     "schedule_at": "2030-01-01T00:00:00Z", "parameters": {"x": [1]}}, True),
    (CreateCommand, {"type": "a" * 101}, False),
    (CreateCommand, {"type": "-starts-with-a-dash"}, False),
    (CreateCommand, {"type": "restart", "timeout_seconds": 0}, False),
    (CreateCommand, {"type": "restart", "priority": "urgent"}, False),
    (CreateCommand, {"type": "restart", "parameters": []}, False),
    (CreateCommand, {"type": "restart", "requires_confirmation": "yes"}, False),
    (CreateCommand, {}, False),
    (CommandReport, {"command_id": "c", "deployment_hash": "d", "status": "executing", "progress": 100}, True),
    (CommandReport, {"command_id": "c", "deployment_hash": "d", "status": "executing", "progress": 100.5}, False),
    (CommandReport, {"command_id": "c", "deployment_hash": "d", "status": "done"}, False),
    (AgentRegistration, {"deployment_hash": "d", "capabilities": ["x"] * 64}, True),
    (AgentRegistration, {"deployment_hash": "d", "capabilities": ["x"] * 65}, False),
    (Report, {"agent_id": "host-1", "timestamp": "2025-10-13T00:00:00Z",
              "host_info": {"cpu_info": {"cores": 8, "usage": 12.5}}}, True),
    (Report, {"agent_id": "host 1", "timestamp": "2025-10-13T00:00:00Z"}, False),
    (Report, {"agent_id": "host-1", "timestamp": "2025-10-13T00:00:00Z", "host_info": "linux"}, False),
    (WebhookPayload, {"version": "4", "status": "firing", "alerts": []}, True),
    (WebhookPayload, {"version": "3", "status": "firing", "alerts": []}, False),
]


@pytest.mark.parametrize(("model", "document", "accepted"), CASES)
def test_the_schema_and_the_decoder_agree(model: type, document: dict[str, Any], accepted: bool) -> None:
    schema_accepts = _validator(model).is_valid(document)
    try:
        decode(document, model)
        decoder_accepts = True
    except InvalidDocument:
        decoder_accepts = False
    assert (schema_accepts, decoder_accepts) == (accepted, accepted)


def test_models_are_defined_once_and_referred_to() -> None:
    builder = SchemaBuilder(prefix="components/schemas/")
    assert builder.of(Report) == {"$ref": "#/components/schemas/Report"}
    host = builder.defs["Report"]["properties"]["host_info"]
    assert host == {"anyOf": [{"$ref": "#/components/schemas/HostInfo"}, {"type": "null"}]}
    assert builder.defs["CpuInfo"]["properties"]["cores"] == {"type": "integer", "minimum": 0, "maximum": 1_000_000}
