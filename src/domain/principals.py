"""Who is asking: users (JWT bearer tokens) and their roles, and what each role may do.

Pure: the secret, the clock and the token text are passed in. PyJWT does the
encoding and the signature check; this module says which claims we require.
"""

from __future__ import annotations

import enum
import math
import sys
import re

import attrs
import jwt

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
"""HS256 keys shorter than the hash output weaken it (RFC 7518 §3.2)."""


class Role(enum.Enum):
    """A user's role within their tenant; each includes the one below it."""

    VIEWER = "VIEWER"
    OPERATOR = "OPERATOR"
    ADMIN = "ADMIN"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class Permission(enum.Enum):
    """What a route needs; mapped to the least role that has it."""

    READ = Role.VIEWER
    """Read deployments, commands, events."""
    OPERATE = Role.OPERATOR
    """Create deployments and commands; confirm and cancel commands."""
    ADMINISTER = Role.ADMIN
    """Read the audit log and the runtime tree; decommission agents."""


@attrs.frozen
class Principal:
    """An authenticated user."""

    user_id: str
    tenant: str
    role: Role
    expires_at: float = attrs.field(default=float("inf"), eq=False)
    """Unix seconds (the token's ``exp``); not part of who the principal is."""

    def may(self, permission: Permission) -> bool:
        return self.role.allows(permission.value)


class InvalidToken(ValueError):
    """The bearer token is missing, malformed, expired, or signed with another key;
    the message says which. The audit log records it whole; the client is told
    ``reason``: a claim or a check it failed (PyJWT's messages and ours name no
    key and echo no more of a claim than ``unknown role``'s first 20 characters)."""

    @property
    def reason(self) -> str:
        """Why, for the client: at most ``MAX_REASON`` characters (a token is
        the client's own text, but an answer stays small whatever it holds)."""
        text = str(self).removeprefix("invalid token: ")
        return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


MAX_REASON = 200
"""Characters of the reason a refused user token is told (``InvalidToken.reason``)."""


IDENTITY_LIMIT = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def identity_problem(value: str) -> str | None:
    """Why ``value`` can be no user or tenant id (1-``IDENTITY_LIMIT``
    characters, none a control character: a NUL is no text PostgreSQL
    stores, a newline would forge a log line; none a lone surrogate, which is
    no text at all: bytes of a terminal's encoding that are not UTF-8, as
    Python reads a command line, or a token's ``\\udcff`` escape, which JSON
    decoders take, made every write of the store and each answer naming the
    id fail), or None."""
    if not value or len(value) > IDENTITY_LIMIT:
        return f"must be 1-{IDENTITY_LIMIT} characters"
    if _CONTROL.search(value):
        return "must hold no control characters"
    if _SURROGATE.search(value):
        return "must be text (UTF-8): it holds bytes of another encoding"
    return None


def mint_user_token(secret: bytes, *, user_id: str, tenant: str, role: Role, now: float, ttl: float) -> str:
    """A signed HS256 token for ``user_id`` in ``tenant`` valid ``ttl`` seconds from ``now``."""
    for name, value in (("user", user_id), ("tenant", tenant)):
        if (problem := identity_problem(value)) is not None:
            raise ValueError(f"{name} {problem}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    claims = {"sub": user_id, "tenant": tenant, "role": role.value, "iat": int(now), "exp": int(now + ttl)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_user_token(secret: bytes, token: str, *, now: float) -> Principal:
    """The principal a token names, after checking its signature and expiry.

    Two claim sets are read: ours (``tenant``, ``role``), as ``mint_user_token``
    writes, and the command service seed's ``UserToken`` (``tenant_id``,
    ``roles``: a list, of which the highest role we know counts; its
    ``permissions`` follow from the role here and are not read), so tokens of
    an auth service built to the seed work as they are.

    Raises:
        InvalidToken: naming what is wrong with it.
    """
    try:
        # PyJWT would read the clock itself; expiry, iat and nbf are checked against ``now`` below.
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid token: {exc}") from None
    exp = _number(claims["exp"], "exp")
    try:
        exp = float(exp)
    except OverflowError:  # an integer no float holds (10**400 raised here: a 500, a socket renewal closed 1000)
        exp = sys.float_info.max if exp > 0 else -sys.float_info.max
    if not math.isfinite(exp):  # NaN would never expire (``now >= nan`` is false)
        raise InvalidToken("invalid token: exp is not a number")
    if now >= exp:
        raise InvalidToken("token expired")
    if "iat" in claims:
        _check_issued_at(claims["iat"], now)
    if "nbf" in claims and _number(claims["nbf"], "nbf") > now:
        raise InvalidToken("invalid token: the token is not yet valid (nbf)")
    sub, tenant = claims["sub"], _tenant_claim(claims)
    if not (isinstance(sub, str) and isinstance(tenant, str) and sub and tenant):
        raise InvalidToken("invalid token: sub and tenant must be non-empty strings")
    for name, value in (("sub", sub), ("tenant", tenant)):
        # As minted: a user id that no path may hold would lock its user out of every route.
        if (problem := identity_problem(value)) is not None:
            raise InvalidToken(f"invalid token: {name} {problem}")
    return Principal(sub, tenant, _role_claim(claims), float(exp))


MAX_ISSUED_AHEAD = 300.0
"""Seconds a token's ``iat`` may lie after this server's clock (another
issuer's clock ahead of ours; an agent's requests are allowed as much)."""


def _number(value: object, claim: str) -> int | float:
    """A time claim's value: a number (an int of 400 digits compares as it is).

    Raises:
        InvalidToken: it is not one.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        raise InvalidToken(f"invalid token: {claim} is not a number")
    return value


def _check_issued_at(iat: object, now: float) -> None:
    """An ``iat`` claim is a number and not in the future (PyJWT's own check
    reads its clock, not ``now``: switched off above, as its ``nbf`` check)."""
    if _number(iat, "iat") > now + MAX_ISSUED_AHEAD:
        raise InvalidToken(f"invalid token: issued in the future (iat more than {MAX_ISSUED_AHEAD:g} s after "
                           "this server's clock)")


MAX_ROLES = 32
"""Names a ``roles`` claim may list (a token is a header: a long list is no user's)."""


def _tenant_claim(claims: dict[str, object]) -> object:
    """``tenant``, or the seed's ``tenant_id``; both only if they agree."""
    if "tenant" in claims and "tenant_id" in claims and claims["tenant"] != claims["tenant_id"]:
        raise InvalidToken("invalid token: tenant and tenant_id name different tenants")
    if "tenant" in claims:
        return claims["tenant"]
    if "tenant_id" in claims:
        return claims["tenant_id"]
    raise InvalidToken('invalid token: Token is missing the "tenant" (or "tenant_id") claim')


def _role_claim(claims: dict[str, object]) -> Role:
    """``role``, or the highest role we know in the seed's ``roles`` list
    (names we do not know are another service's and are passed over)."""
    if "role" in claims:
        try:
            return Role(claims["role"])
        except ValueError:
            raise InvalidToken(f"invalid token: unknown role {str(claims['role'])[:20]!r}") from None
    roles = claims.get("roles")
    if roles is None:
        raise InvalidToken('invalid token: Token is missing the "role" (or "roles") claim')
    if not isinstance(roles, list) or len(roles) > MAX_ROLES:
        raise InvalidToken(f"invalid token: roles must be a list of at most {MAX_ROLES} role names")
    known = [Role(name) for name in roles if isinstance(name, str) and name in Role.__members__]
    if not known:
        raise InvalidToken(f"invalid token: roles names none of {', '.join(role.value for role in Role)}")
    return max(known, key=lambda role: role.rank)


def renewed(current: Principal, secret: bytes, token: str, *, now: float) -> Principal:
    """What a WebSocket opened as ``current`` goes on as when its client sends
    ``token``, a newer token of the same user: that token's principal, whose
    expiry then closes the socket instead of the old one's.

    Raises:
        InvalidToken: ``token`` is invalid or expired, or names another user,
            tenant or role (what a socket may see was decided when it opened).
    """
    principal = read_user_token(secret, token, now=now)
    if (principal.user_id, principal.tenant, principal.role) != (current.user_id, current.tenant, current.role):
        raise InvalidToken("the token names another user, tenant or role than the one this socket was opened with")
    return principal
