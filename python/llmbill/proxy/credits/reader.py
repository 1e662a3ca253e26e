"""Reading a payer's wallets and the webhook public key from Lago (blocking: callers use a thread)."""

from __future__ import annotations

import base64
from typing import Any

from ...lago.reader import LagoReader, LagoReadError
from .wallets import Wallet, WalletFormatError


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
