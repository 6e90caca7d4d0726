"""``GET /api/v1/audit``: the tenant's audit log, for admins."""

from __future__ import annotations

import attrs
from quart import Blueprint, Response, request

from trioscope.domain.principals import Permission

from trioscope.wire import rfc3339_millis

from . import _gate, _rate_checks
from ._arguments import date_argument, integer_argument
from ._errors import ApiError
from ._listings import MAX_PAGE, listing_turn
from ._openapi import Auth, date, documented, integer, text
from ._responses import json_response
from ._services import services

blueprint = Blueprint("audit", __name__)
blueprint.before_request(_rate_checks.check_address_rate)


@blueprint.get("/api/v1/audit")
@documented(auth=Auth.USER, query=(text("action", max_length=200), text("actor", max_length=200), date("from_date"), date("to_date"),
                                    integer("limit", 1, MAX_PAGE), integer("offset", 0, 10**9)),
            errors={429: "more than 2 listings of this user at once (too_many_listings), or over a rate"})
async def audit_log() -> Response:
    """The audit log of your tenant, newest first (ADMIN; action, actor, from_date, to_date, limit, offset)."""
    principal = await _gate.user(Permission.ADMINISTER)
    action, actor = request.args.get("action"), request.args.get("actor")
    for name, value in (("action", action), ("actor", actor)):
        if value is not None and len(value) > 200:
            raise ApiError(400, "invalid_query", f"{name}: must be at most 200 characters", details={"field": name})
    limit = integer_argument("limit", 100, 1, MAX_PAGE)
    offset = integer_argument("offset", 0, 0, 10**9)
    async with listing_turn(principal):
        entries, total = await services().reader.audit(
            principal.tenant, action=action, actor=actor, since=date_argument("from_date", end=False),
            until=date_argument("to_date", end=True), limit=limit, offset=offset)
    records = [{"id": r.id, **attrs.asdict(r.entry), "at": rfc3339_millis(r.entry.at)} for r in entries]
    return json_response({"entries": records, "count": len(records), "total": total, "limit": limit,
                          "offset": offset})
