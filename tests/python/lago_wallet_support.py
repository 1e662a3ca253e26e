"""Driving the fake Lago's wallets through its REST API, as an operator would (tests share these)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.python.fakes.lago import FakeLago


def lago_api(lago: FakeLago, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(lago.url + path, data, method=method, headers={
        "Authorization": f"Bearer {lago.api_key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def customer(lago: FakeLago, external_id: str) -> None:
    status, body = lago_api(lago, "POST", "/api/v1/customers", {"customer": {"external_id": external_id,
                                                                              "currency": "USD"}})
    assert status == 200, body


def wallet(lago: FakeLago, external_id: str, granted: str | None = None, **params: Any) -> str:
    """A wallet for the customer (made first when missing); returns its lago_id."""
    if external_id not in lago.billing.customers:
        customer(lago, external_id)
    body = {"external_customer_id": external_id, "rate_amount": "1.0", "currency": "USD", **params}
    if granted is not None:
        body["granted_credits"] = granted
    status, reply = lago_api(lago, "POST", "/api/v1/wallets", {"wallet": body})
    assert status == 200, reply
    return str(reply["wallet"]["lago_id"])


def top_up(lago: FakeLago, wallet_id: str, **credits: str) -> list[Any]:
    status, reply = lago_api(lago, "POST", "/api/v1/wallet_transactions",
                             {"wallet_transaction": {"wallet_id": wallet_id, **credits}})
    assert status == 200, reply
    return list(reply["wallet_transactions"])
