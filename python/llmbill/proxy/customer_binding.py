"""A call's customer id is whatever the caller sends — unless its key is bound to customers.

Without a binding any key may bill any customer id, and so may dodge a customer's budget by sending a
fresh id. A key's `customer_id` fixes its customer (a call naming none is billed to it; naming another
is refused); `allowed_customer_ids` lists the ids its calls must name one of. A refused call is a 403
before anything is reserved, forwarded or billed.
"""

from __future__ import annotations

from typing import Any

from .auth import Principal
from .errors import ProxyError, bad_request


def _refused(message: str) -> ProxyError:
    return ProxyError(403, message, "customer_not_allowed", "user")


def bound_customer(principal: Principal, customer: str) -> str:
    """The customer the call is billed to, or 403 when the key's binding does not allow `customer`."""
    key = principal.key
    if key is None:
        return customer
    fixed = key.get("customer_id")
    if fixed:
        if customer and customer != fixed:
            raise _refused(f"this key bills only customer {fixed!r}, not {customer!r}")
        return str(fixed)
    allowed = key.get("allowed_customer_ids")
    if allowed and customer not in allowed:
        shown = ", ".join(repr(c) for c in allowed[:10]) + (", ..." if len(allowed) > 10 else "")
        named = f"not {customer!r}" if customer else "and this call names none"
        raise _refused(f"this key bills only customers {shown}, {named}")
    return customer


def check_binding(fields: dict[str, Any], record: dict[str, Any] | None = None) -> None:
    """A key is bound one way or the other: both on one key is a 400."""
    merged = {**(record or {}), **fields}
    if merged.get("customer_id") and merged.get("allowed_customer_ids"):
        raise bad_request("a key takes 'customer_id' (one customer) or 'allowed_customer_ids' (a list), not both",
                          "allowed_customer_ids")
