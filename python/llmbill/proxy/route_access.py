"""Which routes a virtual key may call beyond its role: a key's `allowed_routes` (set directly or by
`key_type`) narrows them; its `permissions.get_spend_routes` opens the proxy-wide spend reads.

`allowed_routes` entries, as LiteLLM reads them: a path (which also allows the paths under it), a
pattern ending in `/*`, or one of LiteLLM's route groups — llm_api_routes, info_routes,
management_routes, openai_routes — mapped onto llmbill's routes.

>>> may_call(["llm_api_routes"], "/v1/chat/completions"), may_call(["llm_api_routes"], "/key/generate")
(True, False)
>>> may_call(["/key"], "/key/info"), may_call(["/key"], "/keys")
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence

from .auth import Principal
from .errors import auth_error

_LLM = frozenset(f"{p}{r}" for p in ("", "/v1") for r in ("/chat/completions", "/completions", "/embeddings",
                                                           "/models", "/responses")) | {
    "/engines/embeddings", "/v1/messages", "/v1/messages/count_tokens", "/anthropic/v1/messages",
    "/anthropic/v1/messages/count_tokens"}
_INFO = frozenset({"/key/info", "/key/list", "/team/info", "/team/list", "/user/info", "/models", "/v1/models",
                   "/health/liveliness", "/health/liveness", "/health/readiness"})
GROUPS: dict[str, frozenset[str]] = {"llm_api_routes": _LLM, "openai_routes": _LLM, "info_routes": _INFO}
_MANAGEMENT_PREFIXES = ("/key/", "/team/", "/user/")
GLOBAL_SPEND = frozenset({"/global/spend/teams", "/global/spend/keys", "/global/spend/end_users",
                          "/global/spend/report"})


def _matches(allowed: str, path: str) -> bool:
    if allowed == "management_routes":
        return path.startswith(_MANAGEMENT_PREFIXES) or path == "/spend/logs"
    group = GROUPS.get(allowed)
    if group is not None:
        return path in group
    if allowed.endswith("/*"):
        return path.startswith(allowed[:-1])
    return path == allowed or path.startswith(allowed.rstrip("/") + "/")


def may_call(allowed_routes: Sequence[str], path: str) -> bool:
    return not allowed_routes or any(_matches(a, path) for a in allowed_routes)


def check_route(principal: Principal, path: str) -> None:
    """403 when the caller's key is limited to other routes."""
    allowed = (principal.key or {}).get("allowed_routes")
    if allowed and not may_call(allowed, path):
        shown = ", ".join(allowed[:10])
        raise auth_error(f"this key may call only these routes: {shown} (allowed_routes); not {path}", 403)


def spend_granted(principal: Principal, method: str, path: str) -> bool:
    """A key with `permissions.get_spend_routes` reads the proxy-wide spend routes."""
    return (method == "GET" and path in GLOBAL_SPEND
            and bool(((principal.key or {}).get("permissions") or {}).get("get_spend_routes")))
