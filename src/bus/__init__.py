"""The report bus: validated reports carried to every replica by NATS JetStream
(``bus.url``). See ``ReportBus``; without a bus, reports are merged in the
process that received them."""

from ._client import BusUnavailable as BusUnavailable
from ._reader import Fetched as Fetched
from ._client import ReportBus as ReportBus
from ._client import ReportTooLarge as ReportTooLarge
from ._client import open_report_bus as open_report_bus
from ._envelope import BadEnvelope as BadEnvelope
from ._envelope import Envelope as Envelope
from ._envelope import pack_report as pack_report
from ._envelope import unpack_report as unpack_report
from ._envelope import unpacked_limit as unpacked_limit
from ._lag import BusProgress as BusProgress
from ._loop import AsyncioThread as AsyncioThread
