"""Reading a payer's wallets, its uninvoiced usage and the webhook public key from Lago (blocking:
callers use a thread)."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from ...lago.reader import LagoReader, LagoReadError
from .wallets import Wallet, WalletFormatError, exponent


class WalletReader(LagoReader):
    def wallets(self, external_customer_id: str) -> tuple[Wallet, ...]:
        """Every wallet of the customer, terminated ones included (Lago lists both); none when Lago
        has no such customer (404 customer_not_found: no credits at all)."""
        out: list[Wallet] = []
        page = 1
        while True:
            query = {"external_customer_id": external_customer_id, "page": str(page), "per_page": "100"}
            status, data = self._get("/wallets", query)
            if status == 404 and isinstance(data, dict) and data.get("code") == "customer_not_found":
                return ()
            if status != 200 or not isinstance(data, dict) or not isinstance(data.get("wallets"), list):
                raise LagoReadError(f"Lago answered HTTP {status} to GET /wallets: {str(data)[:200]}")
            try:
                out.extend(Wallet.from_api(w) for w in data["wallets"])
            except WalletFormatError as exc:
                raise LagoReadError(f"GET /wallets?external_customer_id={external_customer_id}: {exc}") from None
            meta: dict[str, Any] = data["meta"] if isinstance(data.get("meta"), dict) else {}
            if not meta.get("next_page") or not data["wallets"]:
                return tuple(out)
            page = int(meta["next_page"])

    def current_usage(self, payer: str, metric: str, currency: str) -> Decimal:
        """What Lago has of the payer's usage of `metric` this period and has not invoiced, in money
        (GET /customers/:id/current_usage?external_subscription_id=: llmbill bills the payer's id as
        both). Σ `amount_cents` of the charges of `metric`, before taxes: the same measure as a
        settled call's charge. Lago rounds each fee half up to the cent, so half a cent is added per fee
        with usage: the figure is never below what was used (refusing at most that much early). No
        customer or no active subscription: Lago bills none of its events."""
        path = f"/customers/{quote(payer, safe='')}/current_usage"
        status, data = self._get(path, {"external_subscription_id": payer})
        code = data.get("code") if isinstance(data, dict) else None
        if (status, code) in ((404, "customer_not_found"), (405, "no_active_subscription")):
            return Decimal(0)
        usage = data.get("customer_usage") if status == 200 and isinstance(data, dict) else None
        if not isinstance(usage, dict) or not isinstance(usage.get("charges_usage"), list):
            raise LagoReadError(f"Lago answered HTTP {status} to GET {path}: {str(data)[:200]}")
        if str(usage.get("currency") or "").upper() != currency.upper():
            return Decimal(0)  # only wallets in our currency gate, and they never pay another currency's fees
        exp = exponent(currency)
        total = Decimal(0)
        for charge in usage["charges_usage"]:
            metric_code = charge.get("billable_metric", {}).get("code") if isinstance(charge, dict) else None
            if metric_code != metric:
                continue
            amount = charge.get("amount_cents")
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise LagoReadError(f"GET {path}: amount_cents is not an integer: {amount!r}")
            total += Decimal(amount).scaleb(-exp)
            if charge.get("events_count") != 0:
                total += Decimal(5).scaleb(-exp - 1)  # what half-up rounding may have taken off
        return total

    def webhook_public_key(self) -> bytes:
        """The PEM Lago signs webhook JWTs with (GET /webhooks/json_public_key: base64 of the PEM)."""
        status, data = self._get("/webhooks/json_public_key")
        key = data.get("webhook", {}).get("public_key") if isinstance(data, dict) else None
        if status != 200 or not isinstance(key, str):
            raise LagoReadError(f"Lago answered HTTP {status} to GET /webhooks/json_public_key: {str(data)[:200]}")
        try:
            return base64.b64decode(key, validate=True)
        except ValueError:
            raise LagoReadError("Lago's webhook public key is not base64") from None
