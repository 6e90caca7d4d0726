"""The Quart-Trio application: routes forward requests to actors as messages."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, g, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from trioscope.actors.topology import GetStats
from trioscope.config import Settings
from trioscope.runtime import ActorSystem
from trioscope.actors.client import LiveCounters
from trioscope.domain.rates import RateLimiter
from trioscope.store import StoreReader, open_limits, postgres_url, token_secret
from trioscope.actors.metrics import GetNodeSeriesCounters
from trioscope.actors.queue_owner import GetCommandStats
from trioscope.actors.store import GetCommitTimes
from trioscope.system import ALERTS, AGENTS, CLIENT_OWNER, CLIENTS, DIRECTORY, HUB, METRICS, QUEUE_OWNER, QUEUES, ROSTER, STORE, TOPOLOGY, database_path

from . import _agent_api, _agent_presence, _agents, _alerts, _api_docs, _audit, _command_ws, _commands, _controls, _directory, _gate, _health, _live, _metrics_api, _query, _rate_checks, _reports, _ui

from ._bodies import bound_path, refuse_unlisted_media
from ._access_log import AccessLog, name_route
from ._client_sockets import close_all
from ._cors import Cors, CorsPolicy
from ._hosts import HostCheck, HostPolicy
from ._errors import ApiError, closing_if_unread, error_response, install_error_handlers
from ._health_checks import check_bus
from ._metrics import CommandServiceSources, Metrics, encode, of_tenant
from ._openapi import Answer, Auth, documented, summary_of
from ._quart_app import TrioscopeApp
from ._responses import JSON
from ._services import REPLAY_WINDOW, Gate, Services, attach, services, services_of

if TYPE_CHECKING:
    from trioscope.bus import ReportBus  # nats-py, imported only with a bus (``trioscope.bus``)

UNCHARGED_ROUTES = frozenset({
    # Orchestrators' probes (a kubelet, a load balancer, systemd) often share
    # an address with clients (a node, a NAT): a 429 to one restarts or
    # unroutes a server that is fine, so any client could have it killed by
    # spending its address's budget. They take no credentials and no body.
    "/health", "/health/ready",
    # Probes' requests, with budgets of their own before their bodies are
    # read (limits.reports_per_address, limits.registrations_per_address):
    # 1,500 probes behind one NAT send 12,000 reports a minute, twice the API's.
    "/api/v1/reports", "/api/v1/agents/heartbeat/<agent_id>", "/api/v1/agents/register",
})
"""Routes (templates) not charged to the address's API budget (``limits.per_address``)."""


def charges_address(rule: str | None) -> bool:
    """Whether a request of route template ``rule`` (None: no route, a 404)
    is charged to its address's API budget: every one but ``UNCHARGED_ROUTES``,
    so that a route added later is limited unless it says why not."""
    return rule not in UNCHARGED_ROUTES


def create_app(system: ActorSystem, settings: Settings, reader: StoreReader | None = None,
               worker: int | None = None, bus: ReportBus | None = None) -> TrioscopeApp:
    """Build the app for one running actor system (its tree from ``supervision_tree``).

    ``worker``: which of ``--workers`` serving processes runs it (1..N), said by
    ``/api/v1/runtime`` and ``/metrics``; None when one process serves alone.
    ``bus``: the report bus (its feed in the tree), when ``bus.url`` is set."""
    app = TrioscopeApp("trioscope")
    # "//" in a path is a 404 like any unknown path, not Werkzeug's 308 (an
    # HTML redirect) to the path with the slashes merged: read before rules are added.
    app.url_map.merge_slashes = False
    # Every error goes through our JSON handlers, also in testing mode.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_size
    # Quart-Trio bounds the whole wait for a body (from the handler's read, not
    # between chunks), so a trickled body ends here: 408, connection closed.
    app.config["BODY_TIMEOUT"] = settings.server.body_timeout
    live = LiveCounters()
    metrics = Metrics(system, live, worker)
    limits = open_limits(postgres_url(database_path(settings)), replay_window=REPLAY_WINDOW,
                         per_agent=settings.limits.per_agent, per_user=settings.limits.per_user)
    attach(app, Services(system=system, settings=settings, worker=worker, agents=system.lookup(AGENTS),
                         roster=system.lookup(ROSTER),
                         topology=system.lookup(TOPOLOGY), hub=system.lookup(HUB),
                         clients=system.lookup(CLIENTS), client_owner=system.lookup(CLIENT_OWNER), live=live, metrics=metrics,
                         store=system.lookup(STORE), directory=system.lookup(DIRECTORY),
                         queues=system.lookup(QUEUES), queue_owner=system.lookup(QUEUE_OWNER),
                         alerts=system.lookup(ALERTS), bus=bus,
                         reader=reader if reader is not None else StoreReader(database_path(settings)),
                         secret=token_secret(settings.auth.secret, settings.storage.data_dir),
                         gate=Gate(per_address=RateLimiter(settings.limits.per_address),
                                   per_agent=limits.per_agent, per_user=limits.per_user, replay=limits.replay,
                                   agent_bytes=_rate_checks.agent_byte_budget(settings.limits.agent_bytes),
                                   replicated=postgres_url(database_path(settings)) is not None,
                                   reports_per_address=RateLimiter(settings.limits.reports_per_address),
                                   registrations_per_address=RateLimiter(
                                       settings.limits.registrations_per_address))))
    if bus is not None:
        metrics.watch_bus(bus.progress)
        services_of(app).health.add("bus", check_bus)
    _metrics_api.attach_backend(app, system, settings, METRICS)
    install_error_handlers(app)
    proxies = services_of(app).proxies
    app.asgi_app = AccessLog(  # type: ignore[method-assign]  # Quart's documented way to add ASGI middleware
        HostCheck(Cors(app.asgi_app, CorsPolicy.parse(settings.server.cors_origins,
                                                      settings.server.cors_allow_credentials)),
                  HostPolicy.parse(settings.server.allowed_hosts, settings.server.host), proxies),
        enabled=settings.server.access_log, proxies=proxies)
    for blueprint in (_health.blueprint, _agents.blueprint, _reports.blueprint, _query.blueprint,
                      _live.blueprint, _commands.blueprint, _agent_api.blueprint, _audit.blueprint,
                      _command_ws.blueprint, _controls.blueprint, _alerts.blueprint, _metrics_api.blueprint, _ui.blueprint,
                      _api_docs.blueprint):
        app.register_blueprint(blueprint)

    @app.before_serving
    async def _metric_sources() -> None:
        s = services()
        stats = await s.queue_owner.ask(GetCommandStats(), timeout=30)
        if stats is not None:
            await _directory.directory()
            assert s.gate.directory is not None
            s.metrics.sources = CommandServiceSources(
                command_stats=stats, directory=s.gate.directory, seen=s.gate.sightings.seen,
                online_within=settings.agents.heartbeat_timeout, started=time.time())
        s.metrics.watch_commits(await s.store.ask(GetCommitTimes(), timeout=30))
        # What became of the probes' host metrics (forgotten with their probe, refused when full).
        s.metrics.watch_node_series(await system.lookup(METRICS).ask(GetNodeSeriesCounters(), timeout=30))
        app.add_background_task(_agent_presence.keep_holders_heard)

    @app.before_request
    async def _start_timer() -> None:
        g.started = time.perf_counter()
        bound_path(request.path, request.args)
        if request.url_rule is not None:  # for the access log: the template, never the path as sent
            name_route(request.scope, request.url_rule.rule)

    @app.before_request
    async def _charge_address() -> None:
        # After the timer: a 429 is observed in /metrics like any answer.
        if charges_address(request.url_rule.rule if request.url_rule is not None else None):
            if request.endpoint in _agent_api.RESULT_ENDPOINTS:
                await _agent_api.answered_5xx_past_budget(_rate_checks.check_address_rate())
            else:
                await _rate_checks.check_address_rate()

    @app.before_request
    async def _body_media() -> None:
        view = app.view_functions.get(request.url_rule.endpoint) if request.url_rule is not None else None
        doc = getattr(view, "__openapi__", None)
        # The routes whose body is JSON alone: the others (line protocol, PromQL's
        # forms) read each media type as what it is, and ignore a body they do not take.
        if doc is not None and doc.body is not None and doc.body_media == (JSON,):
            refuse_unlisted_media(doc.body_media)

    @app.before_websocket
    async def _name_route() -> Response | None:
        bound_path(websocket.path, websocket.args)
        if websocket.url_rule is not None:
            name_route(websocket.scope, websocket.url_rule.rule)
        try:
            await _rate_checks.check_address_rate()  # every upgrade, before its route's own checks
        except ApiError as exc:  # answered instead of the handshake, as the routes answer their refusals
            return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
        return None

    @app.after_request
    async def _observe(response: Response) -> Response:
        started = getattr(g, "started", None)
        if started is not None:
            metrics.observe_request(_route_template(app), request.method, response.status_code, started)
        return closing_if_unread(response)

    @app.get("/metrics")
    @documented(auth=Auth.READ, answers={200: Answer("the metrics", media=CONTENT_TYPE_LATEST, schema={"type": "string"})})
    async def prometheus() -> Response:
        """Prometheus metrics."""
        await _gate.protected_read()
        tenant = _gate.readable_tenant()
        s = services()

        async def scrape() -> bytes:
            stats = await s.topology.ask(GetStats(), timeout=30)
            s.metrics.agents.set(len(s.agents))
            s.metrics.websocket_clients.set(len(s.clients))
            s.metrics.polls_waiting.set(len(s.polls))
            s.metrics.topology_nodes.set(stats["topology"]["nodes"])
            s.metrics.topology_edges.set(stats["topology"]["edges"])
            s.metrics.database_connections.set(2 if s.store.alive else 1)  # SQLite: the writer's and the reader's
            families = s.metrics.collect()
            if tenant is not None:
                families = of_tenant(families, tenant)
            return await trio.to_thread.run_sync(encode, families, limiter=s.heavy_work)

        return Response(await s.scrapes.body(tenant, scrape), content_type=CONTENT_TYPE_LATEST)

    @app.after_serving
    async def _close_limits() -> None:
        _agent_presence.stop_keeping_holders_heard(app)  # else Quart waits its BACKGROUND_TASK_SHUTDOWN_TIMEOUT for it
        limits.close()

    return app


def _route_template(app: QuartTrio) -> str:
    """The route template the request is of, for metric labels: ``unmatched``
    when no route has its path. A method the route does not take (405) is
    still of that route: routing found the path, then refused the method, and
    left no rule; it is matched again with a method the route takes (only
    for 405s)."""
    if request.url_rule is not None:
        return request.url_rule.rule
    refused = request.routing_exception
    if isinstance(refused, MethodNotAllowed) and refused.valid_methods:
        try:
            rule, _ = app.create_url_adapter(request).match(  # type: ignore[union-attr]  # bound to a request: never None
                method=next(iter(refused.valid_methods)), return_rule=True)
        except HTTPException:
            pass
        else:
            return str(rule.rule)
    return "unmatched"


CUT_SHARE = 0.8
"""Share of Hypercorn's graceful phase after which requests still handled are
cut and answered (``TrioscopeApp.cut_requests``): the rest is for the answers."""


def stop_live_updates(app: TrioscopeApp) -> None:
    """The server is stopping: close every WebSocket (1001) now, so that they do
    not hold the graceful shutdown up."""
    s = services_of(app)
    s.health.stopping = True  # /health/ready answers 503 from now on
    # Hypercorn's graceful phase is half the budget (``hypercorn_config``): requests still
    # handled at four fifths of it are cut and answered, before it cancels them itself.
    app.cut_requests(trio.current_time() + s.settings.server.shutdown_timeout / 2 * CUT_SHARE)
    close_all(s.links)
    for waiting in s.polls:  # long-polls answer 204 now rather than hold the drain up
        waiting.cancel()


def endpoint_lines(app: QuartTrio) -> list[str]:
    """``METHOD  /path  - what it does`` for every route, from the view docstrings,
    so the start-up banner cannot drift from the routes that exist."""
    rows = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        view = app.view_functions[rule.endpoint]
        summary = _summary(view.__doc__ or "")
        if rule.websocket:
            rows.append((rule.rule, "WS", summary))
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            rows.append((rule.rule, method, summary))
    rows.sort()
    return [f"{method:<6} {path:<44} - {summary}" for path, method, summary in rows]


BANNER_SUMMARY = 100
"""Most characters of a route's summary in the start-up banner."""


def _summary(doc: str) -> str:
    """A view docstring's first sentence as the banner shows it (``summary_of``,
    the OpenAPI document's summary): literals unquoted (````x```` -> ``x``),
    cut at ``BANNER_SUMMARY``."""
    sentence = summary_of(doc)[0].replace("``", "").rstrip(".")
    return sentence if len(sentence) <= BANNER_SUMMARY else sentence[:BANNER_SUMMARY - 3].rstrip() + "..."
