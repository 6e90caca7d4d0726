"""``Idempotency-Key`` on the requests that create a command (a command's POST
and a container control): the edge of ``trioscope.domain.idempotency``.

A script that sent a creation again after a 504 ``outcome_unknown`` or a
dropped connection could run a container restart twice. With a key, a
request is first looked up among its user's keys: the same request again
within the window is answered as the first was (its status and body, with
``Idempotent-Replayed: true``) and nothing is done; another request with the
key is refused 422 ``idempotency_key_reused``. A new one stores its key and
answer with its command, in one commit; of two at once with one key (a retry
racing its first try, or two replicas), the store's unique key lets one
through, and the other is answered as a repetition of it.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from quart import Response, request

from trioscope.domain.idempotency import (
    MAX_KEY_LENGTH, WINDOW, InvalidKey, KeptAnswer, Seen, check_key, fingerprint, seen,
)
from trioscope.domain.principals import Principal
from trioscope.store import SaveIdempotencyKey

from ._errors import ApiError
from ._openapi import Param
from ._responses import JSON
from ._services import services

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
"""Set (``true``) on an answer given again for a repeated request."""
IDEMPOTENCY_HEADER = Param(
    HEADER, {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]+$"},
    f"1-{MAX_KEY_LENGTH} printable ASCII characters (a UUID). The same request sent again by the same user with "
    f"the same key within {int(WINDOW // 3600)} h gets the first answer (its status and body, with {REPLAYED}: "
    "true) and creates no other command; another request with the key is refused (422 idempotency_key_reused); "
    "an invalid key, 400 invalid_idempotency_key.")
"""The header as the API description (``_openapi``) gives it."""


@attrs.frozen
class Once:
    """A request's idempotency key: whose it is, and what the request is."""

    tenant: str
    user_id: str
    key: str
    fingerprint: str
    """``domain.idempotency.fingerprint`` of the request."""

    def keep(self, command_id: str, status: int, body: bytes, now: float) -> SaveIdempotencyKey:
        """The write that keeps this key with the answer of the command it creates."""
        return SaveIdempotencyKey(KeptAnswer(tenant=self.tenant, user_id=self.user_id, key=self.key,
                                             fingerprint=self.fingerprint, command_id=command_id, status=status,
                                             body=body, created_at=now),
                                  replaces_before=now - WINDOW)


def requested_once(principal: Principal, body: Any) -> Once | None:
    """The request's key (None: it sent none), for ``principal``'s request
    with ``body`` (parsed) to this method and path; 400 ``invalid_idempotency_key``
    naming the header when it is not a key, or sent more than once."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise _invalid("must be sent once")
    try:
        key = check_key(values[0])
    except InvalidKey as exc:
        raise _invalid(str(exc)) from None
    try:
        found = fingerprint(request.method, request.path, body)
    except TypeError:
        # Nested past the 255 levels orjson writes (a 500 then): no command is
        # made of such a body (its validation refuses it, naming the field), so
        # no key is kept either.
        return None
    return Once(tenant=principal.tenant, user_id=principal.user_id, key=key, fingerprint=found)


def _invalid(problem: str) -> ApiError:
    return ApiError(400, "invalid_idempotency_key", f"{HEADER}: {problem}", details={"header": HEADER})


async def earlier_answer(once: Once) -> Response | None:
    """The answer of the request this one repeats, given again (None: the key
    is new, or its window is over); 422 when the key was used for another request."""
    kept = await services().reader.idempotency_key(once.tenant, once.user_id, once.key)
    match seen(kept, once.fingerprint, time.time()):
        case Seen.NEW:
            return None
        case Seen.REPEATED:
            assert kept is not None
            return Response(kept.body, status=kept.status, content_type=JSON, headers={REPLAYED: "true"})
        case Seen.REUSED:
            assert kept is not None
            raise ApiError(422, "idempotency_key_reused",
                           f"{HEADER}: this key was used within {int(WINDOW // 3600)} h for another request "
                           f"(another path or body), which created command {kept.command_id}; use a new key "
                           "for a new request", details={"header": HEADER, "command_id": kept.command_id})
    raise AssertionError("unreachable")


async def answer_of_first(once: Once) -> Response:
    """After this request's command was refused for its key (``IdempotencyKeyTaken``):
    the answer of the request that stored the key first, or 422 if it was another."""
    answer = await earlier_answer(once)
    if answer is None:  # stored, then past its window in the same moment
        raise ApiError(409, "idempotency_key_in_use", f"{HEADER}: another request with this key is under way; "
                       "send it again", details={"header": HEADER})
    return answer
