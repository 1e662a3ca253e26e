"""Fallbacks, as LiteLLM's router does them, with the billing kept exact.

A call whose deployment failed — after its own retries (routing.py) — in a way the provider did not
bill (failures.py) goes first, when the failure was a general one (429/5xx/a refused connection), to
the model's other deployments, in simple-shuffle's order; when they all failed, to the fallbacks of
its model, in order: the request's list, else the config's (fallback_rules.py). The failure's kind
picks the list: general, context window, content policy. The first fallback that answers serves the
call; one that fails unbilled passes it to the next. A failure that may have been billed (a timeout
or a reply cut after the request was written) ends the call: nothing is sent twice. When every
fallback failed or was skipped, the last failure is returned (the original when none was called).

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
failure chose it); a model whose every deployment is over its own rpm is refused (429) before any
fallback is considered.

The call keeps its call id; it is billed once, as the model that answered (spend log, Lago event,
`x-litellm-response-cost`), and the reply (or error) carries `x-litellm-attempted-fallbacks`: how many
fallbacks were called.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import fallback_request, observe, request_fields
from .call import Call
from .call_limits import resolve_model
from .deployments import Deployment
from .errors import ProxyError
from .failures import GENERAL, UpstreamFailure
from .fallback_request import Asked, Fallback
from .guards import admit_model, check_model_access
from .http import Response, StreamingResponse
from .routing import deployment_entity, shuffle_order
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
    """`attempt(call, body)`, then the model's other deployments and the fallbacks its failure calls
    for. Every admission is released if its attempt fails (a failed call is never billed); a served
    one settles it."""
    try:
        options = request_fields.read(body)  # num_retries, drop_params...: checked, or refused by name
        asked = fallback_request.read(options.body, call.principal.key, route.validate)
    except BaseException:
        call.admission.release()
        raise
    token = request_fields.apply(options)  # for every deployment and fallback this call reaches
    try:
        if asked.mock is not None:
            call.admission.release()
            failure = _mocked(call, asked.mock)
        else:
            # The common call, its deployment answering: awaited here, with no frame of _Run's between.
            try:
                try:
                    return await attempt(call, asked.body)
                except BaseException:
                    call.admission.release()
                    raise
            except UpstreamFailure as failed:
                run = _Run(call, asked, attempt, route)
                try:
                    return await run.other_deployments(call, asked.body, failed)
                except UpstreamFailure as last:
                    failure = last
        if failure.kind is None or asked.disabled:
            raise failure
        return await _Run(call, asked, attempt, route).fall_back(failure)
    finally:
        request_fields.restore(token)


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


class _Run(Generic[R]):
    """One client call through its models and their deployments."""

    def __init__(self, first: Call, asked: Asked, attempt: Attempt[R], route: Route) -> None:
        self.first, self.asked, self.attempt, self.route = first, asked, attempt, route
        self.called = 0  # fallback models called

    async def model(self, call: Call, body: dict[str, Any]) -> R:
        """`call` on its deployment; after a general failure, on the model's other deployments (each
        admitted again: another deployment may cost more). Raises the last unbilled failure when
        every deployment failed; anything else (releasing what it holds) as it comes."""
        try:
            return await self._released_on_failure(call, body)
        except UpstreamFailure as failure:
            return await self.other_deployments(call, body, failure)

    async def other_deployments(self, call: Call, body: dict[str, Any], last: UpstreamFailure) -> R:
        """After `call` failed with `last` (its admission released): the model's other deployments
        when the failure was a general one; raises the last failure when none answered."""
        for d in _others(call):
            if last.kind != GENERAL:
                break
            again = await self._admit(call.model, body, d)
            if again is None:
                continue
            log.info("call %s: %s failed (%d); trying another of its deployments", call.call_id, call.model,
                     last.status)
            try:
                return await self._released_on_failure(again, body)
            except UpstreamFailure as failure:
                last = failure
        raise last

    async def _released_on_failure(self, call: Call, body: dict[str, Any]) -> R:
        """One attempt; whatever it raises, the call's admission is released first."""
        try:
            return await self.attempt(call, body)
        except BaseException:
            call.admission.release()
            raise

    async def fall_back(self, failure: UpstreamFailure) -> R:
        first = self.first
        assert failure.kind is not None
        fallbacks = chain(failure.kind, first.model, self.asked, first)
        if not fallbacks:
            raise failure
        most = first.state.config.fallbacks.max_fallbacks
        tried = {first.model}
        last: ProxyError = failure
        for name, own in fallbacks:
            if self.called >= most:
                break
            body = {**self.asked.body, **own} if own else self.asked.body
            try:
                model = resolve_model(first.state, first.principal, name, body)  # the caller's aliases apply
            except ProxyError:
                continue
            if model in tried:
                continue
            tried.add(model)
            call = await self._admit(model, body)
            if call is None:
                continue
            self.called += 1
            log.info("call %s: %s failed (%d %s); falling back to %s", first.call_id, first.model, last.status,
                     last.type, model)
            observe.note_call(call)
            try:
                reply = await self.model(call, body)
            except UpstreamFailure as again:  # refused by the provider: nothing billed, the next one may serve
                last = again
                continue
            except ProxyError as stop:  # may have been billed: nothing more is sent
                stop.headers[HEADER] = str(self.called)
                raise
            reply.headers.append((HEADER.encode(), str(self.called).encode()))
            return reply
        last.headers[HEADER] = str(self.called)
        raise last

    async def _admit(self, model: str, body: dict[str, Any], d: Deployment | None = None) -> Call | None:
        """`model` (on `d`, else the deployment the router picks) as a call of its own, admitted as a
        direct call to it would be; None when it is skipped (not served here or not on this route,
        not the caller's, refused by the limits)."""
        first, state, principal = self.first, self.first.state, self.first.principal
        try:
            if d is None:
                d = state.deployment(model)
            elif not _has_room(first, d):
                return None
            if d is None or not self.route.serves(d):
                log.info("call %s: %s skipped: no deployment serves it on this route", first.call_id, model)
                return None
            check_model_access(state, principal, model)
            admission = await admit_model(state, principal, first.customer,
                                          upper_bound_cost(d, self.route.bound, body), model, body)
        except ProxyError as refused:
            log.info("call %s: fallback %s skipped: %s", first.call_id, model, refused.message)
            return None
        return first.fallback(model, d, admission)


def _others(call: Call) -> list[Deployment]:
    """The model's deployments but the one that failed, in simple-shuffle's order."""
    others = [d for d in call.state.deployments_of(call.model) if d is not call.d]
    return [others[i] for i in shuffle_order([d.weight for d in others])]


def _has_room(call: Call, d: Deployment) -> bool:
    """A deployment under its own rpm/tpm this minute (counted as picked), as the router checks."""
    if d.rpm is None and d.tpm is None:
        return True
    limiter, entity = call.state.limiter, deployment_entity(d)
    if limiter.rate_check(entity, d.rpm, d.tpm, None) is not None:
        return False
    limiter.count_request(entity)
    return True


def _mocked(call: Call, kind: str) -> UpstreamFailure:
    """The failure a mock_testing field asks for, the model not called."""
    status, type_ = (500, "api_error") if kind == GENERAL else (400, "invalid_request_error")
    return UpstreamFailure(status, f"{call.model}: a {kind} failure mocked by the request (mock_testing_*fallbacks); "
                                   "the model was not called", type_, kind=kind)

