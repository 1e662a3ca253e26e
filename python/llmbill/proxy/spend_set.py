"""Setting an entity's spend (`spend` on /key|team|user|customer/update): an operator's reset or
correction. Only a proxy admin may do it (it lifts budgets), and every change is audited: a log line
on `llmbill.proxy.audit` and an entry in the record's `spend_audit` (the last AUDIT_KEPT changes),
both naming the old and new spend and who set it.

This process's unwritten spend is flushed first, so the new value replaces everything recorded so
far; spend another process records and has not written yet (at most one flush interval) adds to it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .auth import Principal
from .errors import auth_error, not_found
from .state import ProxyState
from .store.base import KINDS

audit = logging.getLogger("llmbill.proxy.audit")
AUDIT_KEPT = 20


def _who(principal: Principal) -> str:
    if principal.key is None:
        return "master key"
    return f"user {principal.user_id}" if principal.user_id else f"key {principal.token_hash[:12]}"


async def set_spend(state: ProxyState, principal: Principal, kind: str, ident: str,
                    amount: Decimal | None) -> dict[str, Any]:
    """Sets the spend (None: 0); returns the record with its audit entry added."""
    if not principal.is_admin:
        raise auth_error(f"only a proxy admin may set a {kind}'s spend", 403)
    new = amount if amount is not None else Decimal(0)
    await state.spend.flush()
    old = state.spend.spend(kind, ident, await state.cache.get_or_fetch(kind, ident))  # held or read now
    record = await state.store.set_spend(kind, ident, new)
    if record is None:
        raise not_found(f"{kind} {ident!r} not found", KINDS[kind])
    entry = {"at": datetime.now(timezone.utc).isoformat(), "from": str(old), "to": str(new), "by": _who(principal)}
    trail = (list(record.get("spend_audit") or []) + [entry])[-AUDIT_KEPT:]
    updated = await state.store.update(kind, ident, {"spend_audit": trail}) or record
    state.cache.put(kind, updated)
    audit.warning("spend of %s %s set from %s to %s by %s", kind, ident, old, new, entry["by"])
    return updated
