"""Every function Quart calls per request runs on the event loop.

Quart sends a plain ``def`` view, hook or error handler to a worker thread on
each call (``ensure_async``): a thread hop per request that cost the command
service a sixth of its throughput before it was found. So all of them are
coroutine functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from trioscope.http import create_app
from trioscope.runtime import open_actor_system
from trioscope.system import supervision_tree


def per_request_functions(app: Any) -> Iterator[tuple[str, Any]]:
    for name, view in app.view_functions.items():
        yield f"view {name}", view
    for kind in ("before_request_funcs", "after_request_funcs", "teardown_request_funcs",
                 "before_websocket_funcs", "after_websocket_funcs", "teardown_websocket_funcs"):
        for blueprint, functions in getattr(app, kind).items():
            for function in functions:
                yield f"{kind} of {blueprint or 'app'}: {function.__qualname__}", function
    for blueprint, by_code in app.error_handler_spec.items():
        for handlers in by_code.values():
            for exception, handler in handlers.items():
                yield f"error handler of {blueprint or 'app'} for {exception.__name__}", handler


async def test_no_view_hook_or_error_handler_is_a_plain_function(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        functions = list(per_request_functions(app))
        blocking = [name for name, function in functions if not inspect.iscoroutinefunction(function)]
    assert len(functions) > 40  # the walk found the app's routes, hooks and handlers
    assert blocking == []
