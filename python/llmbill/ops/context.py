"""What an operator command needs to find the proxy's data: its config (database, and the
`environment_variables` it sets), the Lago settings from the environment, and the spool base.

The commands read the same config file and environment as `llmbill-proxy`, so they find the same
database and spool slots: pass `--config` (or set LLMBILL_PROXY_CONFIG) and, for a PostgreSQL
proxy, run them in the proxy's working directory or set LLMBILL_SPOOL_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import billing
from .._native import core
from ..lago import slots
from ..lago.deadletters import DeadLetterBook
from ..lago.reader import LagoReader, LagoReadError
from ..lago.subscriptions import LagoSubscriptions


@dataclass(frozen=True)
class OpsContext:
    database_url: str = field(repr=False)  # may hold a password
    settings: billing.LagoSettings
    spool_base: Path

    @staticmethod
    def load(config_path: str | None = None, spool_dir: str | None = None) -> OpsContext:
        """Raises billing.ConfigError (one line naming the setting) on a bad config or environment."""
        from ..proxy.config import load_config

        path = config_path or os.environ.get("LLMBILL_PROXY_CONFIG") or None
        config = load_config(path)  # also applies its environment_variables, as the proxy does
        settings = billing.LagoSettings.from_env()
        base = Path(spool_dir) if spool_dir else slots.spool_base(config.database_url)
        return OpsContext(config.database_url, settings, base)

    def reader(self) -> LagoReader:
        if not self.settings.api_base:
            raise LagoReadError("LAGO_API_BASE is not set: events go to a local file, there is no Lago to read")
        return LagoReader(self.settings.api_base, self.settings.api_key)

    def book(self) -> DeadLetterBook:
        return DeadLetterBook(self.spool_base)

    def unknown_codes(self) -> frozenset[str]:
        """Configured codes that are not billable metrics in Lago (none without a Lago)."""
        if not self.settings.api_base:
            return frozenset()
        return frozenset(self.reader().unknown_codes(self.settings.event_codes))

    def inactive_subscriptions(self, ids: set[str]) -> frozenset[str]:
        """Of these billed ids, those without an active Lago subscription (checked only when the proxy
        checks them: LAGO_CHECK_SUBSCRIPTIONS or LAGO_AUTO_PROVISION_PLAN)."""
        if not self.settings.check_subscriptions:
            return frozenset()
        client = LagoSubscriptions(self.reader())
        return frozenset(i for i in ids if not client.active(i))

    @contextmanager
    def pipeline(self) -> Iterator[tuple[core.Pipeline, Path]]:
        """A pipeline on a free spool slot, closed on exit (what it could not deliver stays in the
        slot's spool, for the next process that opens it)."""
        sink = slots.sink_file(self.settings, self.database_url)
        pipeline, slot_dir = slots.open_free_slot(self.settings, self.spool_base, sink)
        try:
            yield pipeline, slot_dir
        finally:
            pipeline.close(1.0)
