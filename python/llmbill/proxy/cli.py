"""`llmbill-proxy --config config.yaml [--host] [--port 4000] [--workers N] [--log-format text|json]`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from .. import redact
from ..billing import ConfigError, LagoSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmbill-proxy", description="OpenAI-compatible proxy with exact billing")
    parser.add_argument("--config", help="LiteLLM-style config.yaml (default: embedded defaults)")
    parser.add_argument("--host", default=None, help="default 0.0.0.0 with a config, 127.0.0.1 on embedded defaults")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 4000)))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="info adds one access line per request")
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    args = parser.parse_args(argv)
    from . import logs

    logs.configure(args.log_level, args.log_format)
    os.environ["LLMBILL_LOG_LEVEL"], os.environ["LLMBILL_LOG_FORMAT"] = args.log_level, args.log_format  # workers
    metrics_dir = None
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the proxy manages it: one worker keeps figures in memory
    if args.workers > 1:
        # Prometheus multiprocess mode: every worker writes here, a scrape of any one sums them. It must
        # be set before a worker imports prometheus_client; a fresh directory per start (no stale figures).
        metrics_dir = tempfile.mkdtemp(prefix="llmbill-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _serve(args)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(args: argparse.Namespace) -> int:
    from .config import load_config

    try:
        config = load_config(args.config)
        billing = LagoSettings.from_env() if config.lago_enabled else None
    except ConfigError as exc:
        print(f"llmbill-proxy: config error: {redact.text(str(exc))}", file=sys.stderr)
        return 2
    host = args.host or ("0.0.0.0" if args.config else "127.0.0.1")
    for note in config.warnings:
        print(f"llmbill-proxy: warning: {redact.text(note)}", file=sys.stderr)
    if args.workers > 1 and not config.redis_url:
        print(f"llmbill-proxy: warning: --workers {args.workers} without Redis: rate limits, max_parallel_requests "
              f"and budget reservations are per worker, so up to {args.workers}x a limit is admitted; set "
              "general_settings.redis_url (or REDIS_URL) to share them", file=sys.stderr)
    print(f"llmbill-proxy listening on http://{host}:{args.port} ({args.workers} worker(s), config: {config.source})")
    print(f"  models:   {', '.join(config.model_names) or '(none)'}")
    # Every URL printed here goes through redact: a DATABASE_URL or LAGO_API_BASE may hold a password.
    print(f"  database: {redact.url(config.database_url)}")
    print(f"  limits:   {'redis ' + redact.url(config.redis_url) if config.redis_url else 'in-process (per worker)'}")
    if billing is None:
        print("  billing:  off (add 'lago' to litellm_settings.callbacks)")
    elif billing.api_base:
        print(f"  billing:  {redact.text(billing.describe())}")
    else:
        print(f"  billing:  local file (LAGO_API_BASE unset): lago-events.jsonl beside the database"
              f" (code {','.join(billing.event_codes)}, charge by {billing.charge_by})")
    if config.idle_poll_us:
        print(f"  idle poll: up to {config.idle_poll_us} microseconds after a write while one request is in flight, "
              "when the last such wait fitted (general_settings.idle_poll_us; 0 turns it off)")
    else:
        print("  idle poll: off (general_settings.idle_poll_us: 0)")
    sys.stdout.flush()

    import uvicorn

    from .server_protocol import OneWriteHttpToolsProtocol  # httptools, one write(2) per response

    if args.config:
        os.environ["LLMBILL_PROXY_CONFIG"] = os.path.abspath(args.config)
    if args.workers > 1:
        uvicorn.run("llmbill.proxy.app:app_from_env", factory=True, host=host, port=args.port, workers=args.workers,
                    loop="uvloop", http=OneWriteHttpToolsProtocol, log_level=args.log_level, access_log=False,
                    lifespan="on", log_config=None, proxy_headers=False)
        return 0
    from .app import ProxyApp
    from .server import serve

    app = ProxyApp(config)
    # proxy_headers off: nothing reads the client address or scheme, and uvicorn's middleware that
    # rewrites them from X-Forwarded-* ran on every request. serve(): uvicorn's server accepting every
    # waiting connection each turn of the loop (server.py).
    started = serve(app, host=host, port=args.port, loop="uvloop", http=OneWriteHttpToolsProtocol,
                    log_level=args.log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=10,
                    log_config=None, proxy_headers=False)
    return 0 if started else 3  # uvicorn's exit status for a start-up that failed


if __name__ == "__main__":
    sys.exit(main())
