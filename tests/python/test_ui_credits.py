"""The admin UI's prepaid credits (ui/static/app.js, Customers tab) in Debian's chromium through
Playwright, against the real proxy process and the fake Lago's wallets: a customer whose credits
apply shows what /customer/info says — Lago's balance, the usage settled and not invoiced, the holds
of a call in flight, what is available and how old the balance is; a customer without credits
shows none."""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal
from typing import Any

from playwright.sync_api import Browser, expect

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_wallet_support import wallet
from tests.python.proxy_harness import Proxy
from tests.python.test_credits_e2e import call, credit_config
from tests.python.test_proxy_e2e import MASTER, lago_env
from tests.python.test_ui import browser, signed_in

__all__ = ["browser"]  # the fixture, shared with test_ui.py


def _credits(proxy: Proxy, customer: str) -> dict[str, Any]:
    status, body, _ = proxy.request("GET", f"/customer/info?end_user_id={customer}", None, MASTER)
    assert status == 200, body
    return dict(body["credits"])


def test_customers_tab_shows_the_credits_of_customers_they_apply_to(browser: Browser, upstream: FakeOpenAI,
                                                                     lago: FakeLago) -> None:
    cfg = credit_config(upstream)
    cfg["general_settings"]["credits"] = "off"  # opted in per customer
    wallet(lago, "prepaid", granted="1.00")
    with Proxy(cfg, lago_env(lago, "end_user_id")) as proxy:
        for body in ({"user_id": "prepaid", "credits": "lago"}, {"user_id": "postpaid"}):
            assert proxy.request("POST", "/customer/new", body, MASTER)[0] == 200
        assert call(proxy, "prepaid")[0] == 200 and call(proxy, "prepaid")[0] == 200  # settled, not invoiced
        upstream.delay = 6.0  # one more call stays in flight, holding its upper bound
        in_flight = threading.Thread(target=call, args=(proxy, "prepaid"), daemon=True)
        in_flight.start()
        deadline = time.monotonic() + 5
        while Decimal(str(_credits(proxy, "prepaid")["holds"])) == 0:
            assert time.monotonic() < deadline, "the call's hold never showed"
            time.sleep(0.02)
        shown = _credits(proxy, "prepaid")
        assert Decimal(str(shown["settled_not_invoiced"])) > 0 and Decimal(str(shown["lago_balance"])) == 1

        tab = signed_in(browser, proxy)
        page = tab.page
        tab.open("customers")
        expect(page.locator("#customers-table th.credits-col")).to_be_visible()
        prepaid = page.locator('#customers-table tr[data-id="prepaid"] .credits')
        expect(prepaid).to_have_attribute("data-state", "ready")
        for cls, field in (("credits-lago", "lago_balance"), ("credits-unapplied", "settled_not_invoiced"),
                           ("credits-holds", "holds"), ("credits-available", "available")):
            value = prepaid.locator(f".{cls}").get_attribute("data-value")
            assert value is not None and Decimal(value) == Decimal(str(shown[field])), (cls, value, shown)
        expect(prepaid.locator(".credits-lago")).to_have_text("Lago $1.00")
        expect(prepaid.locator(".credits-available")).to_contain_text(" available")
        expect(prepaid.locator(".credits-age")).to_have_text(re.compile(r"^balance read \d+ s ago$"))
        postpaid = page.locator('#customers-table tr[data-id="postpaid"] .credits')
        expect(postpaid).to_have_attribute("data-state", "off")
        expect(postpaid).to_have_text("—")
        expect(prepaid).not_to_contain_text("null")
        tab.shot("customers-credits-1280")
        narrow = signed_in(browser, proxy, 390)  # rows become cards: the credits keep their label
        narrow.open("customers")
        card = narrow.page.locator('#customers-table tr[data-id="prepaid"] td[data-label="Prepaid credits"]')
        expect(card.locator(".credits")).to_have_attribute("data-state", "ready")
        narrow.shot("customers-credits-390")
        narrow.context.close()

        # Refresh reads them again: the call has settled, its hold is gone.
        upstream.delay = 0
        in_flight.join(10)
        after = _credits(proxy, "prepaid")
        assert Decimal(str(after["holds"])) == 0
        page.locator("#customers-refresh").click()
        expect(prepaid.locator(".credits-holds")).to_have_text("held $0.00")
        value = prepaid.locator(".credits-unapplied").get_attribute("data-value")
        assert value is not None and Decimal(value) == Decimal(str(after["settled_not_invoiced"]))
        assert tab.errors == []
        tab.context.close()
