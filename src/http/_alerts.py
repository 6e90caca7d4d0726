"""``POST /api/v1/alerts/webhook``: Alertmanager's webhook receiver; and
``GET /api/v1/alerts``: the alerts of the caller's tenant firing now.

Alertmanager (evaluating ``config/prometheus/alerts.yml`` through Prometheus
or vmalert) posts its webhook JSON (version 4) here with the shared secret
``alerts.webhook_secret`` as a bearer token; each alert naming a tenant in its
labels becomes a ``system_alert`` event for that tenant's users and an audit
record (``/root/alerts``). Off (404) while the secret is unset.
"""

from __future__ import annotations

import hmac

from quart import Blueprint, Response

from trioscope.actors.alerts import ActiveAlerts, Deliver
from trioscope.domain.alerts import WebhookPayload, webhook_notices
from trioscope.domain.principals import Permission
from trioscope.wire import InvalidDocument, decode

from . import _audit_entries, _client_address, _gate, _rate_checks, _tokens
from ._bodies import invalid, parse_json, read_body
from ._errors import ApiError
from ._openapi import Auth, documented
from ._responses import json_response
from ._services import services

blueprint = Blueprint("alerts", __name__)
blueprint.before_request(_rate_checks.check_address_rate)

MAX_WEBHOOK_BODY = 1024 * 1024
"""Largest webhook body: 1,000 alerts (``domain.alerts.MAX_WEBHOOK_ALERTS``) of
typical size fit in about half of it."""


@blueprint.post("/api/v1/alerts/webhook")
@documented(auth=Auth.WEBHOOK, body=WebhookPayload, errors={
    404: "the webhook is off (alerts.webhook_secret unset)",
    503: "the alerts could not be recorded in the audit log (not_recorded, Retry-After): resend"})
async def alertmanager_webhook() -> Response:
    """Receive Alertmanager's alerts (webhook v4) as system_alert events (bearer: alerts.webhook_secret)."""
    s = services()
    secret = s.settings.alerts.webhook_secret
    if not secret:
        raise ApiError(404, "webhook_disabled", "the Alertmanager webhook is off: set alerts.webhook_secret "
                       "(TRIOSCOPE_ALERTS_WEBHOOK_SECRET) to turn it on")
    token = _tokens.bearer()
    if token is None or not hmac.compare_digest(token.encode(), secret.encode()):
        # Audited as every other credential refused (a guessed secret shows in the log).
        raise _audit_entries.refuse(401, "invalid_token", "send Authorization: Bearer <alerts.webhook_secret>",
                                    action="auth.failure", tenant=None, actor="anonymous",
                                    credential="alerts.webhook_secret")
    body = await read_body(s.settings, limit=MAX_WEBHOOK_BODY)  # also while it arrives, and after gzip
    try:
        payload = decode(parse_json(body), WebhookPayload)
    except InvalidDocument as exc:
        raise invalid("invalid_webhook", exc) from None
    notices, skipped = webhook_notices(payload)
    delivered = 0
    if notices:
        delivered = await s.alerts.ask(Deliver(tuple(notices), actor="alertmanager",
                                               address=_client_address.client_address()), timeout=30)
    return json_response({"delivered": delivered, "skipped_without_tenant": skipped})


@blueprint.get("/api/v1/alerts")
@documented(auth=Auth.USER)
async def active_alerts() -> Response:
    """The alerts of your tenant firing now, as their system_alert events (any role)."""
    principal = await _gate.user(Permission.READ)
    notices = await services().alerts.ask(ActiveAlerts(principal.tenant), timeout=10)
    return json_response({"alerts": [n.event() for n in notices], "count": len(notices)})
