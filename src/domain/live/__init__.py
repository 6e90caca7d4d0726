"""Live updates over WebSocket, the pure part: what clients may ask, what they are
sent, and which nodes their filters let through. No I/O; the hub and client
actors use it.

Server messages are ``{"type", "payload"}`` (the seed's shape): ``topology_update``
(a reset with the whole view, or a diff from ``previous_version`` to ``version``),
``report_update``, ``ping``/``pong`` and ``error``.
"""

from ._client_messages import MAX_LABELS as MAX_LABELS
from ._client_messages import MAX_SEARCH as MAX_SEARCH
from ._client_messages import MAX_SUBSCRIBED as MAX_SUBSCRIBED
from ._client_messages import MAX_TOPICS as MAX_TOPICS
from ._client_messages import BadClientMessage as BadClientMessage
from ._client_messages import ClientMessage as ClientMessage
from ._client_messages import Ping as Ping
from ._client_messages import Pong as Pong
from ._client_messages import Resync as Resync
from ._client_messages import Subscribe as Subscribe
from ._client_messages import Subscription as Subscription
from ._client_messages import Unsubscribe as Unsubscribe
from ._client_messages import parse_client_message as parse_client_message
from ._client_messages import parse_view as parse_view
from ._client_messages import subscribe as subscribe
from ._client_messages import unsubscribe as unsubscribe
from ._edge_index import EdgeIndex as EdgeIndex
from ._filter import Filter as Filter
from ._filter import SearchTexts as SearchTexts
from ._frames import PING as PING
from ._frames import PONG as PONG
from ._frames import Frame as Frame
from ._frames import PreFramed as PreFramed
from ._frames import SharedFrame as SharedFrame
from ._frames import error_frame as error_frame
from ._frames import message as message
from ._frames import report_frame as report_frame
from ._frames import shared as shared
from ._frames import text_frame_header as text_frame_header
from ._pacing import ResetThrottle as ResetThrottle
from ._pacing import ViewAdmission as ViewAdmission
from ._topology_updates import RESET_BATCH as RESET_BATCH
from ._topology_updates import diff_frame as diff_frame
from ._topology_updates import reset_chunks as reset_chunks
from ._topology_updates import reset_frame as reset_frame
from ._visibility import Visibility as Visibility

__all__ = [
    "BadClientMessage", "ClientMessage", "EdgeIndex", "Filter", "Frame", "MAX_LABELS", "MAX_SEARCH",
    "MAX_SUBSCRIBED", "MAX_TOPICS", "PING", "PONG", "Ping", "Pong", "PreFramed", "RESET_BATCH", "ResetThrottle",
    "Resync", "SearchTexts", "SharedFrame", "Subscribe", "Subscription", "Unsubscribe",
    "ViewAdmission", "Visibility", "diff_frame", "error_frame", "message", "parse_client_message", "parse_view",
    "report_frame", "reset_chunks", "reset_frame", "shared", "subscribe", "text_frame_header", "unsubscribe",
]
