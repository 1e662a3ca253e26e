"""The ASGI application: a flat route table, authentication, OpenAI-style errors, lifespan."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .auth import MASTER, Principal, check_key_usable, hash_key, is_master, presented_key, principal_for
from .config import ProxyConfig, load_config
from .anthropic_errors import anthropic_error_body
from .errors import ProxyError, auth_error, error_body
from .http import JSON_HEADERS, Receive, Request, Response, Scope, Send, StreamingResponse
from . import billing_watch, fd_table, gc_policy, logs, metrics, metrics_tally, observe, openapi
from .credits import calls as credit_calls
from .route_access import check_route, spend_granted
from .routes import lago_webhooks
from .routes import (budgets, customers, docs, health, keys, llm, messages, ops, responses, spend, spend_report, teams,
                     users)
from .state import ProxyState
from .store.base import StoreError
from .ui import pages as ui
from .ui.sessions import CSRF_HEADER, cookie_value

log = logging.getLogger("llmbill.proxy")

Handler = Callable[[ProxyState, Request, Any], Awaitable[Response | StreamingResponse]]

PUBLIC, ANY_KEY, ADMIN = "public", "any key", "admin"
# Routes whose clients read Anthropic's error shape.
ANTHROPIC_PATHS = frozenset(f"{p}/v1/messages{s}" for p in ("", "/anthropic") for s in ("", "/count_tokens"))
PUBLIC_MAX_BODY = 8 * 1024  # what a route anyone may call reads at most (the sign-in form)


def _llm(route: str) -> Handler:
    async def handler(state: ProxyState, request: Request, principal: Principal) -> Response | StreamingResponse:
        return await llm.llm_call(state, request, principal, route)
    return handler


def route_table() -> dict[tuple[str, str], tuple[Handler, str]]:
    table: dict[tuple[str, str], tuple[Handler, str]] = {}
    for prefix in ("", "/v1"):
        table[("POST", f"{prefix}/chat/completions")] = (_llm("chat"), ANY_KEY)
        table[("POST", f"{prefix}/completions")] = (_llm("completion"), ANY_KEY)
        table[("POST", f"{prefix}/embeddings")] = (_llm("embedding"), ANY_KEY)
        table[("GET", f"{prefix}/models")] = (llm.models, ANY_KEY)
        table[("POST", f"{prefix}/responses")] = (responses.responses, ANY_KEY)  # OpenAI's Responses API
    table[("POST", "/engines/embeddings")] = (_llm("embedding"), ANY_KEY)
    for prefix in ("", "/anthropic"):  # Anthropic's Messages API (the SDK and Claude Code)
        table[("POST", f"{prefix}/v1/messages")] = (messages.messages, ANY_KEY)
        table[("POST", f"{prefix}/v1/messages/count_tokens")] = (messages.count_tokens, ANY_KEY)
    table.update({
        ("GET", "/health/liveliness"): (health.liveliness, PUBLIC),
        ("GET", "/health/liveness"): (health.liveliness, PUBLIC),
        ("GET", "/health/readiness"): (health.readiness, PUBLIC),
        ("GET", "/openapi.json"): (docs.openapi_json, PUBLIC),  # generated from the routes' field declarations
        ("GET", "/docs"): (docs.page, PUBLIC),
        # Key routes check ownership themselves (own keys, team admins, admins): permissions.py.
        ("POST", "/key/generate"): (keys.generate, ANY_KEY),
        ("GET", "/key/info"): (keys.info, ANY_KEY),
        ("POST", "/key/update"): (keys.update, ANY_KEY),
        ("POST", "/key/delete"): (keys.delete, ANY_KEY),
        ("GET", "/key/list"): (keys.list_keys, ANY_KEY),
        ("POST", "/key/regenerate"): (keys.regenerate, ANY_KEY),
        ("POST", "/key/block"): (keys.block, ANY_KEY),
        ("POST", "/key/unblock"): (keys.unblock, ANY_KEY),
        ("POST", "/team/new"): (teams.team_new, ADMIN),
        ("GET", "/team/info"): (teams.team_info, ANY_KEY),
        ("GET", "/team/list"): (teams.team_list, ANY_KEY),
        ("POST", "/team/update"): (teams.team_update, ADMIN),
        ("POST", "/team/delete"): (teams.team_delete, ADMIN),
        ("POST", "/team/block"): (teams.team_block, ADMIN),
        ("POST", "/team/unblock"): (teams.team_unblock, ADMIN),
        ("POST", "/team/member_add"): (teams.member_add, ANY_KEY),
        ("POST", "/team/member_delete"): (teams.member_delete, ANY_KEY),
        ("POST", "/team/member_update"): (teams.member_update, ANY_KEY),
        ("POST", "/user/new"): (users.user_new, ADMIN),
        ("GET", "/user/info"): (users.user_info, ANY_KEY),
        ("POST", "/user/update"): (users.user_update, ADMIN),
        ("POST", "/user/delete"): (users.user_delete, ADMIN),
        ("GET", "/user/list"): (users.user_list, ADMIN),
        ("GET", "/global/spend/teams"): (spend.teams, ADMIN),
        ("GET", "/global/spend/keys"): (spend.keys, ADMIN),
        ("GET", "/global/spend/end_users"): (spend.end_users, ADMIN),
        ("GET", "/spend/logs"): (spend.logs, ANY_KEY),
        ("GET", "/global/spend/report"): (spend_report.report, ADMIN),
        ("POST", "/budget/new"): (budgets.new, ADMIN),
        ("GET", "/budget/info"): (budgets.info, ADMIN),
        ("POST", "/budget/info"): (budgets.info, ADMIN),
        ("POST", "/budget/update"): (budgets.update, ADMIN),
        ("POST", "/budget/delete"): (budgets.delete, ADMIN),
        ("GET", "/budget/list"): (budgets.list_budgets, ADMIN),
    })
    for prefix in ("/customer", "/end_user"):
        table.update({
            ("POST", f"{prefix}/new"): (customers.new, ADMIN),
            ("GET", f"{prefix}/info"): (customers.info, ADMIN),
            ("POST", f"{prefix}/update"): (customers.update, ADMIN),
            ("POST", f"{prefix}/delete"): (customers.delete, ADMIN),
            ("POST", f"{prefix}/block"): (customers.block, ADMIN),
            ("POST", f"{prefix}/unblock"): (customers.unblock, ADMIN),
            ("GET", f"{prefix}/list"): (customers.list_customers, ADMIN),
        })
    # The admin UI (proxy/ui): its page signs in itself; its script calls the routes above.
    table[("GET", "/ui")] = (ui.page, PUBLIC)
    table[("POST", "/ui/login")] = (ui.login, PUBLIC)
    table[("POST", "/ui/logout")] = (ui.logout, PUBLIC)
    for name in ui.ASSETS:
        table[("GET", f"/ui/static/{name}")] = (ui.asset(name), PUBLIC)
    table.update({
        ("GET", "/metrics"): (ops.scrape, ADMIN),  # PUBLIC when general_settings.metrics_open
        ("POST", "/billing/reconcile"): (ops.reconcile, ADMIN),
        ("POST", "/lago/webhooks"): (lago_webhooks.receive, PUBLIC),  # signed by Lago, not a key
    })
    return table


class ProxyApp:
    def __init__(self, config: ProxyConfig, state: ProxyState | None = None) -> None:
        self.config = config
        self.state = state or ProxyState(config)
        self.routes = route_table()
        if config.metrics_open:
            self.routes[("GET", "/metrics")] = (self.routes[("GET", "/metrics")][0], PUBLIC)
        self.paths = {path for _, path in self.routes}
        docs.publish(openapi.build(self.routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        poll = self.state.idle_poll  # counts the requests in flight (idle_poll.py)
        poll.begin()
        try:
            request = Request(scope, receive, self.config.max_request_bytes)
            path = request.path.rstrip("/") or "/"
            entry = self.routes.get((request.method, path))
            info = observe.begin(request.method, path)
            if path in self.paths:
                info.route = path  # a bounded label: only the route table's paths
            try:
                if entry is None:
                    if path in self.paths:
                        raise ProxyError(405, f"{request.method} is not allowed on {path}", "bad_request_error")
                    raise ProxyError(404, f"no route {request.method} {path}", "not_found_error")
                handler, access = entry
                principal = None if access == PUBLIC else await self._authenticate(request, access)
                if access == PUBLIC:  # no credentials: never buffer the configured 32 MB for it
                    request.max_body = min(request.max_body, PUBLIC_MAX_BODY)
                response = await handler(self.state, request, principal)
            except ProxyError as exc:
                if exc.type == "budget_exceeded":
                    observe.budget_refused(exc.message, getattr(exc, "budget_kind", None))
                body = (anthropic_error_body(exc.status, exc.message, exc.type) if path in ANTHROPIC_PATHS
                        else exc.body())
                response = Response(exc.status, body,
                                    list(JSON_HEADERS) + [(k.encode(), v.encode()) for k, v in exc.headers.items()])
            except StoreError as exc:
                log.error("database error on %s %s: %s", request.method, path, exc)
                response = Response(503, error_body(503, "the database is unavailable; retry later",
                                                    "service_unavailable"))
            except Exception:
                log.exception("unexpected error on %s %s", request.method, path)
                response = Response(500, error_body(500, "internal error (logged by the proxy)", "internal_error"))
            try:
                await response.send(send)
            finally:
                observe.finish(info, response.status)
        finally:
            poll.end()  # the last one out: the client's next request may follow at once

    async def _authenticate(self, request: Request, access: str) -> Principal:
        master = self.config.master_key
        if master is None:
            return MASTER  # no master key configured: an open proxy (warned at start-up)
        raw = presented_key(request)
        if not raw and (session := cookie_value(request)) is not None:
            # The admin UI: a live session cookie plus its CSRF header act as the master key.
            await self.state.ui_sessions.check(session, request.headers.get(CSRF_HEADER))
            return MASTER
        if not raw:
            raise auth_error("missing API key: send 'Authorization: Bearer <key>'")
        if is_master(raw, master):
            return MASTER
        token_hash = hash_key(raw)
        record = self.state.cache.fresh_key(token_hash)  # held and fresh: no coroutine to await
        if record is None:
            record = await self.state.cache.get_or_fetch("key", token_hash)
        if record is None:
            raise auth_error("invalid API key")
        check_key_usable(record)
        user = self.state.cache.get("user", record["user_id"]) if record.get("user_id") else None
        principal = principal_for(record, user)  # a blocked user's keys are refused on every route
        path = request.path.rstrip("/") or "/"
        check_route(principal, path)  # allowed_routes / key_type
        if access == ADMIN and not principal.is_admin and not spend_granted(principal, request.method, path):
            if principal.reads_all and request.method == "GET":
                return principal
            raise auth_error(f"{request.method} {request.path} needs the master key or a proxy_admin user's key"
                             + (" (proxy_admin_viewer is read-only)" if principal.reads_all else ""), 403)
        return principal

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.config.verbose:  # litellm_settings.set_verbose
                        logging.getLogger("llmbill").setLevel(logging.DEBUG)
                    fd_table.presize()  # grown now, not under the first burst of streams (fd_table.py)
                    await self.state.start()
                    credit_calls.start(self.state)  # prepaid credits: the gate and its poll
                    await billing_watch.check_codes(self.state)  # before the first call: unknown codes held
                    self.state.run_in_background(billing_watch.run(self.state))
                    if metrics.MULTIPROCESS:  # another worker's scrape reads this one's files
                        self.state.run_in_background(metrics_tally.fold_every(1.0))
                    gc_policy.apply()  # start-up's objects out of every later collection
                    self.state.announce_ready()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.state.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def app_from_env() -> ProxyApp:
    """For `--workers N`: each worker process builds its app from the config path in the environment."""
    logs.configure_from_env()
    path = os.environ.get("LLMBILL_PROXY_CONFIG") or None
    return ProxyApp(load_config(path))
