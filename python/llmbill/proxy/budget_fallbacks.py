"""A key's `budget_fallbacks` (LiteLLM 1.92+, `{model: [fallback, ...]}`): when the key's own per-model
budget (`model_max_budget`, its own or its tier's) refuses a call to `model`, the call goes to the
first of the model's fallbacks that is admitted, instead of answering budget_exceeded.

Each fallback is admitted as a direct call to it would be (the caller's aliases, its deployment on the
route, the caller's access, every budget and limit with the fallback's own upper bound), and the call
is billed as the fallback: its spend log, Lago event and reply name it. A fallback not served on the
route or not the caller's is skipped; one its own key model budget refuses is skipped, as LiteLLM skips
a fallback over budget; any other refusal of a fallback (a team budget, a rate limit) is the answer.
When no fallback is admitted, the original refusal is. Only the key's model budgets reroute (as in
LiteLLM): a team's or customer's per-model budget refuses the call as before.

A budget fallback grants nothing: the key may call the fallback directly under the same checks, so a
key's owner may set it (key_limits.py does not guard it). Router fallbacks (fallbacks.py) follow the
call to the model it went to.
"""

from __future__ import annotations

import logging
from typing import Any

from .auth import Principal
from .call_limits import resolve_model
from .deployments import Deployment
from .errors import ProxyError
from .fallbacks import Route
from .guards import Admission, admit_model, check_model_access
from .state import ProxyState
from .upper_bound import upper_bound_cost

log = logging.getLogger("llmbill.proxy")

KEY_MODEL_BUDGET = "key_model"  # guards' budget_kind of a refusal by the key's model_max_budget


def _over_key_model_budget(refused: ProxyError) -> bool:
    return refused.budget_kind == KEY_MODEL_BUDGET


async def admit(state: ProxyState, principal: Principal, customer: str, model: str, d: Deployment,
                body: dict[str, Any], route: Route) -> tuple[str, Deployment, Admission]:
    """The call admitted for `model` on `d`, else — refused by the key's budget for that model — for
    the first of the key's budget fallbacks that is admitted: (model, deployment, admission)."""
    try:
        return model, d, await admit_model(state, principal, customer, upper_bound_cost(d, route.bound, body),
                                           model, body)
    except ProxyError as refused:
        chain = ((principal.key or {}).get("budget_fallbacks") or {}).get(model)
        if not chain or not _over_key_model_budget(refused):
            raise
        original = refused
    for name in chain:
        try:
            target = resolve_model(state, principal, name, body)  # the caller's aliases apply
            fd = state.deployment(target)
            if fd is None or not route.serves(fd):
                log.info("budget fallback %s of %s skipped: no deployment serves it on this route", target, model)
                continue
            check_model_access(state, principal, target)
        except ProxyError as skipped:
            log.info("budget fallback %s of %s skipped: %s", name, model, skipped.message)
            continue
        try:
            admission = await admit_model(state, principal, customer, upper_bound_cost(fd, route.bound, body),
                                          target, body)
        except ProxyError as refused:
            if _over_key_model_budget(refused):
                continue
            raise
        log.info("%s is over the key's budget for it: the call goes to its budget fallback %s", model, target)
        return target, fd, admission
    raise original
