"""The wire models shared by the server and the probe: reports and registrations,
with strict decoding that names every bad field."""

from ._codec import FieldProblem as FieldProblem
from ._codec import InvalidDocument as InvalidDocument
from ._codec import decode as decode
from ._codec import decode_registration as decode_registration
from ._codec import decode_report as decode_report
from ._codec import encode as encode
from ._fields import IDENTIFIER as IDENTIFIER
from ._fields import FieldError as FieldError
from ._fields import Identifier as Identifier
from ._fields import IntRange as IntRange
from ._fields import JsonRule as JsonRule
from ._fields import Name as Name
from ._fields import Percent as Percent
from ._fields import Text as Text
from ._fields import TextRule as TextRule
from ._fields import bounded_list as bounded_list
from ._fields import constrained as constrained
from ._fields import format_timestamp as format_timestamp
from ._fields import nesting_exceeds as nesting_exceeds
from ._fields import parse_timestamp as parse_timestamp
from ._models import AgentRegistration as AgentRegistration
from ._models import Connection as Connection
from ._models import ContainerInfo as ContainerInfo
from ._models import ContainerNetwork as ContainerNetwork
from ._models import ContainerStats as ContainerStats
from ._models import CpuInfo as CpuInfo
from ._models import DiskInfo as DiskInfo
from ._models import DockerInfo as DockerInfo
from ._models import HostInfo as HostInfo
from ._models import LoadAverage as LoadAverage
from ._models import MemoryInfo as MemoryInfo
from ._models import NetworkInfo as NetworkInfo
from ._models import NetworkInterface as NetworkInterface
from ._models import PortMapping as PortMapping
from ._models import ProcessesInfo as ProcessesInfo
from ._models import ProcessInfo as ProcessInfo
from ._models import Report as Report

__all__ = [
    "AgentRegistration", "Connection", "ContainerInfo", "ContainerNetwork", "ContainerStats",
    "CpuInfo", "DiskInfo", "DockerInfo", "FieldProblem", "HostInfo", "InvalidDocument",
    "LoadAverage", "MemoryInfo", "NetworkInfo", "NetworkInterface", "PortMapping",
    "ProcessInfo", "ProcessesInfo", "Report", "decode", "decode_registration", "decode_report",
    "encode", "format_timestamp", "IDENTIFIER", "FieldError", "Identifier", "IntRange", "Name",
    "JsonRule", "Percent", "Text", "TextRule", "bounded_list", "constrained", "nesting_exceeds", "parse_timestamp",
]
