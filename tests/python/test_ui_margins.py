"""The admin UI's margin forms (ui/static/app.js, app.html) in Debian's chromium through Playwright,
against the real proxy process: a tier's margin in the budget dialog, a customer's own in its Margin…
dialog, shown in both tables (a customer on a tier shows the tier's, marked), checked beside the
field, cleared by emptying the fields, and billed: the next call's spend carries it exactly."""

from __future__ import annotations

from decimal import Decimal

from playwright.sync_api import Browser, expect

from tests.python.proxy_harness import Proxy
from tests.python.test_customers import ask
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER
from tests.python.test_ui import browser, proxy, signed_in

__all__ = ["browser", "proxy"]  # the fixtures, shared with test_ui.py


def _info(proxy: Proxy, path: str) -> dict[str, object]:
    status, body, _ = proxy.request("GET", path, None, MASTER)
    assert status == 200, body
    return dict(body)


def test_margins_of_a_tier_and_a_customer_are_set_shown_billed_and_cleared(browser: Browser, proxy: Proxy) -> None:
    tab = signed_in(browser, proxy)
    page = tab.page

    # A tier with a margin: a bad percentage is refused beside its field, then 20% + $0.05 per call.
    page.get_by_role("button", name="+ Create Budget").click()
    form = page.locator("#budget-form")
    form.locator("#budget-id").fill("resale")
    form.locator("#budget-margin-percent").fill("-5")
    form.get_by_role("button", name="Create budget").click()
    expect(form.locator('[data-for="margin_percent"]')).to_contain_text("percentage, 0 or more")
    form.locator("#budget-margin-percent").fill("20")
    form.locator("#budget-margin-fixed").fill("0.05")
    form.get_by_role("button", name="Create budget").click()
    expect(page.locator("#budget-dialog")).not_to_be_visible()
    tier_row = page.locator('#budgets-table tr[data-id="resale"]')
    expect(tier_row.locator(".margin")).to_have_text("20% + $0.05/call")
    tier = _info(proxy, "/budget/info?budget_id=resale")
    assert (Decimal(str(tier["margin_percent"])), Decimal(str(tier["margin_fixed"]))) == (20, Decimal("0.05"))

    # Customers: one on the tier shows the tier's margin, marked; one without shows none.
    for body in ({"user_id": "on-tier", "budget_id": "resale"}, {"user_id": "own-margin"}):
        assert proxy.request("POST", "/customer/new", body, MASTER)[0] == 200
    tab.open("customers")
    on_tier = page.locator('#customers-table tr[data-id="on-tier"]')
    own = page.locator('#customers-table tr[data-id="own-margin"]')
    expect(on_tier.locator(".margin")).to_have_text("20% + $0.05/call (tier)")
    expect(own.locator(".margin")).to_have_text("—")

    # The customer's own margin, through its dialog: checked, saved, shown, and billed exactly.
    own.get_by_role("button", name="Margin…").click()
    mform = page.locator("#margin-form")
    expect(page.locator("#margin-customer")).to_have_text("own-margin")
    mform.locator("#margin-fixed").fill("ten cents")
    mform.get_by_role("button", name="Save").click()
    expect(mform.locator('[data-for="margin_fixed"]')).to_contain_text("0 or more")
    mform.locator("#margin-percent").fill("33.3")
    mform.locator("#margin-fixed").fill("0.1")
    mform.get_by_role("button", name="Save").click()
    expect(page.locator("#margin-dialog")).not_to_be_visible()
    expect(own.locator(".margin")).to_have_text("33.3% + $0.10/call")
    info = _info(proxy, "/customer/info?end_user_id=own-margin")
    assert (Decimal(str(info["margin_percent"])), Decimal(str(info["margin_fixed"]))) == (Decimal("33.3"),
                                                                                          Decimal("0.1"))
    assert ask(proxy, "own-margin")[0] == 200
    spend = Decimal(str(_info(proxy, "/customer/info?end_user_id=own-margin")["spend"]))
    assert spend == CUSTOM_COST * Decimal("1.333") + Decimal("0.1")
    tab.shot("customers-margins-1280")

    # Emptied, the fields clear the customer's own margin: the API has none, the row shows none.
    own.get_by_role("button", name="Margin…").click()
    expect(mform.locator("#margin-percent")).to_have_value("33.3")
    mform.locator("#margin-percent").fill("")
    mform.locator("#margin-fixed").fill("")
    mform.get_by_role("button", name="Save").click()
    expect(own.locator(".margin")).to_have_text("—")
    info = _info(proxy, "/customer/info?end_user_id=own-margin")
    assert "margin_percent" not in info and "margin_fixed" not in info

    # Editing the tier: its fee goes, its percentage stays; the customer on it follows.
    tab.open("budgets")
    tier_row.get_by_role("button", name="Edit").click()
    expect(form.locator("#budget-margin-percent")).to_have_value("20")
    form.locator("#budget-margin-fixed").fill("")
    form.get_by_role("button", name="Save").click()
    expect(tier_row.locator(".margin")).to_have_text("20%")
    tab.open("customers")
    expect(on_tier.locator(".margin")).to_have_text("20% (tier)")
    tab.context.close()
    assert not tab.errors


def test_the_margin_dialog_fits_a_phone(browser: Browser, proxy: Proxy) -> None:
    tab = signed_in(browser, proxy, 390)
    page = tab.page
    assert proxy.request("POST", "/customer/new", {"user_id": "phone-customer"}, MASTER)[0] == 200
    tab.open("customers")
    page.locator('#customers-table tr[data-id="phone-customer"]').get_by_role("button", name="Margin…").click()
    box = page.locator("#margin-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("margin-dialog-390")
    tab.context.close()
    assert not tab.errors
