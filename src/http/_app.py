"""The Quart-Trio application: routes forward requests to actors as messages."""

from __future__ import annotations

from quart_trio import QuartTrio

from trioscope.config import Settings
from trioscope.runtime import ActorSystem

from . import _health
from ._errors import install_error_handlers
from ._services import Services, attach


def create_app(system: ActorSystem, settings: Settings) -> QuartTrio:
    """Build the app for one running actor system."""
    app = QuartTrio("trioscope")
    # Every error goes through our JSON handlers, also in testing mode.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    attach(app, Services(system=system, settings=settings))
    install_error_handlers(app)
    app.register_blueprint(_health.blueprint)
    return app


def endpoint_lines(app: QuartTrio) -> list[str]:
    """``METHOD  /path  - what it does`` for every route, from the view docstrings,
    so the start-up banner cannot drift from the routes that exist."""
    rows = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        summary = (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else ""
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            rows.append((rule.rule, method, summary))
    rows.sort()
    return [f"{method:<6} {path:<44} - {summary}" for path, method, summary in rows]
