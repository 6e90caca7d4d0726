"""Agent request signatures that cover the request, not only its body.

The TryDirect ``status`` agent signs the raw body alone (``X-Agent-Signature``):
a captured request can then be sent again under a new ``X-Request-Id``, to any
path, within the clock-skew window. This second scheme is RFC 9421 (HTTP
Message Signatures), computed by the ``http-message-signatures`` library, with
HMAC-SHA256 keyed by the agent token over:

- ``@method``, ``@path`` and ``@query``: what the request does;
- ``x-agent-id``: who says it is sending it;
- ``content-digest``: SHA-256 of the body as sent (RFC 9530), also when empty;
- the signature parameters ``created`` (unix seconds: the clock-skew check),
  ``nonce`` (a UUID: the replay check), ``keyid`` (the agent id) and
  ``tag`` ``trioscope-agent``.

So a request id or timestamp cannot be changed without the token. Headers sent::

    Content-Digest: sha-256=:<base64>:
    Signature-Input: trioscope=("@method" "@path" "@query" "x-agent-id" "content-digest");
        created=1764650000;keyid="<agent id>";alg="hmac-sha256";nonce="<uuid>";tag="trioscope-agent"
    Signature: trioscope=:<base64>:

Pure: the clock reading and the nonce are passed in; the library's own
clock-based checks are disabled and ``verify`` returns ``created`` for the
caller's policy.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import attrs
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

LABEL = "trioscope"
TAG = "trioscope-agent"
COVERED = ("@method", "@path", "@query", "x-agent-id", "content-digest")
SIGNATURE_HEADERS = ("Signature-Input", "Signature")
SENT_HEADERS = ("X-Agent-Id", "Content-Digest", "Signature-Input", "Signature")
"""What a request signed this way sends: the agent id it names, and what ``sign`` adds."""
_ORIGIN = "http://agent"
"""The authority is not covered (proxies rewrite it): any absolute URL with the
request's path and query resolves the same components."""


class BadRequestSignature(ValueError):
    """The request's RFC 9421 signature is missing a part, malformed, or wrong;
    the message says which (for the audit log)."""


@attrs.frozen
class RequestSignature:
    """What a verified signature vouches for, left to the caller's policy."""

    created: int
    """Unix seconds the agent signed at."""
    nonce: str
    """The request id, normalised to the canonical UUID form."""


@attrs.define
class _Message:
    """The request as the library reads it: method, absolute URL, headers."""

    method: str
    url: str
    headers: Any


class _TokenKey(HTTPSignatureKeyResolver):
    """The one key a request may be signed with: its agent's token."""

    def __init__(self, agent_id: str, token: str) -> None:
        self.agent_id = agent_id
        self.key = token.encode()

    def resolve_public_key(self, key_id: str) -> bytes | None:
        return self.key if key_id == self.agent_id else None

    def resolve_private_key(self, key_id: str) -> bytes | None:
        return self.resolve_public_key(key_id)


class _Verifier(HTTPMessageVerifier):
    # Time is the caller's policy (the clock is passed in there); the library
    # would read the wall clock and allow only 5 s of skew.
    max_clock_skew = datetime.timedelta(days=365 * 100)


def target(path: str, query: str) -> str:
    """An absolute URL for the request's (still percent-encoded) path and query."""
    return f"{_ORIGIN}{path}" + (f"?{query}" if query else "")


def is_signed(headers: Mapping[str, str]) -> bool:
    """Whether the request carries this scheme's signature (any part of it)."""
    return any(name in headers for name in SIGNATURE_HEADERS)


def missing_headers(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Which of ``SENT_HEADERS`` a request lacks (an empty one counts as
    missing), to name them rather than refuse a signature that cannot verify."""
    return tuple(name for name in SENT_HEADERS if not headers.get(name))


def normalise_request_id(text: str) -> str | None:
    """The canonical form of a UUID request id, or None if it is not one.

    ``uuid.UUID`` accepts braces, ``urn:uuid:``, upper case and no hyphens: the
    same id written differently must not pass the replay check twice."""
    if not text or len(text) > 64:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def sign(method: str, url: str, headers: MutableMapping[str, str], body: bytes, *, agent_id: str, token: str,
         now: float, nonce: str) -> None:
    """Add ``Content-Digest``, ``Signature-Input`` and ``Signature`` to ``headers``.

    ``url`` is the absolute URL the request goes to (its path and query are
    signed); ``headers`` must already hold ``X-Agent-Id``.
    """
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_TokenKey(agent_id, token))
    signer.sign(_Message(method.upper(), url, headers), key_id=agent_id, label=LABEL, tag=TAG, nonce=nonce,
                created=datetime.datetime.fromtimestamp(int(now), datetime.UTC), covered_component_ids=COVERED,
                body=body)


def verify(method: str, url: str, headers: Any, body: bytes, *, agent_id: str, token: str) -> RequestSignature:
    """Check the request's signature, covering everything in ``COVERED``.

    ``body`` is the body as it came on the wire (before gzip is undone).

    Raises:
        BadRequestSignature: naming what is missing or wrong.
    """
    verifier = _Verifier(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_TokenKey(agent_id, token))
    try:
        [result] = verifier.verify(_Message(method.upper(), url, headers), max_age=None, expect_tag=TAG,
                                   require_components=COVERED, body=body)
    except (InvalidSignature, HTTPMessageSignaturesException) as exc:
        raise BadRequestSignature(str(exc) or type(exc).__name__) from None
    except ValueError as exc:  # several signatures with our tag, and the like
        raise BadRequestSignature(f"malformed signature: {exc}") from None
    nonce = normalise_request_id(str(result.nonce or ""))
    if nonce is None:
        raise BadRequestSignature("the signature's nonce must be a UUID (the request id)")
    created = result.parameters.get("created")
    if type(created) is not int:
        raise BadRequestSignature("the signature has no created time")
    return RequestSignature(created=created, nonce=nonce)
