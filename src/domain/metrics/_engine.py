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

Semantics follow Prometheus 3: an instant selector takes the newest sample
in the 5-minute lookback window, and a range selector the samples of its
range, both left-open (a sample exactly at the window's start is out, as
from Prometheus 3.0; 2.x took it in, so answers at exact multiples of the
samples' spacing differ from a 2.x server's by that sample); ``rate``
extrapolates as Prometheus does; functions but ``last_over_time``, and
arithmetic, drop ``__name__``; a result with two series of one label set is
an error, as there.

Cost is bounded by a ``Budget``: every sample read costs one unit, and every
series a selector examines (matching or not) and every value an operation
reads or produces costs ``ELEMENT_COST`` (and each node of the expression
evaluated at each step ``NODE_COST``), and matching a label value against a
regular expression what RE2 may spend on it: the value's bytes times the
pattern's program (``Pattern.cost``), charged before it runs. Past
``max_samples`` units the query is refused with ``QueryTooExpensive``; past
the deadline (the clock is read every ``CLOCK_EVERY`` units, a few
milliseconds of work) with ``QueryTimedOut``. The engine is synchronous: its
caller runs it off the event loop (the metrics actor, in a worker thread).
The engine only ever sees the series it is given (one tenant's), so no matcher
can reach another tenant's.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs
import promql_parser as pq
import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from ._exceptions import BadQuery, QueryExecutionError, QueryTimedOut, QueryTooExpensive, UnsupportedQuery
from ._functions import AGGREGATIONS, ARITHMETIC, COMPARISON, RANGE_FUNCTIONS, bucket_quantile
from ._store import Series, SeriesView

LOOKBACK = 300.0
"""Seconds an instant selector looks back for a sample (Prometheus' default lookback delta)."""
MAX_RANGE_POINTS = 11_000
"""Most steps of a range query (Prometheus refuses more the same way)."""
ELEMENT_COST = 10
"""Units of the budget (``metrics.max_query_samples``) that examining one
series, or reading or producing one value in an operation, costs; a sample
read in a range costs one. Measured: a sample costs 40-100 ns to read and
fold, a series or a value 1-4 us of Python (matchers, label sets)."""
REGEX_COST = 12
"""Units that calling RE2 on one label value costs, whatever its length (from
Python: 1.6-3 us), on top of its steps (``REGEX_STEPS_PER_UNIT``)."""
REGEX_STEPS_PER_UNIT = 8
"""RE2 steps (one byte of the value against one instruction of the pattern's
program) that one unit pays for. RE2 runs in time linear in the value, but
where its DFA gives up (``.*a.{20}b.*`` on values of a's and b's) its NFA
steps through the program for every byte: measured 6-27 ns a step (1.7-5 ms
for 1,000 bytes and that pattern's 182 instructions); with its DFA, 0.1-2 ns.
Charged at the NFA's rate, as a bound: a flat 20 units a match let one query
of 12 such matchers over 2,000 values of 1 KB run 47 s on the event loop."""
LITERALS_COST = 2
"""Units that looking a label value up in a matcher's set of literals costs
(``Pattern``: ``a|b|c``, as dashboards write a multi-value variable)."""
NODE_COST = 20
"""Units that evaluating one node of the expression (at one step) costs, whatever
its operands: reading the parsed query's nodes from Python takes microseconds."""
CLOCK_EVERY = 10_000
"""Units charged between two readings of the clock: 1-4 ms of work (a unit is
100-400 ns of Python), so a query stops within milliseconds of its deadline
(read every 50,000 units, with regular expressions under-charged, queries ran
7-18 s past a 30 s timeout; now, measured: 5.01-5.03 s for a 5 s one)."""
_SCAN_CHUNK = 256
"""Series a selector examines between two charges: a scan of a large tenant stops early."""

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
_RE_OPTIONS.max_mem = 1 << 20
"""Bytes each compiled pattern may hold (RE2's default 8 MiB): its program (a
pattern needing more is refused as too large) and the DFA states its matches
build, which stay with it; past that RE2 goes on without the DFA, at the
NFA's speed the budget prices it at anyway (``Pattern.cost``)."""
_MAX_REGEXES = 64
"""Compiled patterns kept between queries (a dashboard's few). With RE2's
default memory and 1,024 of them, one viewer's queries of 40 patterns each
pinned ~550 MB of DFA states for as long as the server ran."""
_regexes: dict[str, Pattern] = {}
_META = frozenset("\\.+*?()|[]{}^$")
"""What RE2 reads as other than itself outside a character class."""
_ESCAPED_LITERALS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
"""What a backslash before it makes a literal character (RE2: any punctuation)."""


class Pattern:
    """A matcher's regular expression, matched against whole label values (as
    Prometheus anchors it), with what each match costs the budget.

    An alternation of literals (``web|api``, ``host1\\.example|host2\\.example``:
    what a dashboard's multi-value variable becomes) is a set looked up, as
    Prometheus does (its "set matches"); anything else is RE2's."""

    __slots__ = ("_literals", "_regex", "_steps_per_byte")

    def __init__(self, pattern: str) -> None:
        """Raises ``BadQuery`` naming the pattern when RE2 cannot compile it."""
        self._literals = literal_alternatives(pattern)
        self._regex: Any = None
        self._steps_per_byte = 0
        if self._literals is None:
            try:
                self._regex = re2.compile(pattern, _RE_OPTIONS)
            except re2.error as exc:
                raise BadQuery(f"invalid regular expression {pattern!r}: {exc}") from None
            self._steps_per_byte = self._regex.programsize

    def matches(self, value: str) -> bool:
        """Whether the whole of ``value`` matches."""
        if self._literals is not None:
            return value in self._literals
        return self._regex.fullmatch(value) is not None

    def cost(self, value: str) -> int:
        """Units that matching ``value`` may take: ``LITERALS_COST`` for a set
        lookup; for RE2, ``REGEX_COST`` plus its steps, the value's UTF-8 bytes
        times the pattern's program (``REGEX_STEPS_PER_UNIT``)."""
        if self._literals is not None:
            return LITERALS_COST
        size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
        return REGEX_COST + size * self._steps_per_byte // REGEX_STEPS_PER_UNIT


def literal_alternatives(pattern: str) -> frozenset[str] | None:
    """The literals ``pattern`` is an alternation of (within one optional group,
    ``(...)`` or ``(?:...)``; a backslash before punctuation makes it literal),
    or None when it is more than that (a class, a repetition, a flag, an escape
    such as ``\\d``): matching it whole is then the same as looking the value up."""
    inner = pattern
    if pattern.endswith(")"):
        if pattern.startswith("(?:"):
            inner = pattern[3:-1]
        elif pattern.startswith("(") and not pattern.startswith("(?"):
            inner = pattern[1:-1]
    literals: list[str] = []
    current: list[str] = []
    index, end = 0, len(inner)
    while index < end:
        char = inner[index]
        if char == "\\":
            if index + 1 == end or inner[index + 1] not in _ESCAPED_LITERALS:
                return None
            current.append(inner[index + 1])
            index += 2
            continue
        if char == "|":
            literals.append("".join(current))
            current = []
        elif char in _META:
            return None
        else:
            current.append(char)
        index += 1
    literals.append("".join(current))
    return frozenset(literals)


def _regex(pattern: str) -> Pattern:
    found = _regexes.get(pattern)
    if found is None:
        found = Pattern(pattern)
        if len(_regexes) >= _MAX_REGEXES:
            _regexes.clear()
        _regexes[pattern] = found
    return found


RegexAnswers = dict[str, dict[str, bool]]
"""Per pattern, whether each label value seen matches it: label values repeat
across series (a host has many), so each is matched once per query."""

_EQUAL, _NOT_EQUAL, _RE, _NOT_RE = range(4)


def _op(op: pq.MatchOp) -> int:
    # The parser's enum is unhashable and slow to compare: compared once per matcher, not per series.
    return next(code for code, known in ((_EQUAL, pq.MatchOp.Equal), (_NOT_EQUAL, pq.MatchOp.NotEqual),
                                         (_RE, pq.MatchOp.Re), (_NOT_RE, pq.MatchOp.NotRe)) if op == known)


class Budget:
    """The work one query (or series/labels lookup) may still do: ``max_samples``
    units (see ``ELEMENT_COST``), and, with a ``deadline``, until ``clock()``
    passes it.

    Error handling: ``charge`` raises ``QueryTooExpensive`` once the units are
    spent or the deadline passed (checked every ``CLOCK_EVERY`` units, so the
    query stops within a few milliseconds of it)."""

    __slots__ = ("_clock", "_deadline", "_left", "_max_samples", "_until_clock")

    def __init__(self, max_samples: int, *, deadline: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        """Args:
            max_samples: ``metrics.max_query_samples``.
            deadline: when the query must be done, on ``clock``'s scale; None: no deadline.
            clock: a monotonic clock (``time.monotonic``); required with ``deadline``.
        """
        if deadline is not None and clock is None:
            raise ValueError("a deadline needs the clock it is read on")
        self._max_samples = max_samples
        self._left = max_samples
        self._deadline = deadline
        self._clock = clock
        self._until_clock = 0  # the first charge reads the clock: a query asked too late stops at once

    def charge(self, units: int) -> None:
        """Spend ``units`` of work."""
        self._left -= units
        if self._left < 0:
            raise QueryTooExpensive(f"the query would read more than {self._max_samples} samples "
                                    "(metrics.max_query_samples; a series examined or a value computed counts "
                                    f"as {ELEMENT_COST}); narrow the selectors, the range or the step")
        if self._deadline is not None:
            self._until_clock -= units
            if self._until_clock <= 0:
                self._until_clock = CLOCK_EVERY
                assert self._clock is not None  # checked when made
                if self._clock() > self._deadline:
                    raise _timed_out()

    def charge_elements(self, count: int) -> None:
        """Spend what examining ``count`` series, or reading or producing ``count`` values, costs."""
        self.charge(count * ELEMENT_COST)

    def scanned(self, candidates: Iterable[Series]) -> Iterator[Series]:
        """``candidates``, each charged as examined (in chunks: a long scan stops early)."""
        examined = 0
        for series in candidates:
            examined += 1
            if examined == _SCAN_CHUNK:
                self.charge_elements(examined)
                examined = 0
            yield series
        self.charge_elements(examined)


def _timed_out() -> Exception:
    return QueryTimedOut("query timed out in expression evaluation (metrics.query_timeout)")


def _execution_error(message: str) -> Exception:
    return QueryExecutionError(message)


def select(view: SeriesView, selector: pq.VectorSelector, budget: Budget,
           regex_answers: RegexAnswers | None = None) -> list[Series]:
    """The series of ``view`` that ``selector``'s matchers (and its ``or`` groups) match.
    Each group starts from the series of its most selective equality matcher (or,
    without one, from every series). Every series examined, matching or not, is
    charged to ``budget`` as it goes (``_SCAN_CHUNK`` at a time), and every label
    value matched against a regular expression before it is (``Pattern.cost``):
    a scan of a large tenant, or a long match, stops as soon as the budget or
    the deadline is spent."""
    answers = regex_answers if regex_answers is not None else {}
    groups = selector.matchers.or_matchers or [selector.matchers.matchers]
    name = selector.name
    chosen: dict[int, Series] = {}
    for group in groups:
        pairs = [(m.name, m.value) for m in group if m.op == pq.MatchOp.Equal and m.value]
        if name is not None:
            pairs.append(("__name__", name))
        candidates = (view.with_pair(*min(pairs, key=lambda pair: view.count_with_pair(*pair))) if pairs
                      else view.named(None))
        tests = []
        for m in group:
            op = _op(m.op)
            pattern: Any = _regex(m.value) if op in (_RE, _NOT_RE) else None  # a Pattern wherever it is read
            tests.append((m.name, op, m.value, pattern, answers.setdefault(m.value, {}) if pattern is not None else {}))
        examined = 0  # since the last charge
        for series in candidates:
            examined += 1
            if examined == _SCAN_CHUNK:
                budget.charge_elements(examined)
                examined = 0
            if id(series) in chosen:
                continue
            labels = series.label_map
            if name is not None and labels["__name__"] != name:
                continue
            for label, op, value, pattern, seen in tests:
                held = labels.get(label, "")
                if op == _EQUAL:
                    holds = held == value
                elif op == _NOT_EQUAL:
                    holds = held != value
                else:
                    found = seen.get(held)
                    if found is None:
                        # Charged before it runs: one match of a long value may take milliseconds.
                        budget.charge(pattern.cost(held))
                        found = seen[held] = pattern.matches(held)
                    holds = found if op == _RE else not found
                if not holds:
                    break
            else:
                chosen[id(series)] = series
        budget.charge_elements(examined)
    return list(chosen.values())


def _without_name(labels: Labels) -> Labels:
    # Label sets are never changed once made: one without a name is shared as it is.
    if "__name__" not in labels:
        return labels
    return {k: v for k, v in labels.items() if k != "__name__"}


def label_key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _label_text(labels: Labels | tuple[tuple[str, str], ...]) -> str:
    """A label set as Prometheus writes it in messages: ``{job="web", le="1"}``."""
    pairs = sorted(labels.items()) if isinstance(labels, dict) else labels
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in pairs) + "}"


def _names_dropped(inputs: Iterable[Labels], results: list[tuple[Labels, float]]) -> None:
    """Prometheus' "vector cannot contain metrics with the same labelset": ``results``
    are made of ``inputs`` (distinct label sets) without ``__name__``, so two can be
    equal only when the inputs had more than one name."""
    names = {labels.get("__name__") for labels in inputs}
    if len(names) < 2:
        return
    seen: set[frozenset[tuple[str, str]]] = set()
    for labels, _ in results:
        key = frozenset(labels.items())
        if key in seen:
            raise _execution_error("vector cannot contain metrics with the same labelset")
        seen.add(key)


class Evaluator:
    """Evaluates parsed PromQL against one tenant's series, charging its work to a ``Budget``."""

    def __init__(self, view: SeriesView, budget: Budget) -> None:
        self._view = view
        self._budget = budget
        self._selected: dict[str, list[Series]] = {}
        self._regex_answers: RegexAnswers = {}
        # Label sets derived from another (by its id), kept with it so that the id
        # stays its own: a range query derives the same ones at every step.
        self._stripped: dict[int, tuple[Labels, Labels]] = {}
        self._grouped: dict[tuple[tuple[bool, bool, tuple[str, ...]], int],
                            tuple[Labels, tuple[Labels, tuple[tuple[str, str], ...]]]] = {}

    def _series(self, selector: pq.VectorSelector) -> list[Series]:
        if selector.at is not None:
            raise UnsupportedQuery("the @ modifier is not supported by the embedded engine")
        key = str(selector)
        found = self._selected.get(key)
        if found is None:
            found = self._selected[key] = select(self._view, selector, self._budget, self._regex_answers)
        return found

    def evaluate(self, expr: pq.Expr, at: float) -> Value:
        """The value of ``expr`` at unix time ``at``."""
        self._budget.charge(NODE_COST)
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
                self._budget.charge_elements(2 * len(inner.elements))
                negated = [(_without_name(labels), -value) for labels, value in inner.elements]
                _names_dropped((e[0] for e in inner.elements), negated)
                return InstantVector(negated)
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
        self._budget.charge_elements(len(found))  # each series is looked at, at every step
        elements = []
        for series in found:
            times, values = series.samples  # as one: a write may replace them (the store's docstring)
            index = bisect.bisect_right(times, at) - 1
            if index >= 0 and times[index] > at - LOOKBACK:
                elements.append((series.label_map, values[index]))
        return InstantVector(elements)

    def _range(self, matrix: pq.MatrixSelector, at: float) -> RangeVector:
        selector = matrix.vector_selector
        end = self._offset(selector, at)
        start = end - matrix.range.total_seconds()
        chosen: list[tuple[Labels, Sequence[float], Sequence[float]]] = []
        found = self._series(selector)
        self._budget.charge_elements(len(found))  # each series is looked at, whether it has samples here or not
        read = 0
        for series in found:
            times, values = series.samples  # as in ``_instant``
            low = bisect.bisect_right(times, start)
            high = bisect.bisect_right(times, end, low)
            if high > low:
                read += high - low
                chosen.append((series.label_map, times[low:high], values[low:high]))
        self._budget.charge(read)
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
            self._budget.charge_elements(len(ranged.series))
            end = self._offset(argument.vector_selector, at)
            start = end - argument.range.total_seconds()
            # Prometheus keeps the name for last_over_time alone: it acts like an offset.
            keeps_name = name == "last_over_time"
            elements = []
            for labels, times, values in ranged.series:
                result = function(times, values, start, end)
                if result is not None:
                    elements.append((labels if keeps_name else self._without_name(labels), result))
            if not keeps_name:
                _names_dropped((e[0] for e in ranged.series), elements)
            return InstantVector(elements)
        if name == "histogram_quantile":
            quantile = self.evaluate(call.args[0], at)
            vector = self.evaluate(call.args[1], at)
            assert isinstance(quantile, Scalar) and isinstance(vector, InstantVector)  # the parser checked the types
            self._budget.charge_elements(len(vector.elements))
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
        self._budget.charge_elements(len(vector.elements))
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
        self._budget.charge_elements(len(groups))
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

    def _with_scalar(self, op: str, vector: InstantVector, scalar: float, *, scalar_left: bool,
                     return_bool: bool) -> InstantVector:
        # Each value is read, and one produced: charged before the work is done.
        self._budget.charge_elements(2 * len(vector.elements))
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
            if not return_bool:
                return InstantVector(elements)  # the label sets kept as they were: still distinct
        else:
            raise UnsupportedQuery(f"operator {op} between a vector and a scalar is not supported")
        _names_dropped((e[0] for e in vector.elements), elements)
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

    @staticmethod
    def _result_labels(modifier: pq.BinModifier | None, *, drop_name: bool) -> Callable[[Labels], Labels]:
        """Prometheus' ``resultMetric`` for one-to-one matching: the left-hand side's
        labels, without ``__name__`` for arithmetic (and ``bool``), reduced to the
        ``on(...)`` labels or without the ``ignoring(...)`` ones."""
        matching = modifier.matching if modifier is not None else None
        if matching is None:
            return _without_name if drop_name else (lambda labels: labels)
        names = set(matching.labels)
        if matching.type == pq.LabelModifierType.Include:
            if drop_name:
                names.discard("__name__")
            return lambda labels: {k: v for k, v in labels.items() if k in names}
        if drop_name:
            names.add("__name__")
        return lambda labels: {k: v for k, v in labels.items() if k not in names}

    def _vectors(self, op: str, left: InstantVector, right: InstantVector,
                 modifier: pq.BinModifier | None) -> InstantVector:
        # Each value of either side is read, its signature made and looked up, and at most
        # as many produced as the left has: measured at about three elements' cost each.
        self._budget.charge_elements(3 * (len(left.elements) + len(right.elements)))
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
        if not left.elements or not right.elements:
            return InstantVector([])  # as Prometheus: nothing can match, nothing is checked
        by_signature: dict[tuple[tuple[str, str], ...], tuple[Labels, float]] = {}
        for labels, value in right.elements:
            sig = signature(labels)
            if sig in by_signature:
                raise _execution_error(
                    f"found duplicate series for the match group {_label_text(sig)} on the right hand-side of the "
                    f"operation: [{_label_text(labels)}, {_label_text(by_signature[sig][0])}];many-to-many matching "
                    "not allowed: matching labels must be unique on one side")
            by_signature[sig] = (labels, value)
        return_bool = modifier is not None and modifier.return_bool
        result_labels = self._result_labels(modifier, drop_name=op in ARITHMETIC or return_bool)
        matched: set[tuple[tuple[str, str], ...]] = set()
        elements = []
        for labels, value in left.elements:
            sig = signature(labels)
            found = by_signature.get(sig)
            if found is None:
                continue
            other = found[1]
            if op in ARITHMETIC:
                result = ARITHMETIC[op](value, other)
            elif op in COMPARISON:
                holds = COMPARISON[op](value, other)
                if not holds and not return_bool:
                    continue
                result = float(holds) if return_bool else value
            else:
                raise UnsupportedQuery(f"operator {op} is not supported by the embedded engine")
            # One-to-one: a second left series for the same right one would make two results of one label set.
            if sig in matched:
                raise _execution_error("multiple matches for labels: many-to-one matching must be explicit "
                                       "(group_left/group_right)")
            matched.add(sig)
            elements.append((result_labels(labels), result))
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
    tokens outside strings and comments (``_code``) before the parser sees
    it. Counts generously (a number's exponent sign, ``!=`` in a matcher):
    only a query far larger than any real one is refused."""
    code = _code(text)
    depth = deepest = operators = 0
    index, end = 0, len(code)
    while index < end:
        char = code[index]
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
        elif char in _OPERATOR_CHARACTERS:
            operators += 1
        elif char in "=!" and code.startswith("=", index + 1):
            operators += 1
            index += 1
        elif char.isalpha() or char == "_":
            start = index
            while index + 1 < end and (code[index + 1].isalnum() or code[index + 1] in "_:"):
                index += 1
            if code[start:index + 1].lower() in _OPERATOR_WORDS:
                operators += 1
        index += 1
    if deepest > MAX_NESTING:
        raise BadQuery(f"invalid parameter \"{parameter}\": nested {deepest} deep, at most {MAX_NESTING}")
    if operators > MAX_OPERATORS:
        raise BadQuery(f"invalid parameter \"{parameter}\": {operators} operators, at most {MAX_OPERATORS}")
    _check_durations(code, parameter)


def _code(text: str) -> str:
    """``text`` with the insides of its strings and its comments blanked, read
    as the parser's lexer reads them (a comment ends at "\n" or "\r": one
    ended at "\n" only let a query hide thousands of operators)."""
    blanked = list(text)
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char in _QUOTES:
            index += 1
            while index < end and text[index] != char:
                step = 2 if text[index] == "\\" and char != "`" else 1
                blanked[index:index + step] = " " * len(blanked[index:index + step])
                index += step
        elif char == "#":
            ends = [at for at in (text.find("\n", index), text.find("\r", index)) if at != -1]
            stop = min(ends) if ends else end
            blanked[index:stop] = " " * (stop - index)
            index = stop
        index += 1
    return "".join(blanked)


MAX_DURATION = (2**63 - 1) / 1e9
"""Prometheus' longest duration (int64 nanoseconds) in seconds, about 292
years: what a query's step may be (the Prometheus API's ``step``), and what
a duration given as a number (``x[300]``, ``x offset 1e9``, a
subquery's ``[3600:60]``) may reach (about 292 years). The parser (Rust)
panics on one past its range or infinite (``x[1e30]``, ``x offset inf``),
after its panic hook wrote to the process's stderr, past the log, for
every such request; a little below that, it raises ``OverflowError``."""
_NUMBER = re.compile(r"[-+]?\s*+(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)",
                     re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_UNIT_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_UNITS = re.compile(rf"(?:{_UNIT_PART.pattern})+")
"""A duration with units (``1h30m``): one past ``MAX_DURATION`` (``x[100000000y]``)
is parsed, and fails as a ``ValueError`` where the engine reads it."""
_OFFSET = re.compile(rf"\boffset\b\s*+-?\s*+({_NUMBER.pattern}|{_UNITS.pattern})(?![\w.])", re.IGNORECASE)
"""``offset`` and a duration, as words: not the start of a name (``offsetInfo``, ``job:offset9``).
Its runs of spaces are possessive (``*+``): three greedy runs of spaces with only
optional tokens between them (here and at ``_NUMBER``'s start) made a run of
spaces after ``offset`` with no number backtrack in cubic time, holding the
GIL (a viewer's 1,500 spaces stalled every request for 25 s)."""
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def _check_durations(code: str, parameter: str) -> None:
    """``BadQuery`` for a duration out of ``MAX_DURATION`` in ``code``
    (``_code``), as a number or with units: after ``offset``, or as a range or
    a subquery's range or step (the parts of a ``[...]``; labels are matched in braces)."""
    numbers = [match[1] for match in _OFFSET.finditer(code)]
    numbers += [part.strip() for match in _BRACKETS.finditer(code) for part in match[1].split(":")
                if _NUMBER.fullmatch(part.strip()) or _UNITS.fullmatch(part.strip())]
    for number in numbers:
        digits = "".join(number.split())
        value: float | int
        if _UNITS.fullmatch(digits):
            value = sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _UNIT_PART.findall(digits))
        else:
            # A hex number as an int (a float of 300 digits overflows); Python compares int and float exactly.
            value = int(digits, 16) if "x" in digits.lower() else float(digits)
        if not abs(value) < MAX_DURATION:  # also NaN
            raise BadQuery(f"invalid parameter \"{parameter}\": duration {digits[:40]} is out of range: at most "
                           f"{MAX_DURATION:.0f} seconds (about 292 years)")


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
