"""The billing gate: forward a billable call only while its Lago event can be made durable.

The provider charges for a call the moment it answers, so the one place where refusing costs
nothing is before forwarding. `check()` asks the pipeline (`can_accept()`: the spool keeps its
reserve free, its last append succeeded, no event waits in memory; one C++ call, no syscall) and acts
on `general_settings.billing_failure_policy`:

- `fail_closed` (default): refuse with 503 `billing_unavailable` until billing can keep events again
  (Lago back and the spool drained, or disk space freed); nothing is served that would not be billed.
- `fail_open`: serve anyway and log a warning (at most every WARN_EVERY seconds). An event the spool
  then cannot take is held in memory and retried until durable; it is lost only if the process ends
  first.

>>> refusal().status, refusal().type
(503, 'billing_unavailable')
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .errors import ProxyError

if TYPE_CHECKING:
    from .state import ProxyState

log = logging.getLogger("llmbill.proxy")
WARN_EVERY = 10.0
RETRY_AFTER_S = 5


class _Warned:
    at = float("-inf")


def refusal() -> ProxyError:
    return ProxyError(503, "billing is unavailable: this call's usage event cannot be stored durably right now "
                      "(billing spool full or unwritable); retry later", "billing_unavailable", None,
                      {"retry-after": str(RETRY_AFTER_S)})


def check(state: ProxyState) -> None:
    """Raises the 503 refusal when billing cannot keep a new call's event and the policy is fail_closed."""
    pipeline = state.pipeline
    if pipeline is None or pipeline.can_accept():
        return
    if state.config.billing_failure_policy != "fail_open":
        raise refusal()
    now = time.monotonic()
    if now - _Warned.at >= WARN_EVERY:
        _Warned.at = now
        log.warning("billing cannot store events durably (spool full or unwritable); serving anyway "
                    "(billing_failure_policy: fail_open): %s", pipeline.stats().get("last_error", ""))
