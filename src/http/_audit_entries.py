"""Audit records of the request being handled, and the refusals to raise,
audited (sampled under a flood: ``Gate.refusals``, ``Gate.attributed_refusals``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from trioscope.actors.store import Record
from trioscope.store import AuditEntry

from ._client_address import current_connection, client_address, client_source
from ._errors import ApiError
from ._services import services

log = logging.getLogger(__name__)
MAX_AUDIT_TEXT = 256


def audit_entry(action: str, *, actor: str, tenant: str | None, resource_type: str | None = None,
                resource_id: str | None = None, outcome: str = "ok", **details: Any) -> AuditEntry:
    """An audit record of the current request (who, what, when, from where).

    Strings that come from the request (paths, ids, details) are cut to
    ``MAX_AUDIT_TEXT``: refusals are recorded for anyone who asks, and a 7,000
    character hash in a URL made each such record 14 KB."""
    return AuditEntry(at=time.time(), tenant=tenant, actor=actor[:MAX_AUDIT_TEXT], action=action,
                      resource_type=resource_type,
                      resource_id=resource_id[:MAX_AUDIT_TEXT] if resource_id is not None else None,
                      outcome=outcome, address=client_address()[:MAX_AUDIT_TEXT],
                      user_agent=(current_connection().headers.get("User-Agent") or "")[:MAX_AUDIT_TEXT] or None,
                      details={k: v[:MAX_AUDIT_TEXT] if isinstance(v, str) else v for k, v in details.items()})


def user_actor(user_id: str) -> str:
    """How the audit log names a user."""
    return f"user:{user_id}"


def _audit_refusal(entry: AuditEntry) -> bool:
    """Auth failures are recorded without waiting for the commit: the client gets
    its 4xx either way, and a flood of failures must not queue requests.
    False: the store had no room, the record is dropped (and logged)."""
    if services().store.offer(Record((entry,))):
        return True
    log.warning("audit record dropped (store busy): %s %s from %s", entry.action, entry.outcome, entry.address)
    return False


def refuse(status: int, code: str, message: str, *, action: str, tenant: str | None, actor: str,
            **details: Any) -> ApiError:
    """The refusal to raise, audited as ``Gate.refusals`` samples those that
    name nobody (by client source) and ``Gate.attributed_refusals`` those
    whose credentials proved who sent them (by tenant and actor): a flood is
    counted, not written row by row, and the next row of its source says how
    many were left out."""
    gate = services().gate
    if tenant is None and actor == "anonymous":
        sampler, source = gate.refusals, client_source()
    else:
        sampler, source = gate.attributed_refusals, f"{tenant}\x00{actor}"
    left_out = sampler.admit(source, time.monotonic())
    if left_out is None:
        services().metrics.audit_unrecorded.inc()
        return ApiError(status, code, message)
    if left_out:
        details["unrecorded_before"] = left_out
    if not _audit_refusal(audit_entry(action, actor=actor, tenant=tenant, outcome=code, path=current_connection().path,
                                      **details)):
        # Counted with the source's next recorded refusal, as those the sample left out.
        sampler.not_recorded(source, 1 + left_out)
        services().metrics.audit_unrecorded.inc()
    return ApiError(status, code, message)
