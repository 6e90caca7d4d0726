"""Metrics written by agents and read with PromQL: samples and their limits,
the InfluxDB line protocol and JSON write bodies, the embedded store (series
per tenant at 15 s) and the embedded PromQL engine. Pure: no I/O, no clock."""

from ._answers import Clock as Clock
from ._answers import format_value as format_value
from ._answers import instant_query as instant_query
from ._answers import label_names as label_names
from ._answers import label_values as label_values
from ._answers import range_query as range_query
from ._answers import series_matching as series_matching
from ._engine import ELEMENT_COST as ELEMENT_COST
from ._engine import Budget as Budget
from ._engine import MAX_RANGE_POINTS as MAX_RANGE_POINTS
from ._engine import MAX_DURATION as MAX_DURATION
from ._engine import MAX_NESTING as MAX_NESTING
from ._engine import MAX_OPERATORS as MAX_OPERATORS
from ._engine import parse as parse
from ._engine import parse_selector as parse_selector
from ._exceptions import BadQuery as BadQuery
from ._exceptions import BadWrite as BadWrite
from ._exceptions import QueryExecutionError as QueryExecutionError
from ._exceptions import QueryTimedOut as QueryTimedOut
from ._exceptions import QueryTooExpensive as QueryTooExpensive
from ._exceptions import UnsupportedQuery as UnsupportedQuery
from ._exceptions import WriteLimitExceeded as WriteLimitExceeded
from ._json_write import parse_json_points as parse_json_points
from ._line_protocol import PRECISIONS as PRECISIONS
from ._line_protocol import parse_line_protocol as parse_line_protocol
from ._samples import DEPLOYMENT_LABEL as DEPLOYMENT_LABEL
from ._samples import TENANT_LABEL as TENANT_LABEL
from ._samples import Labels as Labels
from ._samples import Sample as Sample
from ._samples import WriteLimits as WriteLimits
from ._store import RESOLUTION as RESOLUTION
from ._store import MergedView as MergedView
from ._store import MetricStore as MetricStore
from ._store import SeriesView as SeriesView
from ._store import StoreLimits as StoreLimits
from ._store import StoreStats as StoreStats
from ._store import TenantSeries as TenantSeries
from ._store import WriteOutcome as WriteOutcome

__all__ = [
    "DEPLOYMENT_LABEL", "ELEMENT_COST", "MAX_DURATION", "MAX_NESTING", "MAX_OPERATORS", "MAX_RANGE_POINTS", "PRECISIONS", "RESOLUTION", "TENANT_LABEL", "BadQuery", "BadWrite", "Budget", "Clock", "Labels",
    "MergedView", "MetricStore", "SeriesView", "QueryExecutionError", "QueryTimedOut", "QueryTooExpensive", "Sample", "StoreLimits", "StoreStats", "TenantSeries", "UnsupportedQuery",
    "WriteLimitExceeded", "WriteLimits", "WriteOutcome", "format_value", "instant_query", "label_names", "label_values", "parse",
    "parse_line_protocol", "parse_json_points", "parse_selector", "range_query", "series_matching",
]
