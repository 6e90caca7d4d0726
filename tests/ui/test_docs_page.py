"""/docs in Chromium: the API reference rendered from /api/v1/openapi.json by
the UI's own script, under the UI's Content-Security-Policy."""

from __future__ import annotations

import httpx

from .conftest import Ui


def test_the_docs_page_lists_every_operation_of_the_document(ui: Ui) -> None:
    spec = httpx.get(f"{ui.server.base_url}/api/v1/openapi.json").json()
    count = sum(len(item) for item in spec["paths"].values())
    ui.page.goto(f"{ui.server.base_url}/docs")
    ui.page.get_by_role("heading", name=f"Operations ({count})").wait_for()
    assert ui.page.locator("section.operation").count() == count
    create = ui.page.locator("section.operation", has_text="/api/v1/users/{user_id}/deployments/{deployment_hash}/commands")
    assert create.first.is_visible()
    assert ui.page.locator("#schema-CreateCommand").is_visible()
    assert ui.page.get_by_text("credentials: user").first.is_visible()
