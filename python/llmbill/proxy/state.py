"""Everything a running proxy process holds: config, store, caches, spend tracker, billing pipeline,
upstream client — started and stopped together (ASGI lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .. import billing
from .._native import core
from ..lago import slots
from .cache import EntityCache
from .entity_limits import entity_limits
from .config import Deployment, ProxyConfig, wildcard_price
from .limits import Limiter
from .spend import SpendTracker
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
        self.ui_sessions = UiSessions()  # admin UI sign-ins (proxy/ui), this process only
        self.webhook: Webhook | None = Webhook(config.webhook_url) if config.webhook_url else None
        self.upstream = Upstream()
        self.pipeline: core.Pipeline | None = None
        self.billing: billing.LagoSettings | None = None
        self.spool_dir: Path | None = None
        self._deployments: dict[str, list[Deployment]] = {}
        self._rr: dict[str, itertools.cycle[Deployment]] = {}
        for d in config.deployments:
            self._deployments.setdefault(d.model_name, []).append(d)
        for name, ds in self._deployments.items():
            self._rr[name] = itertools.cycle(ds)
        self._tasks: list[asyncio.Task[None]] = []
        # Keyed by the template's id (deployments live as long as the config; an adapter's params
        # hold a dict, so a Deployment is not hashable).
        self._wildcard: dict[tuple[int, str], Deployment] = {}

    def deployment(self, model: str) -> Deployment | None:
        """One deployment of `model`, round-robin across its deployments; else the wildcard
        deployment (`model_name: "*"`), which forwards the name and prices it by the table."""
        rr = self._rr.get(model)
        if rr is not None:
            return next(rr)
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

    def has_model(self, model: str) -> bool:
        return model in self._deployments

    async def start(self) -> None:
        await self.store.open()
        await self.cache.load()
        await self.upstream.start()
        if self.webhook is not None:
            await self.webhook.start()
        default_tier = self.config.max_end_user_budget_id
        self.spend.duration_of = lambda kind, record: entity_limits(self.cache, default_tier, kind,
                                                                    record).budget_duration
        if self.config.lago_enabled:
            self.billing = billing.LagoSettings.from_env()
            self.pipeline = self._open_pipeline(self.billing)
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
        pipeline, self.spool_dir = slots.open_free_slot(settings, self.spool_base(), slots.sink_file(settings, url))
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
        await self.spend.flush()
        if self.webhook is not None:
            await self.webhook.stop()
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            await asyncio.to_thread(pipeline.close, self.billing.exit_flush_s if self.billing else 5.0)
        await self.upstream.close()
        await self.store.close()
        from .metrics import mark_process_dead

        mark_process_dead()
