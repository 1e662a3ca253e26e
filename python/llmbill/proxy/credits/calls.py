"""The gate on a proxy call: which payer and record a call has, its hold, its settlement, and the
gate's start with the proxy. guards.py and settle.py call these (one line each)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...billing import ConfigError
from .. import subscription_watch
from ..auth import Principal
from ..errors import ProxyError
from . import metrics
from .fanout import Fanout
from .gate import CreditGate, CreditHold
from .ledger import Ledger
from .reader import WalletReader
from .redis_ledger import RedisLedger
from .seed import Seeder

SPOOL_DRAIN_S = 5.0  # longer than this to deliver the spool: the first seed fails, the credits stay closed

if TYPE_CHECKING:
    from ..state import ProxyState


def start(state: ProxyState) -> None:
    """Makes the gate when credits can apply (config default `lago`, or any record may say so) and
    Lago is configured; starts the backstop poll, the balance-age gauges and, with Redis, the relay
    of Lago's webhooks between processes (wallets, and subscriptions that start: fanout.py)."""
    settings = state.config.credits
    if state.billing is None or not state.billing.api_base:
        if settings.default == "lago":
            raise ConfigError("credits: lago needs Lago (callbacks: [lago] and LAGO_API_BASE)")
        return
    reader = WalletReader(state.billing.api_base, state.billing.api_key, timeout=5.0)
    metric = state.billing.event_codes[0]
    ledger: Ledger | None = None
    if state.redis is not None:  # holds and settled usage shared by every process on this Redis
        ledger = RedisLedger(state.redis, metric, settings.currency)
    gate = state.credits = CreditGate(settings, reader, metric, state.billing.charge_by, ledger,
                                      seeder=Seeder(reader, metric, settings.currency, _drain(state)))
    metrics.expose_zeros()
    state.run_in_background(gate.poll())
    state.run_in_background(gate.watch_age())
    if state.redis is not None:
        fanout = gate.fanout = Fanout(state.redis)
        fanout.handlers["wallets"] = gate.relayed
        fanout.handlers["subscription"] = lambda message: subscription_watch.started(state, str(message.get("id")))

        async def gap() -> None:  # messages missed while not subscribed: re-read what they may have said
            await gate.refresh_all()
            await subscription_watch.recheck_held(state)
        fanout.on_gap = gap
        state.run_in_background(fanout.listen())


def _drain(state: ProxyState) -> Callable[[], bool] | None:
    """Delivers what this process's spool holds (seed.py reads Lago's usage after it)."""
    pipeline = state.pipeline
    if pipeline is None:
        return None
    return lambda: pipeline.flush(SPOOL_DRAIN_S)


def _applies(state: ProxyState, gate: CreditGate, payer: str) -> bool:
    record = state.cache.get(gate.payer_kind, payer)
    tier_id = (record or {}).get("budget_id") if gate.payer_kind == "customer" else None
    if gate.payer_kind == "customer" and tier_id is None and (record or {}).get("max_budget") is None:
        tier_id = state.config.max_end_user_budget_id  # the default tier, as budgets pick it
    tier = state.cache.get("budget", tier_id) if tier_id else None
    return gate.applies(record, tier)


Payer = tuple[CreditGate, str]  # the gate and the id it bills, for a call that credits apply to


def apply_to(state: ProxyState, payer: str) -> bool:
    """Whether prepaid credits apply to this payer (of the gate's kind): its own `credits`, its
    tier's, the default; False with no gate (guard_book.py compiles this into the payer's entry)."""
    return state.credits is not None and _applies(state, state.credits, payer)


def payer(state: ProxyState, principal: Principal, customer: str) -> Payer | None:
    """Who pays this call with prepaid credits, None when credits do not apply to it."""
    gate = state.credits
    if gate is None:
        return None
    who = gate.payer_of(principal.key, customer)
    return (gate, who) if who and _applies(state, gate, who) else None


async def prepare(found: Payer) -> None:
    """Before admit: the payer's wallets read once (admit itself never awaits); hold() then holds the
    call against this payer — decided once a call, by payer()."""
    await found[0].ensure(found[1])


async def hold(state: ProxyState, upper_bound: Decimal, unpriced: str | None, found: Payer) -> CreditHold:
    """The call's hold against the payer payer() found; refuses the call when the credits cannot cover
    it. An unpriced model has no bound to hold, so it is refused wherever credits apply."""
    gate, who = found
    if unpriced is not None:
        metrics.refusals("unpriced").inc()
        raise ProxyError(403, f"model {unpriced!r} has no price, so its calls cannot be held against the credits "
                              f"of {who}", "model_unpriced", "model")
    status = gate.settings.refused_status or state.config.budget_exceeded_status_code
    return await gate.hold(who, upper_bound, status)


def refuse_without_lago(state: ProxyState, principal: Principal, customer: str) -> None:
    """For a call with no payer (it holds nothing): a customer or team that asks for credits while no
    Lago is configured is refused (fail closed), not served unmetered."""
    if state.credits is not None:
        return
    team = (principal.key or {}).get("team_id")
    for kind, ident in (("customer", customer), ("team", team)):
        if ident and (state.cache.get(kind, ident) or {}).get("credits") == "lago":
            metrics.refusals("no_lago").inc()
            raise ProxyError(503, f"{kind} {ident} pays with prepaid credits, but this proxy has no Lago to read them "
                                  "from (LAGO_API_BASE)", "credits_unavailable")


async def info(state: ProxyState, ident: str) -> dict[str, Any] | None:
    """/customer/info's `credits` when customers are the payers and credits apply to this one."""
    gate = state.credits
    if gate is None or gate.payer_kind != "customer" or not _applies(state, gate, ident):
        return None
    await gate.ensure(ident)
    return await gate.info(ident)
