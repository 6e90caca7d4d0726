"""A value one actor owns and publishes whole, for readers that must not wait.

The owner builds a new immutable value and replaces the old one; readers take
whatever is current, without a message or a lock (one attribute read). This is
Erlang's ``persistent_term`` in small: for read-mostly data read on every
request (credentials, say), where an ask per read would cost more than the
work it asks for. Readers must treat the value as immutable; the owner never
changes a value once published.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Published(Generic[T]):
    __slots__ = ("_value", "version")

    def __init__(self, value: T) -> None:
        self._value = value
        self.version = 0
        """How many times a value was published (0: the initial one)."""

    @property
    def value(self) -> T:
        return self._value

    def publish(self, value: T) -> None:
        """Replace the value. Only its owner calls this."""
        self._value = value
        self.version += 1
