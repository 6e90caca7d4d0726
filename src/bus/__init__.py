"""The report bus: validated reports carried to every replica by NATS JetStream
(``bus.url``). See ``ReportBus``; without a bus, reports are merged in the
process that received them.

The names that need nats-py (``ReportBus``, ``open_report_bus``, ``Fetched``)
are imported when first used (``trioscope.lazy_names``): a server without a
bus (the embedded default, every CLI command) never loads nats-py."""

import typing

import trioscope.lazy_names

from ._envelope import BadEnvelope as BadEnvelope
from ._envelope import Envelope as Envelope
from ._envelope import pack_report as pack_report
from ._envelope import unpack_report as unpack_report
from ._envelope import unpacked_limit as unpacked_limit
from ._errors import BusUnavailable as BusUnavailable
from ._errors import ReportTooLarge as ReportTooLarge
from ._lag import BusProgress as BusProgress
from ._loop import AsyncioThread as AsyncioThread

if typing.TYPE_CHECKING:
    from ._client import ReportBus as ReportBus
    from ._client import open_report_bus as open_report_bus
    from ._reader import Fetched as Fetched

__getattr__ = trioscope.lazy_names.lazy_names(__name__, {
    "ReportBus": "._client", "open_report_bus": "._client", "Fetched": "._reader",
})
"""The names whose modules import nats-py."""
