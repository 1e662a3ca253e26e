"""Fallbacks, as LiteLLM's router does them, with the billing kept exact.

A call whose deployment failed — after its own retries (routing.py) — in a way the provider did not
bill (failures.py) goes on to the fallbacks of its model, in order: the request's list, else the
config's (fallback_rules.py). The failure's kind picks the list: general (429/5xx/a refused
connection), context window, content policy. The first fallback that answers serves the call; a
fallback that fails unbilled passes it to the next one. A failure that may have been billed (a
timeout or a reply cut after the request was written) ends the call: nothing is sent twice. When
every fallback failed or was skipped, the last failure is returned (the original when none was called).

Each fallback is admitted as a call of its own, the primary's admission released first:
- the caller must be allowed the model (the key's, team's, user's `models`, access groups, aliases,
  the customer's `models`); one it may not use is skipped, never called;
- its upper bound (upper_bound.py: its price, its provider's margin) is reserved against every
  budget and prepaid credit on the call; an unpriced fallback under a budget is refused there, and
  so skipped, like any fallback the budgets or limits refuse;
- its per-model budgets and rate limits (`model_max_budget`, `model_rpm_limit`, ...) count it.

Why re-admit rather than reserve the largest bound over every reachable model up front: each model
is then checked exactly as a direct call to it (its bound, margin, per-model limits and customer
rules need no special case), and the common call, whose primary answers, holds no more than its own
bound — a default_fallbacks list naming a dearer model would otherwise shrink every budget's room
for calls in flight. The cost: a fallback counts as one more request against the caller's rpm, and
a fallback the budgets refuse (the room taken meanwhile) is skipped rather than served. With Redis
the failed attempt's release runs behind (redis_limits.py), so under a nearly spent budget its
reservation may still be counted when the fallback is admitted: refused early, never overspent.

Not done (yet): a fallback's own fallbacks are not followed (one list per call, as the primary's
failure chose it); the model's other deployments are not tried before its fallbacks (a call's
deployment is picked once, routing.py); a model whose every deployment is over its own rpm is
refused (429) before any fallback is considered.

The call keeps its call id; it is billed once, as the model that answered (spend log, Lago event,
`x-litellm-response-cost`), and the reply (or error) carries `x-litellm-attempted-fallbacks`: how many
fallbacks were called.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import fallback_request, observe
from .call import Call
from .call_limits import resolve_model
from .config import Deployment
from .errors import ProxyError
from .failures import GENERAL, UpstreamFailure
from .fallback_request import Asked, Fallback
from .guards import admit_model, check_model_access
from .http import Response, StreamingResponse
from .upper_bound import upper_bound_cost

log = logging.getLogger("llmbill.proxy")

HEADER = "x-litellm-attempted-fallbacks"
R = TypeVar("R", bound="Response | StreamingResponse")
Attempt = Callable[[Call, dict[str, Any]], Awaitable[R]]


@dataclass(frozen=True)
class Route:
    """What fallbacks need of the route serving a call."""

    bound: str  # upper_bound_cost's name of the route
    validate: Callable[[dict[str, Any]], object]  # the route's body check (a fallback's own parameters)
    serves: Callable[[Deployment], bool]  # whether a deployment can serve the route


async def serve(call: Call, body: dict[str, Any], attempt: Attempt[R], route: Route) -> R:
    """`attempt(call, body)`, then the fallbacks its failure calls for. Every admission is released
    if its attempt fails (a failed call is never billed); a served one settles it."""
    try:
        asked = fallback_request.read(body, call.principal.key, route.validate)
    except BaseException:
        call.admission.release()
        raise
    try:
        if asked.mock is not None:
            raise _mocked(call, asked.mock)
        return await attempt(call, asked.body)
    except UpstreamFailure as failure:
        call.admission.release()
        if failure.kind is None or asked.disabled:
            raise
        return await _fall_back(call, asked, failure, attempt, route)
    except BaseException:
        call.admission.release()
        raise


def chain(kind: str, model: str, asked: Asked, call: Call) -> tuple[Fallback, ...]:
    """The fallbacks of `model` for a failure of `kind`: the request's list, else the config's; a
    context-window or content-policy failure with no list of its kind anywhere uses the general one."""
    rules = call.state.config.fallbacks
    if kind != GENERAL:
        own = asked.lists(kind)
        if own is not None:
            return own.get(model, own.get("*", ()))
        if rules.has(kind):
            return tuple((name, {}) for name in rules.chain(kind, model))
    own = asked.lists(GENERAL)
    if own is not None:
        return own.get(model, own.get("*", ()))
    return tuple((name, {}) for name in rules.chain(GENERAL, model))


async def _fall_back(first: Call, asked: Asked, failure: UpstreamFailure, attempt: Attempt[R], route: Route) -> R:
    assert failure.kind is not None
    fallbacks = chain(failure.kind, first.model, asked, first)
    if not fallbacks:
        raise failure
    most = first.state.config.fallbacks.max_fallbacks
    tried = {first.model}
    called = 0
    last: ProxyError = failure
    for name, own in fallbacks:
        if called >= most:
            break
        body = {**asked.body, **own} if own else asked.body
        call = await _admit(first, name, body, route, tried)
        if call is None:
            continue
        called += 1
        log.info("call %s: %s failed (%d %s); falling back to %s", first.call_id, first.model if called == 1
                 else "the previous fallback", last.status, last.type, call.model)
        observe.note_call(call)
        try:
            reply = await attempt(call, body)
        except UpstreamFailure as again:  # refused by the provider: nothing billed, the next one may serve
            call.admission.release()
            last = again
            continue
        except BaseException as stop:  # may have been billed (or the client left): nothing more is sent
            call.admission.release()
            if isinstance(stop, ProxyError):
                stop.headers[HEADER] = str(called)
            raise
        reply.headers.append((HEADER.encode(), str(called).encode()))
        return reply
    last.headers[HEADER] = str(called)
    raise last


async def _admit(first: Call, name: str, body: dict[str, Any], route: Route, tried: set[str]) -> Call | None:
    """The fallback `name` as a call of its own, admitted as a direct call to it would be; None when
    it is skipped (not served here, not for this route, not the caller's, refused by the limits)."""
    state, principal = first.state, first.principal
    try:
        model = resolve_model(state, principal, name, body)  # the caller's aliases apply to fallbacks too
        if model in tried:
            return None
        tried.add(model)
        d = state.deployment(model)
        if d is None or not route.serves(d):
            log.info("call %s: fallback %s skipped: no deployment serves it on this route", first.call_id, model)
            return None
        check_model_access(state, principal, model)
        admission = await admit_model(state, principal, first.customer, upper_bound_cost(d, route.bound, body),
                                      model, body)
    except ProxyError as refused:
        log.info("call %s: fallback %s skipped: %s", first.call_id, name, refused.message)
        return None
    return first.fallback(model, d, admission)


def _mocked(call: Call, kind: str) -> UpstreamFailure:
    """The failure a mock_testing field asks for, the model not called."""
    status, type_ = (500, "api_error") if kind == GENERAL else (400, "invalid_request_error")
    return UpstreamFailure(status, f"{call.model}: a {kind} failure mocked by the request (mock_testing_*fallbacks); "
                                   "the model was not called", type_, kind=kind)

