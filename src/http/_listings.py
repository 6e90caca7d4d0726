"""Store listings (command pages, the audit log, retired agents): how large a
page may be, and how many of one user's are answered at once, since each may
take seconds on a large store whose reader connections every tenant shares."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from trioscope.domain.principals import Principal

from ._errors import ApiError
from ._services import services


MAX_PAGE = 500
"""Largest page of a listing (commands, audit records, retired agents)."""


LISTINGS_AT_ONCE = 2
"""Store listings (command pages, the audit log) of one user answered at once:
each may take seconds on a large store (a far offset of 2 million commands:
2.5 s), and the store's reader connections are shared by every tenant."""


@contextlib.asynccontextmanager
async def listing_turn(principal: Principal) -> AsyncIterator[None]:
    """One of the user's ``LISTINGS_AT_ONCE`` places for a store listing; 429
    ``too_many_listings`` beyond them (two of one viewer's listings at once held
    another tenant's command reads at 4.8 s, and ``/health/ready`` at 503)."""
    s = services()
    user = (principal.tenant, principal.user_id)
    if s.listings.count(user) >= LISTINGS_AT_ONCE:
        raise ApiError(429, "too_many_listings", f"at most {LISTINGS_AT_ONCE} listings of one user are answered at "
                       "once; send it again when one has been answered", headers={"Retry-After": "1"})
    with s.listings.held(user):
        yield
