"""Idempotency keys of command creations, as pure values: which keys are
keys, what makes two requests the same, and whether a request with a key is
new, a repetition or another request reusing it."""

from __future__ import annotations

import pytest

from trioscope.domain.idempotency import (
    MAX_KEY_LENGTH, WINDOW, InvalidKey, KeptAnswer, Seen, check_key, fingerprint, seen,
)


@pytest.mark.parametrize("key", ["a", "550e8400-e29b-41d4-a716-446655440000", "retry 1 of job #7 ~!", "k" * 255])
def test_a_key_is_one_to_255_printable_ascii_characters(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(("key", "problem"), [
    ("", "must not be empty"),
    ("k" * (MAX_KEY_LENGTH + 1), "256 characters, more than 255"),
    ("tab\there", "printable ASCII"),
    ("clé", "printable ASCII"),
    ("del\x7f", "printable ASCII"),
])
def test_other_keys_are_refused_saying_why(key: str, problem: str) -> None:
    with pytest.raises(InvalidKey, match=problem):
        check_key(key)


def test_the_same_request_has_the_same_fingerprint_whatever_its_keys_order() -> None:
    first = fingerprint("POST", "/api/v1/users/u/deployments/h/commands", {"type": "restart", "parameters": {"a": 1}})
    again = fingerprint("POST", "/api/v1/users/u/deployments/h/commands", {"parameters": {"a": 1}, "type": "restart"})
    assert first == again and len(first) == 64
    assert first != fingerprint("POST", "/api/v1/users/u/deployments/h/commands", {"type": "restart"})
    assert first != fingerprint("POST", "/api/v1/users/u/deployments/other/commands",
                                {"type": "restart", "parameters": {"a": 1}})


def _kept(at: float, request: str = "f1") -> KeptAnswer:
    return KeptAnswer(tenant="t", user_id="u", key="k", fingerprint=request, command_id="cmd_1", status=202,
                      body=b"{}", created_at=at)


def test_a_request_is_new_repeated_or_reusing_the_key_within_the_window_and_new_after_it() -> None:
    assert seen(None, "f1", 100.0) is Seen.NEW
    assert seen(_kept(100.0), "f1", 100.0 + WINDOW - 1) is Seen.REPEATED
    assert seen(_kept(100.0), "f2", 100.0 + WINDOW - 1) is Seen.REUSED
    assert seen(_kept(100.0), "f1", 100.0 + WINDOW) is Seen.NEW
    assert seen(_kept(100.0), "f2", 100.0 + WINDOW) is Seen.NEW
