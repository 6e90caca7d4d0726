"""The topology graph: hosts, containers, processes, pods and services, and the
connections between them, merged from agents' reports. Pure: no I/O, no trio."""

from ._controls import ACTIONS as CONTROL_ACTIONS
from ._controls import allowed_actions as allowed_actions
from ._controls import allows as control_allowed
from ._controls import controls_for as controls_for
from ._controls import parameter_problem as control_parameter_problem
from ._edge_cache import EDGE_CACHE_BYTES as EDGE_CACHE_BYTES
from ._edge_cache import EdgeCache as EdgeCache
from ._edge_cache import EdgeCacheStats as EdgeCacheStats
from ._graph import Expired as Expired
from ._graph import TopologyGraph as TopologyGraph
from ._graph import merge_nodes as merge_nodes
from ._listing import MAX_PAGE as MAX_PAGE
from ._listing import SUMMARY_FIELDS as SUMMARY_FIELDS
from ._listing import BadListing as BadListing
from ._listing import Listing as Listing
from ._listing import id_order as id_order
from ._listing import id_order_steps as id_order_steps
from ._listing import visible_counts_steps as visible_counts_steps
from ._model import NODE_FIELDS as NODE_FIELDS
from ._model import WHOLE_KINDS as WHOLE_KINDS
from ._model import WHOLE_VIEWS as WHOLE_VIEWS
from ._model import Edge as Edge
from ._model import Node as Node
from ._model import NodeKind as NodeKind
from ._model import View as View
from ._model import container_id as container_id
from ._model import SCOPE_CHARS as SCOPE_CHARS
from ._model import host_id as host_id
from ._model import id_scope as id_scope
from ._model import node_scope as node_scope
from ._model import reported_container as reported_container
from ._model import visible_to as visible_to
from ._model import pod_id as pod_id
from ._model import process_group_id as process_group_id
from ._model import process_id as process_id
from ._model import service_id as service_id
from ._partition import Partition as Partition
from ._partition import build_partition as build_partition
from ._partition import SHAPE_BYTES as SHAPE_BYTES
from ._partition import report_shape as report_shape
from ._process_groups import group_node as process_group_node
from ._process_groups import group_of as process_group_of
from ._snapshot import CACHE_LIMIT as CACHE_LIMIT
from ._snapshot import TopologyDiff as TopologyDiff
from ._snapshot import TopologySnapshot as TopologySnapshot
from ._snapshot import edge_kind as edge_kind
from ._snapshot import kind_of as kind_of

__all__ = [
    "BadListing", "CACHE_LIMIT", "CONTROL_ACTIONS", "EDGE_CACHE_BYTES", "Edge", "EdgeCache", "EdgeCacheStats", "Expired", "Listing",
    "MAX_PAGE", "NODE_FIELDS", "Node", "NodeKind", "Partition", "SCOPE_CHARS", "SHAPE_BYTES", "SUMMARY_FIELDS",
    "TopologyDiff", "TopologyGraph", "TopologySnapshot", "View", "WHOLE_KINDS", "WHOLE_VIEWS", "allowed_actions",
    "build_partition", "container_id", "control_allowed", "control_parameter_problem", "controls_for", "edge_kind",
    "host_id", "id_order", "id_order_steps", "id_scope", "kind_of", "merge_nodes", "node_scope", "pod_id",
    "process_group_id", "process_group_node", "process_group_of", "process_id", "report_shape", "reported_container",
    "service_id", "visible_counts_steps", "visible_to",
]
