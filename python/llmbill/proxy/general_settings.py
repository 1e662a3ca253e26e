"""The config's `general_settings` keys that need more than a type check: the master key, the
database, alerting, the record cache's size and sync interval, the failure policies, Redis. Each
reader returns the value ProxyConfig holds or raises ConfigError naming the key; `notes` collects
what start-up warns about. (unpriced_model_fallback is read by config_prices.py.)

>>> database_url({"database_url": "sqlite:///x.db"}, Path("."))
'sqlite:///x.db'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import redact
from ..billing import ConfigError
from .config_values import env_ref, expect, str_list
from .idle_poll import DEFAULT_IDLE_POLL_US, MAX_IDLE_POLL_US

KNOWN_GENERAL = {"master_key", "database_url", "alerting", "require_prices", "max_request_size_mb",
                 "spend_flush_interval", "cache_refresh_interval", "metrics_open", "unpriced_model_fallback",
                 "billing_failure_policy", "credits", "credits_settings", "redis_url", "redis_failure_policy",
                 "cache_max_entries", "cache_sync_interval", "idle_poll_us"}
SAMPLE_KEYS = {"sk-1234", "sk-12345", "sk-test", "sk-master", "changeme"}
# billing_failure_policy (proxy/billing_gate.py) and redis_failure_policy (proxy/redis_limits.py)
FAILURE_POLICIES = ("fail_closed", "fail_open")


def master_key(general: Mapping[str, Any], notes: list[str]) -> str | None:
    """general_settings.master_key; a missing, short or sample key is allowed but warned about."""
    key: str | None = env_ref(general.get("master_key"), "general_settings.master_key")
    if key is not None:
        expect(key, str, "general_settings.master_key")
        if len(key) < 16 or key in SAMPLE_KEYS:
            notes.append("general_settings.master_key: a short or sample key; anyone who guesses it "
                         "administers the proxy (use 16+ random characters)")
    else:
        notes.append("general_settings.master_key: not set; every route is open to anyone who can reach the proxy")
    return key


def database_url(general: Mapping[str, Any], base_dir: Path) -> str:
    """general_settings.database_url, else DATABASE_URL, else llmbill.db beside the config file."""
    db: str | None = (env_ref(general.get("database_url"), "general_settings.database_url")
                      or os.environ.get("DATABASE_URL"))
    if db is not None:
        expect(db, str, "general_settings.database_url")
        if not db.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(f"general_settings.database_url: {redact.url(db)!r} is neither sqlite:///path "
                              "nor postgresql://...")
        return db
    return f"sqlite:///{(base_dir / 'llmbill.db').resolve()}"


def alerting(general: Mapping[str, Any], notes: list[str]) -> tuple[tuple[str, ...], str | None]:
    """(general_settings.alerting, the webhook URL): 'webhook' is the one channel, sent to WEBHOOK_URL."""
    channels = str_list(general.get("alerting"), "general_settings.alerting")
    webhook_url = None
    if "webhook" in channels:
        webhook_url = os.environ.get("WEBHOOK_URL")
        if not webhook_url or not webhook_url.startswith(("http://", "https://")):
            raise ConfigError("general_settings.alerting: 'webhook' needs WEBHOOK_URL set to an http(s) URL")
    for i, a in enumerate(channels):
        if a != "webhook":
            notes.append(f"general_settings.alerting[{i}]: {a!r} is not supported (only 'webhook'); ignored")
    return channels, webhook_url


def cache_max_entries(general: Mapping[str, Any]) -> int:
    """Records of each kind one process holds in memory (proxy/cache.py)."""
    cache_max: int = expect(general.get("cache_max_entries", 50_000), int, "general_settings.cache_max_entries")
    if isinstance(cache_max, bool) or not 100 <= cache_max <= 100_000_000:
        raise ConfigError("general_settings.cache_max_entries: must be an integer from 100 to 100000000 "
                          "(records of each kind one process holds in memory)")
    return cache_max


def cache_sync_interval(general: Mapping[str, Any]) -> float:
    """Seconds between reads of the change log (SQLite; PostgreSQL pushes)."""
    sync = expect(general.get("cache_sync_interval", 0.25), (int, float), "general_settings.cache_sync_interval")
    if not 0.01 <= sync <= 60:
        raise ConfigError("general_settings.cache_sync_interval: must be between 0.01 and 60 seconds")
    return float(sync)


def idle_poll_us(general: Mapping[str, Any]) -> int:
    """Microseconds the event loop may keep polling after a write instead of sleeping, when the last
    wait of the kind fitted in them (proxy/idle_poll.py); 0 never."""
    us = general.get("idle_poll_us", DEFAULT_IDLE_POLL_US)
    if isinstance(us, bool) or not isinstance(us, int) or not 0 <= us <= MAX_IDLE_POLL_US:
        raise ConfigError(f"general_settings.idle_poll_us: must be an integer from 0 to {MAX_IDLE_POLL_US} "
                          "(microseconds the event loop polls after a write before it sleeps)")
    return us


def failure_policy(general: Mapping[str, Any], name: str) -> str:
    """general_settings.<name> (billing_failure_policy, redis_failure_policy): fail_closed unless set."""
    policy: str = expect(general.get(name, "fail_closed"), str, f"general_settings.{name}")
    if policy not in FAILURE_POLICIES:
        raise ConfigError(f"general_settings.{name}: {policy!r} is not one of fail_closed, fail_open")
    return policy


def redis_url(general: Mapping[str, Any]) -> str | None:
    """general_settings.redis_url, else LiteLLM's variables: REDIS_URL, or REDIS_HOST (+ REDIS_PORT,
    REDIS_PASSWORD)."""
    url: str | None = env_ref(general.get("redis_url"), "general_settings.redis_url")
    if url is not None:
        expect(url, str, "general_settings.redis_url")
    url = url or os.environ.get("REDIS_URL")
    if not url and os.environ.get("REDIS_HOST"):
        from urllib.parse import quote

        password = os.environ.get("REDIS_PASSWORD")
        auth = f":{quote(password, safe='')}@" if password else ""
        url = f"redis://{auth}{os.environ['REDIS_HOST']}:{os.environ.get('REDIS_PORT') or 6379}"
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("general_settings.redis_url: not a redis://, rediss:// or unix:// URL")
    return url or None
