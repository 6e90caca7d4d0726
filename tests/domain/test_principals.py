"""User tokens (HS256 JWTs), roles and permissions."""

from __future__ import annotations

import sys
from typing import Any

import jwt
import pytest

from trioscope.domain.principals import (
    ALGORITHM,
    InvalidToken,
    Permission,
    Principal,
    Role,
    mint_user_token,
    read_user_token,
)

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
NOW = 1_760_000_000.0
TTL = 3600.0


def mint(**overrides: Any) -> str:
    arguments: dict[str, Any] = {"user_id": "user-1", "tenant": "acme", "role": Role.OPERATOR, "now": NOW, "ttl": TTL}
    arguments.update(overrides)
    return mint_user_token(SECRET, **arguments)


def craft(claims: dict[str, Any], secret: bytes = SECRET) -> str:
    """A token signed with PyJWT directly, with exactly ``claims``."""
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


VALID_CLAIMS = {"sub": "user-1", "tenant": "acme", "role": "ADMIN", "iat": int(NOW), "exp": int(NOW + TTL)}


# --- tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_minted_token_reads_back_as_the_principal(role: Role) -> None:
    assert read_user_token(SECRET, mint(role=role), now=NOW) == Principal("user-1", "acme", role)


def test_minted_token_carries_the_claims() -> None:
    claims = jwt.decode(mint(), SECRET, algorithms=[ALGORITHM], options={"verify_exp": False})
    assert claims == {"sub": "user-1", "tenant": "acme", "role": "OPERATOR", "iat": int(NOW), "exp": int(NOW + TTL)}


def test_token_is_valid_until_just_before_exp() -> None:
    token = mint()
    assert read_user_token(SECRET, token, now=NOW + TTL - 0.001).user_id == "user-1"


@pytest.mark.parametrize("after", [0.0, 1.0, 10 * TTL], ids=["at-exp", "after-exp", "long-after"])
def test_token_at_or_after_exp_is_expired(after: float) -> None:
    with pytest.raises(InvalidToken, match="expired"):
        read_user_token(SECRET, mint(), now=NOW + TTL + after)


def test_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(InvalidToken, match="invalid token"):
        read_user_token(OTHER_SECRET, mint(), now=NOW)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"], ids=["empty", "one-part", "three-garbage-parts"])
def test_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        read_user_token(SECRET, token, now=NOW)


def test_tampered_payload_is_refused() -> None:
    header, _, signature = mint(role=Role.VIEWER).split(".")
    _, payload, _ = craft(VALID_CLAIMS, OTHER_SECRET).split(".")
    with pytest.raises(InvalidToken):
        read_user_token(SECRET, f"{header}.{payload}.{signature}", now=NOW)


def test_other_algorithm_is_refused() -> None:
    secret = b"k" * 64  # long enough for HS512, so the only fault is the algorithm
    assert read_user_token(secret, jwt.encode(VALID_CLAIMS, secret, algorithm="HS256"), now=NOW).role is Role.ADMIN
    with pytest.raises(InvalidToken, match="alg"):
        read_user_token(secret, jwt.encode(VALID_CLAIMS, secret, algorithm="HS512"), now=NOW)


def test_crafted_token_with_all_claims_is_accepted() -> None:
    assert read_user_token(SECRET, craft(VALID_CLAIMS), now=NOW) == Principal("user-1", "acme", Role.ADMIN)


@pytest.mark.parametrize("role", ["SUPERUSER", "admin", "", 2, ["ADMIN"]], ids=repr)
def test_unknown_role_is_refused(role: Any) -> None:
    with pytest.raises(InvalidToken, match="unknown role"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "role": role}), now=NOW)


@pytest.mark.parametrize("claim", ["sub", "exp", "tenant", "role"])
def test_missing_claim_is_refused(claim: str) -> None:
    claims = {k: v for k, v in VALID_CLAIMS.items() if k != claim}
    with pytest.raises(InvalidToken, match=claim):
        read_user_token(SECRET, craft(claims), now=NOW)


@pytest.mark.parametrize("exp", ["soon", True, None, float("nan"), float("inf")], ids=repr)  # NaN: never expired
def test_exp_that_is_not_a_number_is_refused(exp: Any) -> None:
    with pytest.raises(InvalidToken):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "exp": exp}), now=NOW)


@pytest.mark.parametrize("iat", ["x", True, None, float("nan"), [1]], ids=repr)
def test_iat_that_is_not_a_number_is_refused(iat: Any) -> None:
    """The README promises a mistyped claim is refused; ``iat: "x"`` was read."""
    with pytest.raises(InvalidToken, match="iat is not a number"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "iat": iat}), now=NOW)


@pytest.mark.parametrize("iat", [NOW + 301, NOW + 3600, 10**400, float("inf")], ids=["301s", "1h", "10**400", "inf"])
def test_a_token_issued_in_the_future_is_refused(iat: float) -> None:
    with pytest.raises(InvalidToken, match="issued in the future"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "iat": iat}), now=NOW)


def test_nbf_is_read_against_the_given_clock() -> None:
    """PyJWT read its own clock for ``nbf``: a token not valid until an hour
    after ``now`` was taken whenever the machine's clock was past that."""
    with pytest.raises(InvalidToken, match=r"not yet valid \(nbf\)"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "nbf": NOW + 3600}), now=NOW)
    assert read_user_token(SECRET, craft({**VALID_CLAIMS, "nbf": NOW}), now=NOW).user_id == "user-1"
    with pytest.raises(InvalidToken, match="nbf is not a number"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "nbf": "soon"}), now=NOW)


@pytest.mark.parametrize("iat", [NOW + 299, NOW - 10 * TTL, 0, -(10**400)], ids=["299s", "old", "0", "-10**400"])
def test_a_token_issued_a_little_ahead_or_long_ago_is_read(iat: float) -> None:
    """Another issuer's clock a little ahead of ours is not a refusal, nor an old ``iat``."""
    assert read_user_token(SECRET, craft({**VALID_CLAIMS, "iat": iat}), now=NOW).user_id == "user-1"


def test_an_integer_exp_beyond_what_a_float_holds_is_read_not_a_crash() -> None:
    """``exp`` of 10**400 raised OverflowError converting it to a float: a 500,
    and a socket renewal closed 1000. It is as far as a float goes."""
    assert read_user_token(SECRET, craft({**VALID_CLAIMS, "exp": 10**400}), now=NOW).expires_at == sys.float_info.max
    with pytest.raises(InvalidToken, match="expired"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "exp": -(10**400)}), now=NOW)


@pytest.mark.parametrize(("claim", "value"), [("sub", ""), ("tenant", ""), ("tenant", 7), ("sub", 7)],
                         ids=["empty-sub", "empty-tenant", "numeric-tenant", "numeric-sub"])
def test_sub_and_tenant_must_be_non_empty_strings(claim: str, value: Any) -> None:
    with pytest.raises(InvalidToken):
        read_user_token(SECRET, craft({**VALID_CLAIMS, claim: value}), now=NOW)


@pytest.mark.parametrize(
    "overrides",
    [{"user_id": ""}, {"tenant": ""}, {"user_id": "u" * 129}, {"tenant": "t" * 129}, {"ttl": 0}, {"ttl": -1}],
    ids=["empty-user", "empty-tenant", "long-user", "long-tenant", "zero-ttl", "negative-ttl"],
)
def test_mint_refuses_bad_arguments(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        mint(**overrides)


@pytest.mark.parametrize(("claim", "value", "says"), [
    ("sub", "u" * 129, "sub must be 1-128 characters"), ("tenant", "t" * 129, "tenant must be 1-128 characters"),
    ("sub", "a\x00b", "sub must hold no control characters"), ("tenant", "a\nb", "tenant must hold no control"),
])
def test_a_token_naming_an_id_no_token_is_minted_with_is_refused(claim: str, value: str, says: str) -> None:
    """Signed elsewhere with the secret: refused as a token, not let in to find every user route a 400."""
    with pytest.raises(InvalidToken, match=says):
        read_user_token(SECRET, craft({**VALID_CLAIMS, claim: value}), now=NOW)
    with pytest.raises(ValueError, match="must"):
        mint(**{"user_id" if claim == "sub" else "tenant": value})


def test_mint_accepts_identities_of_128_characters() -> None:
    token = mint(user_id="u" * 128, tenant="t" * 128)
    assert read_user_token(SECRET, token, now=NOW) == Principal("u" * 128, "t" * 128, Role.OPERATOR)


# --- roles and permissions ---------------------------------------------------------

ORDER = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]


@pytest.mark.parametrize("role", ORDER, ids=lambda r: r.value)
@pytest.mark.parametrize("needed", ORDER, ids=lambda r: r.value)
def test_role_allows_itself_and_the_roles_below(role: Role, needed: Role) -> None:
    assert role.allows(needed) is (ORDER.index(role) >= ORDER.index(needed))


EXPECTED_MAY = {
    Role.VIEWER: {Permission.READ},
    Role.OPERATOR: {Permission.READ, Permission.OPERATE},
    Role.ADMIN: {Permission.READ, Permission.OPERATE, Permission.ADMINISTER},
}


@pytest.mark.parametrize("role", ORDER, ids=lambda r: r.value)
@pytest.mark.parametrize("permission", list(Permission), ids=lambda p: p.name)
def test_principal_may_per_role_and_permission(role: Role, permission: Permission) -> None:
    assert Principal("user-1", "acme", role).may(permission) is (permission in EXPECTED_MAY[role])


# --- the command service seed's claim set (stacker-command-service §7.1 UserToken) --------

SEED_CLAIMS = {"sub": "user-1", "tenant_id": "acme", "roles": ["VIEWER", "ADMIN"],
               "permissions": ["deployment:read"], "iat": int(NOW), "exp": int(NOW + TTL)}


def test_a_token_shaped_as_the_seed_reads_as_its_highest_known_role() -> None:
    assert read_user_token(SECRET, craft(SEED_CLAIMS), now=NOW) == Principal("user-1", "acme", Role.ADMIN)
    # Names of another service's roles are passed over.
    claims = {**SEED_CLAIMS, "roles": ["billing", "OPERATOR"]}
    assert read_user_token(SECRET, craft(claims), now=NOW).role is Role.OPERATOR


@pytest.mark.parametrize(("roles", "says"), [
    ([], "names none of"), (["billing", "admin"], "names none of"), ("ADMIN", "must be a list"),
    (["VIEWER"] * 33, "must be a list"), ([7, None], "names none of"),
], ids=["empty", "unknown-names", "a-string", "too-many", "not-strings"])
def test_a_seed_roles_claim_naming_no_role_of_ours_is_refused(roles: Any, says: str) -> None:
    with pytest.raises(InvalidToken, match=says):
        read_user_token(SECRET, craft({**SEED_CLAIMS, "roles": roles}), now=NOW)


def test_tenant_and_tenant_id_must_agree() -> None:
    assert read_user_token(SECRET, craft({**VALID_CLAIMS, "tenant_id": "acme"}), now=NOW).tenant == "acme"
    with pytest.raises(InvalidToken, match="different tenants"):
        read_user_token(SECRET, craft({**VALID_CLAIMS, "tenant_id": "other"}), now=NOW)


def test_role_wins_over_roles_when_both_are_given() -> None:
    claims = {**VALID_CLAIMS, "role": "VIEWER", "roles": ["ADMIN"]}
    assert read_user_token(SECRET, craft(claims), now=NOW).role is Role.VIEWER
