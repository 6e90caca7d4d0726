"""Reading the YAML configuration text into raw values with their lines (pure, no I/O).

The text is composed into nodes first (``yaml.SafeLoader``) rather than loaded into
dicts, because nodes keep their positions: every problem can then name the line, and
duplicate keys, which ``yaml.safe_load`` silently resolves to the last one, are caught.
Composing recurses once per level of nesting, so the depth is bounded
(``MAX_DEPTH``): a file nested a thousand levels deep is one problem naming its
line, not a ``RecursionError``.
"""

from __future__ import annotations

import re

import attrs
import yaml

from ._exceptions import Problem, quote_text, shortened
from ._kinds import mask_passwords
from ._keys import KEYS, KEYS_BY_NAME, SECTIONS, Key, suggest_key
from ._source import Source, SourceKind

_KEY_LIKE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What an unknown key's name must look like to be shown (a mistyped key
does): longer, or holding other characters, it is some other file's text."""

MAX_DEPTH = 32
"""Most levels of nesting a configuration file may have, the document itself
counted. A valid file needs four (sections, keys, a list, its items); the
composer recurses a few frames per level, so this stays far from Python's
recursion limit."""
_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_UNREADABLE = object()
"""``_Reader._scalar``'s answer for a value the safe loader refuses."""


class _DepthLimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing nodes nested deeper than ``MAX_DEPTH``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # the stubs leave the parser untyped
                raise yaml.composer.ComposerError(
                    None, None, f"nested too deep (more than {MAX_DEPTH} levels)", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


@attrs.frozen
class RawValue:
    """A value as found in one layer, before its kind parses it."""

    value: object
    """A string, or for YAML the scalar's typed value (int, bool, None, ...), a
    list of such values, or an empty dict standing for a mapping."""
    written: str
    """The value as the user wrote it, for messages."""
    source: Source


def read_config_text(path: str, text: str) -> tuple[list[tuple[Key, RawValue]], list[Problem]]:
    """Find the key values in a YAML configuration file's text.

    Args:
      path: the file's path, used only in sources and messages.
      text: the file's contents.

    Returns:
      The known keys' raw values in file order, and the problems found in the file's
      shape: syntax errors, nesting deeper than ``MAX_DEPTH``, unknown keys and
      sections, sections that are not mappings, keys set twice. Values are not
      parsed here.
    """
    loader = _DepthLimitedLoader(text)
    try:
        return _Reader(path, loader).read()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        where = path if line is None else f"{path}:{line}"
        detail = exc.problem or exc.context or "malformed"
        problem = Problem(None, _file(path, line), f"{where}: invalid YAML: {detail}")
        return [], [problem]
    except yaml.YAMLError as exc:
        return [], [Problem(None, _file(path, None), f"{path}: invalid YAML: {exc}")]
    except RecursionError:
        # Only if Python's recursion limit is set below what MAX_DEPTH needs.
        return [], [Problem(None, _file(path, None), f"{path}: invalid YAML: nested too deep")]
    finally:
        loader.dispose()


SHOWN_LIST = 120
"""Most characters of a list shown in a message (the items beyond are left out)."""


def _shown_list(items: list[str]) -> str:
    """A list as messages show it: ``[a, b]``, cut after ``SHOWN_LIST`` characters."""
    shown = "[" + ", ".join(items) + "]"
    return shown if len(shown) <= SHOWN_LIST else shown[:SHOWN_LIST] + f"... ({len(items)} items)]"


def _file(path: str, line: int | None) -> Source:
    return Source(kind=SourceKind.FILE, name=path, line=line)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Reader:
    """Walks the composed document; one instance per file."""

    def __init__(self, path: str, loader: _DepthLimitedLoader) -> None:
        self._path = path
        self._loader = loader
        self._entries: list[tuple[Key, RawValue]] = []
        self._problems: list[Problem] = []
        self._seen: dict[str, int] = {}

    def read(self) -> tuple[list[tuple[Key, RawValue]], list[Problem]]:
        root = self._loader.get_single_node()
        if root is None:
            # An empty file, or only comments: nothing set.
            return [], []
        if not isinstance(root, yaml.MappingNode):
            self._problems.append(
                Problem(
                    None,
                    _file(self._path, _line(root)),
                    f"{self._path}:{_line(root)}: expected sections ({', '.join(SECTIONS)}) at the top level",
                )
            )
            return [], self._problems
        for name_node, value_node in root.value:
            self._read_section(name_node, value_node)
        return self._entries, self._problems

    def _read_section(self, name_node: yaml.Node, value_node: yaml.Node) -> None:
        name = self._name(name_node)
        if name not in SECTIONS:
            if isinstance(value_node, yaml.MappingNode):
                # Check the children so "serve: {prot: 1}" suggests server.port.
                for key_node, _ in value_node.value:
                    self._unknown(f"{name}.{self._name(key_node)}", key_node)
            else:
                self._unknown(name, name_node)
            return
        if not self._first_time(name, name_node, "section"):
            return
        if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL_TAG:
            # "server:" with every key below commented out.
            return
        if not isinstance(value_node, yaml.MappingNode):
            leaves = ", ".join(key.leaf for key in KEYS if key.section == name)
            self._add(
                name,
                value_node,
                f"{self._written(value_node)} from {_file(self._path, _line(value_node))} is not a section; "
                f"expected its keys indented below it ({leaves})",
            )
            return
        for key_node, item_node in value_node.value:
            dotted = f"{name}.{self._name(key_node)}"
            key = KEYS_BY_NAME.get(dotted)
            if key is None:
                self._unknown(dotted, key_node)
            elif self._first_time(dotted, key_node, "key"):
                self._read_value(key, item_node)

    def _read_value(self, key: Key, node: yaml.Node) -> None:
        source = _file(self._path, _line(node))
        if isinstance(node, yaml.MappingNode):
            raw = RawValue({}, "{...}", source)
        elif isinstance(node, yaml.SequenceNode):
            # Its items, each a scalar's value (a list or mapping in it stands as an
            # empty one, which the key's kind refuses): a list key's items, as
            # ``trusted_proxies: [10.0.0.0/8]`` or a block list writes them.
            items: list[object] = []
            for item in node.value:
                if isinstance(item, yaml.SequenceNode):
                    items.append([])
                elif isinstance(item, yaml.MappingNode):
                    items.append({})
                elif (value := self._scalar(key, item)) is not _UNREADABLE:
                    items.append(value)
                else:
                    return
            written = "[...]" if key.secret else _shown_list([self._written(item) for item in node.value])
            raw = RawValue(items, written, source)
        else:
            if (value := self._scalar(key, node)) is _UNREADABLE:
                return
            # An empty plain scalar (``host:``) is null; ``host: ""`` is the empty text.
            written = "null" if node.tag == _NULL_TAG and not node.value else node.value
            raw = RawValue(value, written, source)
        self._entries.append((key, raw))

    def _scalar(self, key: Key, node: yaml.Node) -> object:
        """A scalar node's value; ``_UNREADABLE`` (and the problem added) if the safe loader refuses it."""
        try:
            return self._loader.construct_object(node, deep=True)
        except (yaml.constructor.ConstructorError, ValueError) as exc:
            # An explicit tag the safe loader refuses (e.g. !!python/name), an
            # integer of more digits than int() reads (4,300), a date that is
            # none (2023-02-30): that value is wrong, the rest of the file is
            # still worth checking.
            # Named by its tag when it has no text (``!!python/name:os.system``), at its own line (a list's item).
            written = ("the value" if key.secret else shortened(mask_passwords(self._written(node))) if node.value
                       else node.tag)
            # (Python's own words for the others, less its advice to raise the limit.)
            problem = exc.problem if isinstance(exc, yaml.constructor.ConstructorError) else str(exc).split(";")[0]
            self._add(key.name, node, f"{written} from {_file(self._path, _line(node))} cannot be read: {problem}")
            return _UNREADABLE

    def _first_time(self, name: str, node: yaml.Node, what: str) -> bool:
        if name in self._seen:
            self._add(
                name,
                node,
                f"{what} set again in {self._path}:{_line(node)}; first set on line {self._seen[name]}",
            )
            return False
        self._seen[name] = _line(node)
        return True

    def _unknown(self, name: str, node: yaml.Node) -> None:
        if not _KEY_LIKE.fullmatch(name):
            # Not echoed: a file that is no configuration at all (``--config
            # /etc/shadow``) had each of its lines printed, password hashes included.
            self._problems.append(Problem(None, _file(self._path, _line(node)),
                                          f"{self._path}:{_line(node)}: not a key of trioscope's configuration "
                                          "(is it a trioscope configuration file?)"))
            return
        message = f"unknown key in {self._path}:{_line(node)}"
        suggestion = suggest_key(name)
        if suggestion is not None:
            message += f" (did you mean {suggestion}?)"
        self._add(name, node, message)

    def _add(self, key: str, node: yaml.Node, message: str) -> None:
        self._problems.append(Problem(key, _file(self._path, _line(node)), message))

    @staticmethod
    def _name(node: yaml.Node) -> str:
        return node.value if isinstance(node, yaml.ScalarNode) else "?"

    @staticmethod
    def _written(node: yaml.Node) -> str:
        if isinstance(node, yaml.SequenceNode):
            return "[...]"
        if isinstance(node, yaml.MappingNode):
            return "{...}"
        if node.tag == _STR_TAG:
            return quote_text(node.value)
        return node.value or "null"
