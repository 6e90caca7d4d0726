"""PromQL evaluation over one tenant's series: the embedded engine.

The query is parsed by ``promql-parser`` (a maintained Rust parser following
Prometheus' grammar); this module evaluates the part of the language that
operators use on a dashboard: selectors with ``=``, ``!=``, ``=~``, ``!~``
(RE2 regular expressions, anchored, as in Prometheus), ``offset``, the rate
and ``*_over_time`` functions, ``histogram_quantile``, the aggregations
``sum``/``avg``/``min``/``max``/``count`` with ``by``/``without``, arithmetic
and comparisons with scalars and between vectors (one-to-one), and
``and``/``or``/``unless``. Anything else is refused with
``UnsupportedQuery`` naming it, never answered wrongly.

Semantics follow Prometheus: an instant selector takes the newest sample in
the 5-minute lookback window; ``rate`` extrapolates as Prometheus does;
functions and arithmetic drop ``__name__``. Cost is bounded: every sample
read is counted against ``max_samples`` (``QueryTooExpensive`` past it).
The engine only ever sees the series it is given (one tenant's), so no matcher
can reach another tenant's.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import promql_parser as pq
import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from ._exceptions import BadQuery, QueryTooExpensive, UnsupportedQuery
from ._functions import AGGREGATIONS, ARITHMETIC, COMPARISON, RANGE_FUNCTIONS, bucket_quantile
from ._store import Series, SeriesView

LOOKBACK = 300.0
"""Seconds an instant selector looks back for a sample (Prometheus' default lookback delta)."""
MAX_RANGE_POINTS = 11_000
"""Most steps of a range query (Prometheus refuses more the same way)."""

Labels = dict[str, str]


@attrs.frozen
class Scalar:
    value: float


@attrs.frozen
class InstantVector:
    elements: list[tuple[Labels, float]]


@attrs.frozen
class RangeVector:
    """A matrix selector's samples (only as an instant query's result or a function's argument)."""

    series: list[tuple[Labels, Sequence[float], Sequence[float]]]


Value = Scalar | InstantVector | RangeVector

_RE_OPTIONS = re2.Options()
_RE_OPTIONS.log_errors = False
_MAX_REGEXES = 1024
_regexes: dict[str, Any] = {}


def _regex(pattern: str) -> Any:
    found = _regexes.get(pattern)
    if found is None:
        try:
            found = re2.compile(pattern, _RE_OPTIONS)
        except re2.error as exc:
            raise BadQuery(f"invalid regular expression {pattern!r}: {exc}") from None
        if len(_regexes) >= _MAX_REGEXES:
            _regexes.clear()
        _regexes[pattern] = found
    return found


def _matches(matcher: pq.Matcher, labels: Labels, regex_answers: dict[tuple[str, str], bool]) -> bool:
    value = labels.get(matcher.name, "")
    op = matcher.op
    if op == pq.MatchOp.Equal:
        return value == matcher.value
    if op == pq.MatchOp.NotEqual:
        return value != matcher.value
    # Label values repeat across series (a host has many): match each value once.
    key = (matcher.value, value)
    found = regex_answers.get(key)
    if found is None:
        found = regex_answers[key] = _regex(matcher.value).fullmatch(value) is not None
    return found if op == pq.MatchOp.Re else not found


def select(view: SeriesView, selector: pq.VectorSelector,
           regex_answers: dict[tuple[str, str], bool] | None = None) -> list[Series]:
    """The series of ``view`` that ``selector``'s matchers (and its ``or`` groups) match.
    Each group starts from the series of its most selective equality matcher."""
    answers = regex_answers if regex_answers is not None else {}
    groups = selector.matchers.or_matchers or [selector.matchers.matchers]
    chosen: dict[int, Series] = {}
    for group in groups:
        pairs = [(m.name, m.value) for m in group if m.op == pq.MatchOp.Equal and m.value]
        if selector.name is not None:
            pairs.append(("__name__", selector.name))
        candidates = (view.with_pair(*min(pairs, key=lambda pair: view.count_with_pair(*pair))) if pairs
                      else view.named(None))
        name = selector.name
        for series in candidates:
            if id(series) in chosen:
                continue
            labels = series.label_map
            if (name is None or labels["__name__"] == name) and all(_matches(m, labels, answers) for m in group):
                chosen[id(series)] = series
    return list(chosen.values())


def _without_name(labels: Labels) -> Labels:
    return {k: v for k, v in labels.items() if k != "__name__"}


def label_key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class Evaluator:
    """Evaluates parsed PromQL against one tenant's series, counting samples read."""

    def __init__(self, view: SeriesView, max_samples: int) -> None:
        self._view = view
        self._budget = max_samples
        self._max_samples = max_samples
        self._selected: dict[str, list[Series]] = {}
        self._regex_answers: dict[tuple[str, str], bool] = {}
        # Label sets derived from another (by its id), kept with it so that the id
        # stays its own: a range query derives the same ones at every step.
        self._stripped: dict[int, tuple[Labels, Labels]] = {}
        self._grouped: dict[tuple[tuple[bool, bool, tuple[str, ...]], int],
                            tuple[Labels, tuple[Labels, tuple[tuple[str, str], ...]]]] = {}

    def _charge(self, samples: int) -> None:
        self._budget -= samples
        if self._budget < 0:
            raise QueryTooExpensive(f"the query would read more than {self._max_samples} samples "
                                    "(metrics.max_query_samples); narrow the selectors, the range or the step")

    def _series(self, selector: pq.VectorSelector) -> list[Series]:
        if selector.at is not None:
            raise UnsupportedQuery("the @ modifier is not supported by the embedded engine")
        key = str(selector)
        found = self._selected.get(key)
        if found is None:
            found = self._selected[key] = select(self._view, selector, self._regex_answers)
            self._charge(len(found))
        return found

    def evaluate(self, expr: pq.Expr, at: float) -> Value:
        """The value of ``expr`` at unix time ``at``."""
        if isinstance(expr, pq.NumberLiteral):
            return Scalar(expr.val)
        if isinstance(expr, pq.ParenExpr):
            return self.evaluate(expr.expr, at)
        if isinstance(expr, pq.VectorSelector):
            return self._instant(expr, at)
        if isinstance(expr, pq.MatrixSelector):
            return self._range(expr, at)
        if isinstance(expr, pq.Call):
            return self._call(expr, at)
        if isinstance(expr, pq.AggregateExpr):
            return self._aggregate(expr, at)
        if isinstance(expr, pq.BinaryExpr):
            return self._binary(expr, at)
        if isinstance(expr, pq.UnaryExpr):
            inner = self.evaluate(expr.expr, at)
            if isinstance(inner, Scalar):
                return Scalar(-inner.value)
            if isinstance(inner, InstantVector):
                return InstantVector([(_without_name(labels), -value) for labels, value in inner.elements])
        if isinstance(expr, pq.SubqueryExpr):
            raise UnsupportedQuery("subqueries are not supported by the embedded engine")
        if isinstance(expr, pq.StringLiteral):
            raise UnsupportedQuery("string results are not supported by the embedded engine")
        raise UnsupportedQuery(f"{type(expr).__name__} is not supported by the embedded engine")

    def _without_name(self, labels: Labels) -> Labels:
        cached = self._stripped.get(id(labels))
        if cached is None or cached[0] is not labels:
            cached = self._stripped[id(labels)] = (labels, _without_name(labels))
        return cached[1]

    def _offset(self, selector: pq.VectorSelector, at: float) -> float:
        return at - selector.offset.total_seconds() if selector.offset is not None else at

    def _instant(self, selector: pq.VectorSelector, at: float) -> InstantVector:
        at = self._offset(selector, at)
        found = self._series(selector)
        self._charge(len(found))
        elements = []
        for series in found:
            index = bisect.bisect_right(series.times, at) - 1
            if index >= 0 and series.times[index] > at - LOOKBACK:
                elements.append((series.label_map, series.values[index]))
        return InstantVector(elements)

    def _range(self, matrix: pq.MatrixSelector, at: float) -> RangeVector:
        selector = matrix.vector_selector
        end = self._offset(selector, at)
        start = end - matrix.range.total_seconds()
        chosen: list[tuple[Labels, Sequence[float], Sequence[float]]] = []
        found = self._series(selector)
        read = len(found)  # each series is looked at, whether it has samples here or not
        for series in found:
            times = series.times
            low = bisect.bisect_right(times, start)
            high = bisect.bisect_right(times, end, low)
            if high > low:
                read += high - low
                chosen.append((series.label_map, times[low:high], series.values[low:high]))
        self._charge(read)
        return RangeVector(chosen)

    def _call(self, call: pq.Call, at: float) -> Value:
        name = call.func.name
        function = RANGE_FUNCTIONS.get(name)
        if function is not None:
            argument = call.args[0]
            if isinstance(argument, pq.SubqueryExpr):
                raise UnsupportedQuery("subqueries are not supported by the embedded engine")
            if not isinstance(argument, pq.MatrixSelector):
                raise UnsupportedQuery(f"{name}() of anything but a range selector is not supported by the "
                                       "embedded engine")
            ranged = self._range(argument, at)
            end = self._offset(argument.vector_selector, at)
            start = end - argument.range.total_seconds()
            elements = []
            for labels, times, values in ranged.series:
                result = function(times, values, start, end)
                if result is not None:
                    elements.append((self._without_name(labels), result))
            return InstantVector(elements)
        if name == "histogram_quantile":
            quantile = self.evaluate(call.args[0], at)
            vector = self.evaluate(call.args[1], at)
            assert isinstance(quantile, Scalar) and isinstance(vector, InstantVector)  # the parser checked the types
            return self._histogram_quantile(quantile.value, vector)
        supported = ", ".join([*RANGE_FUNCTIONS, "histogram_quantile"])
        raise UnsupportedQuery(f"function {name}() is not supported by the embedded engine (supported: {supported})")

    @staticmethod
    def _histogram_quantile(q: float, vector: InstantVector) -> InstantVector:
        groups: dict[tuple[tuple[str, str], ...], tuple[Labels, list[tuple[float, float]]]] = {}
        for labels, value in vector.elements:
            bound = labels.get("le")
            if bound is None:
                continue
            try:
                upper = float(bound)  # "+Inf" included
            except ValueError:
                continue
            rest = {k: v for k, v in labels.items() if k not in ("le", "__name__")}
            groups.setdefault(label_key(rest), (rest, []))[1].append((upper, value))
        return InstantVector([(rest, bucket_quantile(q, buckets)) for rest, buckets in groups.values()])

    def _aggregate(self, expr: pq.AggregateExpr, at: float) -> InstantVector:
        op = str(expr.op)
        combine = AGGREGATIONS.get(op)
        if combine is None:
            raise UnsupportedQuery(f"aggregation {op} is not supported by the embedded engine "
                                   f"(supported: {', '.join(AGGREGATIONS)})")
        vector = self.evaluate(expr.expr, at)
        assert isinstance(vector, InstantVector)  # the parser checked the type
        modifier = expr.modifier
        by = modifier is not None and modifier.type == pq.AggModifierType.By
        named = set(modifier.labels) if modifier is not None else set()
        dropped = {*named, "__name__"}
        # The parser's node objects are made anew on access: the grouping is known by what it says.
        spec = (modifier is not None, by, tuple(sorted(named)))
        groups: dict[tuple[tuple[str, str], ...], tuple[Labels, list[float]]] = {}
        for labels, value in vector.elements:
            cached = self._grouped.get((spec, id(labels)))
            if cached is None or cached[0] is not labels:
                if modifier is None:
                    kept: Labels = {}
                elif by:
                    kept = {k: v for k, v in labels.items() if k in named and v}
                else:
                    kept = {k: v for k, v in labels.items() if k not in dropped}
                cached = self._grouped[(spec, id(labels))] = (labels, (kept, label_key(kept)))
            kept, key = cached[1]
            group = groups.get(key)
            if group is None:
                groups[key] = (kept, [value])
            else:
                group[1].append(value)
        return InstantVector([(kept, combine(values)) for kept, values in groups.values()])

    def _binary(self, expr: pq.BinaryExpr, at: float) -> Value:
        op = str(expr.op)
        left = self.evaluate(expr.lhs, at)
        right = self.evaluate(expr.rhs, at)
        modifier = expr.modifier
        return_bool = modifier is not None and modifier.return_bool
        if isinstance(left, Scalar) and isinstance(right, Scalar):
            if op in ARITHMETIC:
                return Scalar(ARITHMETIC[op](left.value, right.value))
            if op in COMPARISON:
                return Scalar(float(COMPARISON[op](left.value, right.value)))
        elif isinstance(left, InstantVector) and isinstance(right, Scalar):
            return self._with_scalar(op, left, right.value, scalar_left=False, return_bool=return_bool)
        elif isinstance(left, Scalar) and isinstance(right, InstantVector):
            return self._with_scalar(op, right, left.value, scalar_left=True, return_bool=return_bool)
        elif isinstance(left, InstantVector) and isinstance(right, InstantVector):
            return self._vectors(op, left, right, modifier)
        raise UnsupportedQuery(f"operator {op} on these operands is not supported by the embedded engine")

    @staticmethod
    def _with_scalar(op: str, vector: InstantVector, scalar: float, *, scalar_left: bool,
                     return_bool: bool) -> InstantVector:
        elements = []
        if op in ARITHMETIC:
            apply = ARITHMETIC[op]
            for labels, value in vector.elements:
                result = apply(scalar, value) if scalar_left else apply(value, scalar)
                elements.append((_without_name(labels), result))
        elif op in COMPARISON:
            compare = COMPARISON[op]
            for labels, value in vector.elements:
                holds = compare(scalar, value) if scalar_left else compare(value, scalar)
                if return_bool:
                    elements.append((_without_name(labels), float(holds)))
                elif holds:
                    elements.append((labels, value))
        else:
            raise UnsupportedQuery(f"operator {op} between a vector and a scalar is not supported")
        return InstantVector(elements)

    @staticmethod
    def _signature(modifier: pq.BinModifier | None) -> Callable[[Labels], tuple[tuple[str, str], ...]]:
        matching = modifier.matching if modifier is not None else None
        if matching is None:
            return lambda labels: label_key(_without_name(labels))
        names = set(matching.labels)
        if matching.type == pq.LabelModifierType.Include:
            return lambda labels: tuple(sorted((k, v) for k, v in labels.items() if k in names))
        return lambda labels: tuple(sorted((k, v) for k, v in labels.items() if k not in names and k != "__name__"))

    def _vectors(self, op: str, left: InstantVector, right: InstantVector,
                 modifier: pq.BinModifier | None) -> InstantVector:
        signature = self._signature(modifier)
        if op in ("and", "or", "unless"):
            right_keys = {signature(labels) for labels, _ in right.elements}
            if op == "and":
                return InstantVector([e for e in left.elements if signature(e[0]) in right_keys])
            if op == "unless":
                return InstantVector([e for e in left.elements if signature(e[0]) not in right_keys])
            left_keys = {signature(labels) for labels, _ in left.elements}
            return InstantVector([*left.elements, *(e for e in right.elements if signature(e[0]) not in left_keys)])
        if modifier is not None and modifier.card not in (pq.VectorMatchCardinality.OneToOne, None):
            raise UnsupportedQuery("group_left/group_right matching is not supported by the embedded engine")
        by_signature: dict[tuple[tuple[str, str], ...], float] = {}
        for labels, value in right.elements:
            sig = signature(labels)
            if sig in by_signature:
                raise UnsupportedQuery("many-to-many matching: the right-hand side has several series for "
                                       f"{dict(sig)}; the embedded engine matches one-to-one only")
            by_signature[sig] = value
        matching = modifier.matching if modifier is not None else None
        return_bool = modifier is not None and modifier.return_bool
        elements = []
        for labels, value in left.elements:
            other = by_signature.get(signature(labels))
            if other is None:
                continue
            if matching is not None and matching.type == pq.LabelModifierType.Include:
                result_labels = {k: v for k, v in labels.items() if k in matching.labels}
            elif matching is not None:
                result_labels = {k: v for k, v in labels.items() if k not in matching.labels and k != "__name__"}
            else:
                result_labels = _without_name(labels)
            if op in ARITHMETIC:
                elements.append((result_labels, ARITHMETIC[op](value, other)))
            elif op in COMPARISON:
                holds = COMPARISON[op](value, other)
                if return_bool:
                    elements.append((result_labels, float(holds)))
                elif holds:
                    elements.append((labels, value))
            else:
                raise UnsupportedQuery(f"operator {op} is not supported by the embedded engine")
        return InstantVector(elements)


MAX_NESTING = 100
"""Deepest a query's parentheses (and braces, brackets) may nest."""
MAX_OPERATORS = 250
"""Most operators a query may hold. Both bound how deep its expression tree
can be: the parser (Rust) recurses and overflows its thread's stack, killing
the process, on ~5,000 chained operators (a 30 KB query); the evaluator
recurses too (Python's limit: ~1,000). Dashboards' queries hold a few dozen."""
_OPERATOR_CHARACTERS = frozenset("+-*/%^<>")
"""With ``==`` and ``!=``: what a binary or unary operator is spelled with (a
matcher's ``=``, ``=~`` and ``!~`` nest nothing)."""
_OPERATOR_WORDS = frozenset({"and", "or", "unless", "atan2"})
_QUOTES = frozenset("\"'`")


def check_size(text: str, parameter: str) -> None:
    """``BadQuery`` naming ``parameter`` if ``text`` nests deeper than
    ``MAX_NESTING`` or holds more than ``MAX_OPERATORS`` operators, read as
    tokens outside strings and comments, as the parser's lexer reads them
    (a comment ends at "\n" or "\r"), before the parser sees it. Counts
    generously (a number's exponent sign, ``!=`` in a matcher): only a query
    far larger than any real one is refused."""
    depth = deepest = operators = 0
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char in _QUOTES:
            index += 1
            while index < end and text[index] != char:
                index += 2 if text[index] == "\\" and char != "`" else 1
        elif char == "#":
            # The parser's lexer ends a comment at either: one ended at "\n"
            # only let a query hide thousands of operators (and crash it).
            ends = [at for at in (text.find("\n", index), text.find("\r", index)) if at != -1]
            index = min(ends) if ends else end
        elif char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
        elif char in _OPERATOR_CHARACTERS:
            operators += 1
        elif char in "=!" and text.startswith("=", index + 1):
            operators += 1
            index += 1
        elif char.isalpha() or char == "_":
            start = index
            while index + 1 < end and (text[index + 1].isalnum() or text[index + 1] in "_:"):
                index += 1
            if text[start:index + 1].lower() in _OPERATOR_WORDS:
                operators += 1
        index += 1
    if deepest > MAX_NESTING:
        raise BadQuery(f"invalid parameter \"{parameter}\": nested {deepest} deep, at most {MAX_NESTING}")
    if operators > MAX_OPERATORS:
        raise BadQuery(f"invalid parameter \"{parameter}\": {operators} operators, at most {MAX_OPERATORS}")


def parse(query: str) -> pq.Expr:
    """Parse PromQL; ``BadQuery`` with the parser's message when it is not
    PromQL, or when it is too large to parse safely (``check_size``)."""
    check_size(query, "query")
    try:
        return pq.parse(query)
    except ValueError as exc:
        raise BadQuery(f"invalid parameter \"query\": {exc}") from None


def parse_selector(text: str) -> pq.VectorSelector:
    """A series selector (``match[]`` of the series and label APIs)."""
    check_size(text, "match[]")
    try:
        expr = pq.parse(text)
    except ValueError as exc:
        raise BadQuery(f"invalid parameter \"match[]\": {exc}") from None
    if not isinstance(expr, pq.VectorSelector):
        raise BadQuery(f"invalid parameter \"match[]\": {text[:80]!r} is not a series selector")
    return expr
