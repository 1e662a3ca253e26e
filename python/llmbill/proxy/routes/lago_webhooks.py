"""POST /lago/webhooks: Lago says something changed. The signature is checked over the raw body first
(credits/signature.py): a forged or unsigned webhook changes nothing and gets 401. The payload is
only a prompt to re-read Lago: balances come from GET /wallets, subscriptions from GET
/subscriptions/{external_id}.

- A wallet changed (wallet.*, wallet_transaction.*): every other process on the same Redis is told
  (credits/fanout.py), then this one re-reads the payer's wallets before the reply, so a top-up
  unblocks the next call on any proxy as soon as Lago has sent it.
- A subscription started (`subscription.started`: created active, a pending one activated, or a
  plan change): its external id is re-checked at once, here and in every other process, and released
  if it was held (subscription_watch.py) — behind the reply, since releasing may replay letters.
"""

from __future__ import annotations

import json
from typing import Any

from .. import subscription_watch
from ..auth import Principal
from ..credits import metrics, signature
from ..credits.gate import CreditGate
from ..errors import ProxyError
from ..http import Request, Response, json_response
from ..state import ProxyState

WATCHED = ("wallet.created", "wallet.updated", "wallet.terminated", "wallet_transaction.created",
           "wallet_transaction.updated", "wallet.depleted_ongoing_balance")
STARTED = "subscription.started"


def checking(state: ProxyState) -> bool:
    """Whether this proxy holds ids without a subscription (LAGO_CHECK_SUBSCRIPTIONS)."""
    return state.billing is not None and state.billing.check_subscriptions


def _object(payload: Any) -> dict[str, Any]:
    """The webhook's object: `payload[payload["object_type"]]`."""
    if not isinstance(payload, dict):
        return {}
    obj = payload.get(str(payload.get("object_type") or ""))
    return obj if isinstance(obj, dict) else {}


def _wallet_of(obj: dict[str, Any]) -> tuple[str, str]:
    """(external_customer_id, lago wallet id) of the wallet named: the object itself, or a
    transaction's nested wallet (or its lago_wallet_id)."""
    wallet = obj["wallet"] if isinstance(obj.get("wallet"), dict) else obj
    payer = wallet.get("external_customer_id")
    wallet_id = obj.get("lago_wallet_id") or wallet.get("lago_id")
    return (payer if isinstance(payer, str) else "", wallet_id if isinstance(wallet_id, str) else "")


async def _verified(gate: CreditGate, request: Request) -> bytes:
    body = await request.body()
    sent = request.headers.get("x-lago-signature", "")
    how = signature.algorithm(request.headers)
    if how == "hmac":
        valid = signature.hmac_ok(gate.settings.hmac_key, body, sent)
    elif how == "jwt" and gate.settings.jwt:
        valid = signature.jwt_ok(await gate.public_key(), gate.settings.issuer, body, sent)
    else:
        valid = False
    if not valid:
        metrics.webhooks("forged").inc()
        raise ProxyError(401, "the webhook's X-Lago-Signature does not verify", "auth_error")
    metrics.webhooks("accepted").inc()
    return body


async def receive(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    gate = state.credits
    if gate is None:
        raise ProxyError(404, "this proxy has no Lago (LAGO_API_BASE): no Lago webhooks are taken", "not_found_error")
    body = await _verified(gate, request)
    try:
        payload = json.loads(body)
    except ValueError:
        raise ProxyError(400, "the webhook's body is not JSON", "bad_request_error") from None
    kind = payload.get("webhook_type") if isinstance(payload, dict) else None
    obj = _object(payload)
    if kind in WATCHED:
        await gate.changed(*_wallet_of(obj))
    elif kind == STARTED and isinstance(obj.get("external_id"), str) and obj["external_id"] and checking(state):
        ident = obj["external_id"]
        if gate.fanout is not None:
            await gate.fanout.publish("subscription", id=ident)
        state.run_in_background(subscription_watch.started(state, ident))
    return json_response({"received": True})
