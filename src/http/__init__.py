"""The HTTP edge: Quart-Trio routes, error translation, JSON in and out.

A handler parses and authenticates its request, sends one message to one actor
(or reads a value an actor published) and translates the answer. It starts no
actor for probes, builds no other actor's internal messages and shares nothing
mutable with an actor; route modules share code only through the support
modules, each named for what it holds (``_arguments``, ``_command_submission``,
``_agent_poll``, ...)."""

from ._app import create_app as create_app
from ._app import endpoint_lines as endpoint_lines
from ._app import stop_live_updates as stop_live_updates
from ._command_ws import MAX_WEBSOCKET_MESSAGE as MAX_WEBSOCKET_MESSAGE
from ._tcp_server import client_writes as client_writes
from ._tcp_server import install_guarded_tcp_server as install_guarded_tcp_server
from ._websocket_stream import install_bounded_websockets as install_bounded_websockets

__all__ = ["MAX_WEBSOCKET_MESSAGE", "client_writes", "create_app", "endpoint_lines", "install_bounded_websockets",
           "install_guarded_tcp_server", "stop_live_updates"]
