"""The credits ledger shared through Redis: every worker and replica that names the same Redis checks
and takes a hold against the same figures, so two proxies never spend the same credits twice.

Per payer, Redis keeps the usage settled by any proxy that Lago has not applied yet, the consumed
baseline of each wallet, and the open holds (lua/credit_hold.lua says how). A hold is one EVALSHA of
CREDIT_HOLD: it takes the balance and the wallets' consumed credits from this process's latest Lago
read, moves what invoices applied out of the shared tally, and checks "balance − unapplied − every
open hold ≥ hold" and takes the hold, with no other process's script in between. A settled call is
one EVALSHA of CREDIT_SETTLE (behind the caller, like the limits' release): its hold ends and its
charge joins the tally. The tally has no expiry, so a restarted proxy finds it; when Redis has lost
it (restarted without persistence, flushed), the next hold re-seeds it from Lago (seed.py) first.

Money is integer nano-units (1e-9), as in redis_limits.py: holds, charges and seeds rounded up,
balances and consumed credits rounded down, so the integer check refuses whenever the Decimal one
would. Lua computes in doubles, exact up to 2^53 nano-units (9 million); the tally stays near the
usage between two invoices because applied usage leaves it, and a balance above that is capped.

Redis down (a connection or timeout error), by `general_settings.redis_failure_policy`, reported as
the limits report it (readiness, `llmbill_redis_up`, one log line per outage): `fail_closed` (the
default) refuses the call with 503 `redis_unavailable`; `fail_open` holds against this process's
own tally (LocalLedger: the last shared figures it saw, its own holds, shared ones included, and
what it settled since). What could not be written (a settle or release while Redis is down) is kept
and written with the payer's next script or the gate's next poll, so the shared tally does not lose
usage across an outage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from importlib import resources
from typing import Any

from redis.exceptions import RedisError

from ..errors import ProxyError
from ..redis_limits import MAX_UNITS, NANO, RedisLimiter, units
from .account import Account
from .ledger import Figures, HoldRef, LocalLedger, Unseeded


def _floor(amount: Decimal) -> int:
    return int((amount / NANO).to_integral_value(ROUND_FLOOR))


def _money(raw: Any) -> Decimal:
    return Decimal(int(raw)) * NANO


def _script(name: str) -> str:
    return resources.files("llmbill.proxy").joinpath("lua", name).read_text()


class CreditsRedisUnavailable(ProxyError):
    def __init__(self, why: str) -> None:
        super().__init__(503, f"Redis is unreachable ({why}); prepaid credits cannot be checked against every proxy's "
                              "holds, so calls are refused (general_settings.redis_failure_policy: fail_closed)",
                         "redis_unavailable", headers={"Retry-After": "5"})


@dataclass
class _Unwritten:
    """What a payer's tally still needs once Redis answers: settled usage to add, holds to end."""

    add: int = 0
    drops: list[str] = field(default_factory=list)


class RedisLedger:
    def __init__(self, limiter: RedisLimiter, metric: str, currency: str) -> None:
        self.limiter = limiter  # its client, key prefix, hold TTL, failure policy and Redis health
        self.metric = metric
        self.currency = currency
        self.fallback = LocalLedger()
        self.unwritten: dict[str, _Unwritten] = {}
        self.now: float = 0  # tests pin the clock; 0: Redis's TIME
        self._hold = limiter.client.register_script(_script("credit_hold.lua"))
        self._settle = limiter.client.register_script(_script("credit_settle.lua"))
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the check and the hold ----------------------------------------------------------------------

    async def hold(self, account: Account, balance: Decimal, amount: Decimal) -> tuple[HoldRef | None, Figures]:
        if balance <= 0 < amount:  # no credits at all (no wallet): refused without making a tally for the id
            return None, self.fallback.check(account, balance)
        ident = uuid.uuid4().hex
        found = await self._check(account, balance, ident, units(amount))
        if found is None:  # Redis down, fail_open
            return self.fallback.take(account, balance, amount)
        state, figures = found
        if state != "held":
            return None, figures
        return HoldRef(ident, local=False, mirror=self.fallback.holds.take(account.payer, amount)), figures

    async def figures(self, account: Account, balance: Decimal) -> Figures:
        found = await self._check(account, balance, "", 0)
        return self.fallback.check(account, balance) if found is None else found[1]

    def local(self, account: Account, balance: Decimal) -> Figures:
        return self.fallback.check(account, balance)

    async def _check(self, account: Account, balance: Decimal, ident: str,
                     amount: int) -> tuple[str, Figures] | None:
        payer = account.payer
        todo = self.unwritten.pop(payer, None) or _Unwritten()
        sent = min(max(_floor(balance), -MAX_UNITS), MAX_UNITS)
        seed = "-1" if account.seed is None else str(units(account.seed))
        args: list[Any] = [repr(self.now), self.limiter.ttl, self.limiter.prefix, payer, ident, amount, sent, seed,
                           todo.add, len(todo.drops), *todo.drops]
        for w in account.wallets:
            if w.could_pay(self.metric, self.currency):
                args += [w.lago_id, _floor(w.consumed())]
        script = asyncio.ensure_future(self._hold(args=args))
        try:
            reply = await asyncio.shield(script)
        except asyncio.CancelledError:  # the call went away: its script still runs, and is cleaned up after
            script.add_done_callback(lambda done: self._abandoned(payer, ident, todo, done))
            raise
        except (RedisError, OSError) as exc:
            self._keep(payer, todo)
            self.limiter.note(exc)
            if self.limiter.policy == "fail_closed":
                raise CreditsRedisUnavailable(self.limiter.error or "error") from None
            return None
        self.limiter.note(None)
        state = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if state == "unseeded":
            # The re-seed drains this process's spool first, and every charge still unwritten has
            # its event in that spool already (settle.py spools right after the credit settles):
            # Lago's usage will include them, so adding them again would count them twice.
            self._keep(payer, _Unwritten(0, todo.drops))
            raise Unseeded(payer)
        account.seed = None  # the tally exists: a seed is only ever used to start one
        figures = Figures(Decimal(sent) * NANO, _money(reply[2]), _money(reply[3]), shared=True)
        account.settled = figures.unapplied  # the local mirror fail_open gates on while Redis is down
        return state, figures

    def _abandoned(self, payer: str, ident: str, todo: _Unwritten, done: asyncio.Future[Any]) -> None:
        """A hold script whose caller was cancelled: what it did not write is kept; a hold it took is ended."""
        if done.cancelled() or done.exception() is not None:
            self._keep(payer, todo)
        elif not done.result() or done.result()[0] in (b"unseeded", "unseeded"):
            self._keep(payer, _Unwritten(0, todo.drops))
        elif ident:
            self._spawn(self._write(payer, 0, [ident]))

    # -- settling (behind the caller) -----------------------------------------------------------------

    def settle(self, account: Account, ref: HoldRef, charge: Decimal) -> None:
        account.settled += charge
        self._end(account.payer, ref, units(charge))

    def release(self, account: Account, ref: HoldRef) -> None:
        self._end(account.payer, ref, 0)

    def _end(self, payer: str, ref: HoldRef, charge: int) -> None:
        """A hold taken while Redis was down (fail_open) only has its charge to write."""
        if ref.local:
            self.fallback.holds.drop(int(ref.ident))
        else:
            self.fallback.holds.drop(ref.mirror)
        if charge or not ref.local:
            self._spawn(self._write(payer, charge, [] if ref.local else [ref.ident]))

    async def _write(self, payer: str, add: int, drops: list[str]) -> None:
        todo = self.unwritten.pop(payer, None) or _Unwritten()
        todo.add += add
        todo.drops += drops
        if not todo.add and not todo.drops:
            return
        try:
            done = await self._settle(args=[self.limiter.prefix, payer, todo.add, *todo.drops])
        except (RedisError, OSError) as exc:
            self._keep(payer, todo)
            self.limiter.note(exc)
            return
        self.limiter.note(None)
        if not int(done):  # no tally (Redis lost it): the usage waits for the re-seed
            self._keep(payer, _Unwritten(todo.add))

    def _keep(self, payer: str, todo: _Unwritten) -> None:
        mine = self.unwritten.setdefault(payer, _Unwritten())
        mine.add += todo.add
        mine.drops += todo.drops

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sync(self) -> None:
        for payer in list(self.unwritten):
            await self._write(payer, 0, [])
            if self.limiter.error is not None:
                return  # still down: the next poll tries again

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sync()
