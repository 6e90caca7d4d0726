"""The HTTP edge's tests: an app on a running actor system, driven by Quart's test client."""

from __future__ import annotations

import pytest

from trioscope.http import create_app
from trioscope.runtime import open_actor_system
from trioscope.system import supervision_tree


@pytest.fixture
async def client(settings):
    """A test client of the app for ``settings`` (a module may define its own, e.g. with extra routes)."""
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            yield test_app.test_client()
