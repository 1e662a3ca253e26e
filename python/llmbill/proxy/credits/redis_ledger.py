"""The credits ledger shared through Redis: every worker and replica that names the same Redis checks
and takes a hold against the same figures, so two proxies never spend the same credits twice.

Per payer, Redis keeps the usage settled by any proxy that Lago has not applied yet, the consumed
baseline of each wallet, and the open holds (lua/credit_hold.lua says how). A hold is one EVALSHA of
CREDIT_HOLD: it takes the balance and the wallets' consumed credits from this process's latest Lago
read, moves what invoices applied out of the shared tally, and checks "balance − unapplied − every
open hold ≥ hold" and takes the hold, with no other process's script in between. A settled call is
the same script without a hold (behind the caller, like the limits' release): its hold ends and its
charge joins the tally. Each script carries this process's running total for the payer (tally.py), so
a script sent again after a lost reply counts nothing twice. The tally has no expiry, so a restarted
proxy finds it; when Redis has lost it (restarted without persistence, flushed), the next hold
re-seeds it from a fresh read of Lago (seed.py) first.

Money is integer nano-units (1e-9), as in redis_limits.py: holds, charges and seeds rounded up,
balances and consumed credits rounded down, so the integer check refuses whenever the Decimal one
would. Lua computes in doubles, exact up to 2^53 nano-units (9 million); the tally stays near the
usage between two invoices because applied usage leaves it, and a balance above that is capped.

Redis down (a connection or timeout error), by `general_settings.redis_failure_policy`, reported as
the limits report it (readiness, `llmbill_redis_up`, one log line per outage): `fail_closed` (the
default) refuses the call with 503 `redis_unavailable`; `fail_open` holds against this process's
own tally (LocalLedger: the last shared figures it saw, its own holds, shared ones included, and
what it settled since). What could not be written (a settle or release while Redis is down) is
written with the payer's next script or the gate's next poll, so the shared tally does not lose
usage across an outage; a hold whose reply was lost is ended there too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from decimal import ROUND_FLOOR, Decimal
from importlib import resources
from typing import Any

from redis.exceptions import RedisError

from ..errors import ProxyError
from ..redis_limits import MAX_UNITS, NANO, RedisLimiter, units
from .account import Account
from .ledger import Figures, HoldRef, LocalLedger, Unseeded
from .tally import Tally


def _floor(amount: Decimal) -> int:
    return int((amount / NANO).to_integral_value(ROUND_FLOOR))


def _money(raw: Any) -> Decimal:
    return Decimal(int(raw)) * NANO


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _script(name: str) -> str:
    return resources.files("llmbill.proxy").joinpath("lua", name).read_text()


class CreditsRedisUnavailable(ProxyError):
    def __init__(self, why: str) -> None:
        super().__init__(503, f"Redis is unreachable ({why}); prepaid credits cannot be checked against every proxy's "
                              "holds, so calls are refused (general_settings.redis_failure_policy: fail_closed)",
                         "redis_unavailable", headers={"Retry-After": "5"})


class RedisLedger:
    def __init__(self, limiter: RedisLimiter, metric: str, currency: str,
                 wall: Callable[[], float] = time.time) -> None:
        self.limiter = limiter  # its client, key prefix, hold TTL, failure policy and Redis health
        self.metric = metric
        self.currency = currency
        self.fallback = LocalLedger()
        self.tallies: dict[str, Tally] = {}
        self.missing: set[str] = set()  # payers whose tally Redis has not: only a seed read since may make it
        self.now: float = 0  # tests pin the clock; 0: Redis's TIME
        self.wall = wall  # when a call settled (seed.py's clock: a new tally counts what was settled after its seed)
        self._hold = limiter.client.register_script(_script("credit_hold.lua"))
        self._tasks: set[asyncio.Task[None]] = set()

    def tally(self, payer: str) -> Tally:
        found = self.tallies.get(payer)
        if found is None:
            found = self.tallies[payer] = Tally()
        return found

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
        sent = min(max(_floor(balance), -MAX_UNITS), MAX_UNITS)
        # Only a seed read after Redis was found without the tally may make it: one read before (the
        # process's first read) misses what other processes settled in the lost tally since.
        seed = account.seed if payer in self.missing else None
        wallets: list[Any] = []
        for w in account.wallets:
            if w.could_pay(self.metric, self.currency):
                wallets += [w.lago_id, _floor(w.consumed())]
        try:
            reply = await self._run(payer, ident, amount, sent, seed, account.seeded_at, wallets)
        except (RedisError, OSError):
            if self.limiter.policy == "fail_closed":
                raise CreditsRedisUnavailable(self.limiter.error or "error") from None
            return None
        state = _text(reply[0])
        if state == "unseeded":
            account.seed = None  # whatever seed this process had was read before Redis lost the tally
            self.missing.add(payer)
            raise Unseeded(payer)
        account.seed = None  # the tally exists: a seed is only ever used to start one
        self.missing.discard(payer)
        figures = Figures(Decimal(sent) * NANO, _money(reply[2]), _money(reply[3]), shared=True)
        account.settled = figures.unapplied  # the local mirror fail_open gates on while Redis is down
        return state, figures

    async def _run(self, payer: str, ident: str, amount: int, balance: int, seed: Decimal | None,
                   seeded_at: float, wallets: list[Any]) -> list[Any]:
        """One CREDIT_HOLD: with `ident`, a check and a hold; without, the settles and releases still
        to write, and the figures. Raises what Redis raised (noted in the limiter's health)."""
        tally = self.tally(payer)
        drops, tally.drops, sent_for = tally.drops, [], tally.tally
        args: list[Any] = [repr(self.now), self.limiter.ttl, self.limiter.prefix, payer, ident, amount, balance,
                           -1 if seed is None else units(seed), repr(seeded_at), uuid.uuid4().hex, *tally.args(),
                           len(drops), *drops, *wallets]
        script = asyncio.ensure_future(self._hold(args=args))
        try:
            reply: list[Any] = await asyncio.shield(script)
        except asyncio.CancelledError:  # the call went away: its script still runs, and is cleaned up after
            script.add_done_callback(lambda done: self._abandoned(payer, ident, drops, sent_for, done))
            raise
        except (RedisError, OSError) as exc:
            # The script may have run and only its reply been lost: the holds are ended again (ending
            # one twice is nothing) and the one it may have taken with them; the usage is a total.
            tally.drops += drops + ([ident] if ident else [])
            self.limiter.note(exc)
            raise
        self.limiter.note(None)
        self._learn(payer, reply, sent_for)
        return reply

    def _learn(self, payer: str, reply: list[Any], sent_for: str) -> None:
        self.tally(payer).learn(_text(reply[4]), float(reply[5]), float(reply[6]), int(reply[7]), sent_for)

    def _abandoned(self, payer: str, ident: str, drops: list[str], sent_for: str, done: asyncio.Future[Any]) -> None:
        """A script whose caller was cancelled: the holds it did not end are kept; a hold it took is ended."""
        if done.cancelled() or done.exception() is not None:
            self.tally(payer).drops += drops + ([ident] if ident else [])
            return
        self._learn(payer, done.result(), sent_for)
        if ident and _text(done.result()[0]) == "held":
            self._spawn(self._write(payer, [ident]))

    # -- settling (behind the caller) -----------------------------------------------------------------

    def settle(self, account: Account, ref: HoldRef, charge: Decimal) -> None:
        account.settled += charge
        self.tally(account.payer).settled(self.wall(), units(charge))
        self._end(account.payer, ref)

    def release(self, account: Account, ref: HoldRef) -> None:
        self._end(account.payer, ref)

    def _end(self, payer: str, ref: HoldRef) -> None:
        """A hold taken while Redis was down (fail_open) only has its charge to write."""
        if ref.local:
            self.fallback.holds.drop(int(ref.ident))
        else:
            self.fallback.holds.drop(ref.mirror)
        self._spawn(self._write(payer, [] if ref.local else [ref.ident]))

    async def _write(self, payer: str, drops: list[str]) -> None:
        tally = self.tally(payer)
        tally.drops += drops
        if not tally.pending:
            return
        try:
            await self._run(payer, "", 0, 0, None, 0.0, [])
        except (RedisError, OSError):
            return  # kept: the payer's next script or the gate's next poll writes it
        # A reply without a tally (Redis lost it): the usage waits for the re-seed, which counts what
        # was settled after its read (tally.py).

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sync(self) -> None:
        for payer, tally in list(self.tallies.items()):
            if tally.pending:
                await self._write(payer, [])
                if self.limiter.error is not None:
                    return  # still down: the next poll tries again

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sync()
