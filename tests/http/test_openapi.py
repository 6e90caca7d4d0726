"""The OpenAPI document describes every route the app has, from the app itself."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from trioscope.http import create_app
from trioscope.runtime import open_actor_system
from trioscope.system import supervision_tree


@pytest.fixture
async def running(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            yield app, test_app.test_client()


def _routes(app) -> set[tuple[str, str]]:
    """(METHOD, /path/{var}) of every route in the URL map, WebSockets as GET."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        methods = {"GET"} if rule.websocket else (rule.methods or set()) - {"HEAD", "OPTIONS"}
        routes |= {(method, path) for method in methods}
    return routes


async def test_every_route_is_in_the_document_with_its_description(running):
    app, client = running
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.content_type == "application/json"
    spec = await response.get_json()
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # a valid OpenAPI 3.1 document: unique operation ids, schemas, security schemes
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    missing = _routes(app) - documented
    assert not missing, f"routes missing from the OpenAPI document: {sorted(missing)}"
    # Each view says who may call it and what it answers: a route added without
    # ``documented`` is in the document only with a guess, and fails here.
    undescribed = sorted({rule.rule for rule in app.url_map.iter_rules()
                          if not rule.endpoint.endswith("static")
                          and not hasattr(app.view_functions[rule.endpoint], "__openapi__")})
    assert not undescribed, f"views without @documented: {undescribed}"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], f"{method} {path} has no docstring"
            # A whole sentence (a first line alone stopped mid-sentence), naming
            # no constant of the code: the reader sees values, not ``MAX_X``.
            assert operation["summary"][-1] in ".)?", f"{method} {path}: {operation['summary']!r}"
            for text in (operation["summary"], operation.get("description", "")):
                assert not re.search(r"``[A-Z][A-Z0-9_]{2,}``", text), f"{method} {path}: {text!r}"
            assert "security" in operation and operation["responses"]


async def test_the_document_has_bodies_errors_and_credentials(running):
    _app, client = running
    spec = await (await client.get("/api/v1/openapi.json")).get_json()
    create = spec["paths"]["/api/v1/users/{user_id}/deployments/{deployment_hash}/commands"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CreateCommand"}
    model = spec["components"]["schemas"]["CreateCommand"]
    assert model["required"] == ["type"]
    assert model["properties"]["timeout_seconds"] == {"type": "integer", "minimum": 1, "maximum": 604800}
    assert model["properties"]["priority"] == {"enum": ["low", "normal", "high", "critical"]}
    assert {"401", "403", "404", "400", "413", "429", "503"} <= set(create["responses"])
    error = create["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["code", "message"]
    assert create["security"] == [{"user": []}]
    wait = spec["paths"]["/api/v1/agent/commands/wait/{deployment_hash}"]["get"]
    assert {"agentToken", "agentId"} <= set(wait["security"][0]) and "204" in wait["responses"]
    # The agent's malformed headers, each with its code (the domain's list, AgentAuthFailure).
    assert "invalid_request_id, invalid_timestamp" in wait["responses"]["400"]["description"]
    assert {p["name"] for p in wait["parameters"]} == {"deployment_hash", "timeout", "priority", "last_command_id"}
    node = spec["paths"]["/api/v1/query/nodes/{node_id}"]["get"]["parameters"][0]
    assert node["in"] == "path" and "pattern" not in node["schema"]  # <path:node_id> takes slashes
    apps = spec["paths"]["/api/v1/apps/status"]["post"]
    assert apps["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AppStatusUpdate"}
    assert {"400", "401", "403", "409", "413", "503"} <= set(apps["responses"])
    assert apps["security"] == wait["security"]
    app_status = spec["components"]["schemas"]["AppStatusUpdate"]
    assert app_status["required"] == ["deployment_hash", "app_code", "status"]
    assert app_status["properties"]["logs"]["maxItems"] == 1000
    report = spec["components"]["schemas"]["Report"]
    assert set(report["required"]) == {"agent_id", "timestamp"}
    assert spec["components"]["securitySchemes"]["user"]["bearerFormat"] == "JWT"


async def test_the_docs_page_is_served_with_its_script(running):
    _app, client = running
    page = await client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.content_type
    text = await page.get_data(as_text=True)
    assert '/ui/js/docs.js' in text and "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = await client.get("/ui/js/docs.js")
    assert script.status_code == 200 and "/api/v1/openapi.json" in await script.get_data(as_text=True)


async def test_two_models_of_one_name_are_two_schemas(running):
    """The probes' registration and the command service's enrollment are both
    ``AgentRegistration``: each operation's body is its own model's schema."""
    _app, client = running
    spec = await (await client.get("/api/v1/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]

    def body_of(path: str) -> dict:
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return schemas[ref.rpartition("/")[2]]

    enrollment = body_of("/api/v1/agent/register")
    assert enrollment["required"] == ["deployment_hash"] and "capabilities" in enrollment["properties"]
    probe = body_of("/api/v1/agents/register")
    assert "agent_id" in probe["required"] and "hostname" in probe["properties"]


async def test_an_operation_with_path_parameters_documents_the_400_a_malformed_one_gets(running):
    """A control character in ``user_id`` is answered 400 ``invalid_user_id``: documented."""
    _app, client = running
    spec = await (await client.get("/api/v1/openapi.json")).get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "{" in path and not operation.get("x-websocket"):
                assert "400" in operation["responses"], f"{method} {path}"
