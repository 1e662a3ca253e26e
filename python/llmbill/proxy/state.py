"""Everything a running proxy process holds: config, store, caches, spend tracker, billing pipeline,
upstream client — started and stopped together (ASGI lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import random
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .. import billing
from .._native import core
from ..lago import slots
from .cache import EntityCache
from .entity_limits import entity_limits
from .credits.gate import CreditGate
from .config import ProxyConfig
from .deployments import Deployment, wildcard_price
from .errors import rate_limited
from .idle_poll import IdlePoll
from .routing import deployment_entity, shuffle_order
from . import redis_limits
from .limits import InProcess, Limiter, SharedLimits
from .spend import SpendTracker
from .spend_journal import JOURNAL_DIR, SpendJournal
from .redis_limits import RedisLimiter
from .metrics_tally import fold_all
from .store import open_store
from .store.base import Store
from .ui.sessions import UiSessions
from .upstream import Upstream
from .webhook import Webhook

log = logging.getLogger("llmbill.proxy")
MAX_SPOOL_SLOTS = slots.MAX_SPOOL_SLOTS


class ProxyState:
    def __init__(self, config: ProxyConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.database_url)
        self.cache = EntityCache(self.store, max_entries=config.cache_max_entries,
                                 stale_after=2 * config.cache_refresh_interval)
        self.spend = SpendTracker(self.store, self.cache, config.timezone)
        self.limiter = Limiter()
        # A plain call's guards in one step with the core, against the same limiter (guard_book.py).
        self.guard_book = core.GuardBook(self.limiter.core, self.spend.ledger)
        # Rate limits and reservations: this process's limiter, or Redis's shared by every process.
        self.shared_limits: SharedLimits = InProcess(self.limiter)
        self.redis: RedisLimiter | None = None
        if config.redis_url:
            self.redis = redis_limits.connect(config.redis_url, config.longest_timeout,
                                              config.redis_failure_policy, self.limiter,
                                              redis_limits.settled_hold(config.spend_flush_interval,
                                                                        config.cache_refresh_interval))
            self.shared_limits = self.redis
        self.ui_sessions = UiSessions(self.store)  # admin UI sign-ins (proxy/ui), in the database
        self.webhook: Webhook | None = Webhook(config.webhook_url) if config.webhook_url else None
        # After a write upstream or to a client, the loop may poll this long before sleeping (idle_poll.py).
        self.idle_poll = IdlePoll(config.idle_poll_us / 1e6)
        self.upstream = Upstream(self.idle_poll if config.idle_poll_us else None)
        self.pipeline: core.Pipeline | None = None
        self.billing: billing.LagoSettings | None = None
        self.credits: CreditGate | None = None  # prepaid credits in Lago wallets (credits/calls.py starts it)
        self.spool_dir: Path | None = None
        self._journal_lock: int | None = None  # the slot lock held for the spend journal with Lago off
        self._deployments: dict[str, list[Deployment]] = {}
        self._rr: dict[str, itertools.cycle[Deployment]] = {}
        for d in config.deployments:
            self._deployments.setdefault(d.model_name, []).append(d)
        for name, ds in self._deployments.items():
            self._rr[name] = itertools.cycle(ds)
        # Models with a deployment that has its own rpm/tpm: picked with the saturation check.
        self._limited = {name: any(d.rpm is not None or d.tpm is not None for d in ds)
                         for name, ds in self._deployments.items()}
        self._tasks: list[asyncio.Task[None]] = []
        # Keyed by the template's id (deployments live as long as the config; an adapter's params
        # hold a dict, so a Deployment is not hashable).
        self._wildcard: dict[tuple[int, str], Deployment] = {}

    def deployment(self, model: str) -> Deployment | None:
        """One deployment of `model`, round-robin across its deployments; else the wildcard
        deployment (`model_name: "*"`), which forwards the name and prices it by the table."""
        group = self._deployments.get(model)
        if group is not None:
            return group[0] if len(group) == 1 and not self._limited.get(model) else self._pick(model, group)
        wild = self._rr.get("*")
        if wild is None:
            return None
        template = next(wild)
        found = self._wildcard.get((id(template), model))
        if found is None:
            upstream = model if template.upstream_model == "*" else template.upstream_model
            price = wildcard_price(template, upstream, dict(self.config.unpriced_fallback or ()))
            params = template.params and dataclasses.replace(template.params, model=upstream)  # adapters read it
            found = dataclasses.replace(
                template, model_name=model, upstream_model=upstream, price=price, params=params,
                max_input_tokens=(price.max_input_tokens if price else 0) or template.max_input_tokens,
                max_output_tokens=(price.max_output_tokens if price else 0) or template.max_output_tokens)
            if len(self._wildcard) < 10_000:  # bounded: names come from clients
                self._wildcard[(id(template), model)] = found
        return found

    def _pick(self, model: str, group: list[Deployment]) -> Deployment:
        """LiteLLM's simple-shuffle: a random deployment, weighted (routing.py), skipping one over its own
        rpm or tpm in this minute; all of them over → 429."""
        order = [random.choices(range(len(group)), [d.weight for d in group])[0]] if len(group) > 1 else [0]
        if self._limited.get(model):
            order += [i for i in shuffle_order([d.weight for d in group]) if i != order[0]]
        for i in order:
            d = group[i]
            if d.rpm is None and d.tpm is None:
                return d
            entity = deployment_entity(d)
            if self.limiter.rate_check(entity, d.rpm, d.tpm, None) is None:
                self.limiter.count_request(entity)
                return d
        raise rate_limited(f"every deployment of model {model} is over its own rpm/tpm this minute; retry later",
                           60 - time.time() % 60)

    def has_model(self, model: str) -> bool:
        return model in self._deployments

    def deployments_of(self, model: str) -> list[Deployment]:
        return self._deployments.get(model, [])

    async def start(self) -> None:
        await self.store.open()
        await self.cache.load()
        await self.upstream.start()
        if self.redis is not None:
            await self.redis.ping()  # an unreachable Redis is reported now (readiness, log, metric)
        if self.webhook is not None:
            await self.webhook.start()
        default_tier = self.config.max_end_user_budget_id
        self.spend.duration_of = lambda kind, record: entity_limits(self.cache, default_tier, kind,
                                                                    record).budget_duration
        if self.config.lago_enabled:
            self.billing = billing.LagoSettings.from_env()
            self.pipeline = self._open_pipeline(self.billing)
            if self.spool_dir is not None:  # the slot's flock makes this process the journal's one writer
                await self.spend.recover(SpendJournal(Path(self.spool_dir) / JOURNAL_DIR))
        else:  # no Lago, no spool: the spend journal still needs a slot of its own (kill -9 loses nothing)
            self._journal_lock, slot = slots.hold_free_slot(self.spool_base())
            await self.spend.recover(SpendJournal(slot / JOURNAL_DIR))
        self._tasks.append(asyncio.create_task(
            self.spend.run(self.config.spend_flush_interval, self.config.cache_refresh_interval)))
        self._tasks.append(asyncio.create_task(self.cache.watch(self.config.cache_sync_interval, self.spend.lock)))

    def run_in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """A task that lives as long as the state (cancelled and awaited by stop())."""
        self._tasks.append(asyncio.create_task(work))

    def announce_ready(self) -> None:
        # One line per worker process: which process serves, and where its billing spool is.
        print(f"  worker {os.getpid()} ready (spool {self.spool_dir or 'off'})", flush=True)

    def _open_pipeline(self, settings: billing.LagoSettings) -> core.Pipeline:
        # One spool per process: each worker takes the first free slot (the spool's own lock says
        # which are taken), so a restarted worker picks up what a dead one left.
        url = self.config.database_url
        pipeline, self.spool_dir = slots.open_free_slot(settings, self.spool_base(), slots.sink_file(settings, url),
                                                        gate=True)  # billing_watch.py answers the gate
        return pipeline

    def spool_base(self) -> Path:
        """The directory holding every process's spool slot (and its dead letters)."""
        return slots.spool_base(self.config.database_url)

    def database_dir(self) -> str:
        url = self.config.database_url
        if url.startswith("sqlite:///"):
            return str(Path(url[len("sqlite:///"):]).parent)
        return os.getcwd()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        fold_all()  # the request path's last figures reach this worker's files before the slow steps below
        await self.spend.flush()
        if self.webhook is not None:
            await self.webhook.stop()
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            await asyncio.to_thread(billing.close_pipeline, pipeline, self.billing.exit_flush_s if self.billing else 5.0)
        await self.upstream.close()
        if self.credits is not None:
            await self.credits.ledger.close()  # settles still being written to Redis
        if self.redis is not None:
            await self.redis.close()
        await self.store.close()
        if self._journal_lock is not None:  # after the last flush released the journal's files
            os.close(self._journal_lock)
            self._journal_lock = None
        from .metrics import mark_process_dead

        mark_process_dead()
