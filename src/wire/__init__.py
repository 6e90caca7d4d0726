"""The wire: what the server and the probe must agree on, and all the probe
imports of the server package (``tests/probe/test_independence.py``).

- reports and registrations, with strict decoding that names every bad field
  (the server's domain, actors and routes use these models as they are: a
  report is a domain value, there is no second copy of it on the server side);
- how a report's fields are read where both sides read them: the container a
  process runs in (``container_id_from_cgroup``), the pods and services
  container labels name, loopback and wildcard addresses;
- the memory budget a report must fit (``MemoryBudget``): the server refuses a
  larger one whole, so the probe fits its reports to the same estimate;
- the request signatures (``trioscope.wire.request_signing``, RFC 9421);
- how clients trust an ``https://`` server (``client_tls``, ``--ca-file``);
- which ``TRIOSCOPE_`` variables Kubernetes set for a Service (``service_links``),
  which neither the server's nor the probe's settings refuse;
- how log lines look (``trioscope.wire.log_lines``): the local probe writes into
  the server's own log stream, so both must make the same lines.

Nothing here imports the rest of ``trioscope``: no configuration, topology,
actors or HTTP. Pure, like ``trioscope.domain``, but for
``log_lines.configure_logging``, which sets up the process's root logger.
"""

from ._addresses import WILDCARDS as WILDCARDS
from ._addresses import ListeningPorts as ListeningPorts
from ._addresses import is_connected as is_connected
from ._addresses import is_listener as is_listener
from ._addresses import is_loopback as is_loopback
from ._addresses import normal_address as normal_address
from ._addresses import protocol_family as protocol_family
from ._addresses import socket_namespace as socket_namespace
from ._edge_sockets import edge_sockets as edge_sockets
from ._codec import FieldProblem as FieldProblem
from ._codec import InvalidDocument as InvalidDocument
from ._codec import decode as decode
from ._codec import decode_heartbeat as decode_heartbeat
from ._codec import decode_registration as decode_registration
from ._codec import decode_report as decode_report
from ._codec import encode as encode
from ._containers import ContainerIds as ContainerIds
from ._containers import container_id_from_cgroup as container_id_from_cgroup
from ._fields import CHECKS as CHECKS
from ._fields import IDENTIFIER as IDENTIFIER
from ._fields import MAX_COMMAND_TIMEOUT as MAX_COMMAND_TIMEOUT
from ._fields import FieldError as FieldError
from ._fields import Identifier as Identifier
from ._fields import IntRange as IntRange
from ._fields import JsonRule as JsonRule
from ._fields import HostName as HostName
from ._fields import Name as Name
from ._fields import Percent as Percent
from ._fields import Text as Text
from ._fields import TextRule as TextRule
from ._fields import bounded_list as bounded_list
from ._fields import bounded_map as bounded_map
from ._fields import constrained as constrained
from ._fields import format_timestamp as format_timestamp
from ._fields import nesting_exceeds as nesting_exceeds
from ._fields import RFC3339 as RFC3339
from ._fields import parse_timestamp as parse_timestamp
from ._fields import rfc3339_millis as rfc3339_millis
from ._fields import rfc3339_seconds as rfc3339_seconds
from ._footprint import Footprint as Footprint
from ._footprint import MemoryBudget as MemoryBudget
from ._footprint import OverBudget as OverBudget
from ._labels import POD_UID as POD_UID
from ._labels import pod_of as pod_of
from ._labels import service_of as service_of
from ._models import AgentHeartbeat as AgentHeartbeat
from ._models import AgentRegistration as AgentRegistration
from ._models import Connection as Connection
from ._models import ContainerInfo as ContainerInfo
from ._models import ContainerNetwork as ContainerNetwork
from ._models import ContainerStats as ContainerStats
from ._models import CpuInfo as CpuInfo
from ._models import DiskInfo as DiskInfo
from ._models import KEEP_LISTED_SECONDS as KEEP_LISTED_SECONDS
from ._models import DockerInfo as DockerInfo
from ._models import HostInfo as HostInfo
from ._models import LoadAverage as LoadAverage
from ._models import LeftOut as LeftOut
from ._models import Gaps as Gaps
from ._models import MemoryInfo as MemoryInfo
from ._models import NetworkInfo as NetworkInfo
from ._models import NetworkInterface as NetworkInterface
from ._models import PortMapping as PortMapping
from ._models import ProcessesInfo as ProcessesInfo
from ._models import ProcessInfo as ProcessInfo
from ._models import Report as Report
from ._schema import SchemaBuilder as SchemaBuilder
from ._json_text import writable_json as writable_json
from ._service_links import service_links as service_links
from ._server_url import IPV6_IN_BRACKETS as IPV6_IN_BRACKETS
from ._server_url import server_url_problem as server_url_problem
from ._server_url import shown_url as shown_url
from ._server_url import unbracketed_ipv6 as unbracketed_ipv6
from ._tls import client_tls as client_tls

__all__ = [
    "AgentHeartbeat", "AgentRegistration", "bounded_list", "bounded_map", "CHECKS", "client_tls", "server_url_problem", "service_links", "shown_url", "writable_json", "Connection", "constrained", "container_id_from_cgroup", "ContainerIds",
    "ContainerInfo", "ContainerNetwork", "ContainerStats", "CpuInfo", "decode", "decode_heartbeat", "decode_registration",
    "decode_report", "DiskInfo", "edge_sockets", "is_connected", "is_listener", "ListeningPorts", "socket_namespace", "DockerInfo", "KEEP_LISTED_SECONDS", "MAX_COMMAND_TIMEOUT", "encode", "FieldError", "FieldProblem", "Footprint",
    "format_timestamp", "Gaps", "HostInfo", "HostName", "IDENTIFIER", "Identifier", "IntRange", "InvalidDocument", "is_loopback",
    "JsonRule", "LeftOut", "LoadAverage", "MemoryBudget", "MemoryInfo", "Name", "nesting_exceeds", "NetworkInfo",
    "NetworkInterface", "normal_address", "OverBudget", "parse_timestamp", "rfc3339_millis", "rfc3339_seconds", "Percent", "RFC3339", "POD_UID", "pod_of", "PortMapping",
    "ProcessesInfo", "ProcessInfo", "protocol_family", "Report", "SchemaBuilder", "service_of", "Text", "TextRule",
    "unbracketed_ipv6", "IPV6_IN_BRACKETS", "WILDCARDS",
]
