"""POST /lago/webhooks: Lago says a wallet changed; the payer's wallets are re-read before the reply,
so a top-up unblocks the next call as soon as Lago has sent it. The signature is checked over the
raw body first (credits/signature.py): a forged or unsigned webhook changes nothing and gets 401.
The payload is only a prompt to re-read: the balance always comes from GET /wallets."""

from __future__ import annotations

import json
from typing import Any

from ..auth import Principal
from ..credits import metrics, signature
from ..errors import ProxyError
from ..http import Request, Response, json_response
from ..state import ProxyState

WATCHED = ("wallet.created", "wallet.updated", "wallet.terminated", "wallet_transaction.created",
           "wallet_transaction.updated", "wallet.depleted_ongoing_balance")


def _payer(payload: Any, owners: dict[str, str]) -> str:
    """external_customer_id of the wallet named: the object itself, or a transaction's nested wallet;
    else the payer whose wallet has the transaction's lago_wallet_id."""
    if not isinstance(payload, dict):
        return ""
    obj = payload.get(str(payload.get("object_type") or ""))
    if not isinstance(obj, dict):
        return ""
    wallet = obj["wallet"] if isinstance(obj.get("wallet"), dict) else obj
    ident = wallet.get("external_customer_id")
    if isinstance(ident, str) and ident:
        return ident
    return owners.get(str(obj.get("lago_wallet_id") or wallet.get("lago_id") or ""), "")


async def receive(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    gate = state.credits
    if gate is None:
        raise ProxyError(404, "prepaid credits are off: no Lago webhooks are taken", "not_found_error")
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
    try:
        payload = json.loads(body)
    except ValueError:
        raise ProxyError(400, "the webhook's body is not JSON", "bad_request_error") from None
    owners = {w.lago_id: a.payer for a in gate.accounts.values() for w in a.wallets}
    payer = _payer(payload, owners)
    # Only payers this process gates are re-read: a webhook never makes state for an unknown id.
    if isinstance(payload, dict) and payload.get("webhook_type") in WATCHED and payer in gate.accounts:
        await gate.refresh(payer)
    return json_response({"received": True})
