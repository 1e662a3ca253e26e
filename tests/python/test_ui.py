"""The admin UI (/ui) in Debian's chromium, driven by Playwright for Python, against the real proxy
process (fake OpenAI upstream, fake Lago, a seeded spend history): sign-in and the session cookie,
Budgets, Customers, Keys and Spend, at 1280 and 390 px wide.

Screenshots of every tab are saved to build/ui-screenshots/ (git-ignored: CI artifacts). A missing
/usr/bin/chromium fails these tests rather than skipping them: scripts/deps installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.spend_history import past_logs, seed
from tests.python.test_customers import ask, seed_config
from tests.python.test_proxy_e2e import MASTER, lago_env

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "ui-screenshots"
expect.set_options(timeout=5000)


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    workdir = Path(tempfile.mkdtemp(prefix="llmbill-ui-"))
    seed(workdir / "llmbill.db", past_logs())  # 30 days of history for the chart
    with FakeOpenAI() as upstream, FakeLago(api_key="lago-key") as lago:
        config = seed_config(upstream)
        config["general_settings"]["database_url"] = f"sqlite:///{workdir / 'llmbill.db'}"
        with Proxy(config, lago_env(lago, "end_user_id"), workdir=workdir) as p:
            yield p
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: scripts/deps installs Debian's chromium package")
    home = tempfile.mkdtemp(prefix="llmbill-chromium-")  # chromium writes its profile under HOME/XDG dirs
    env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": f"{home}/config", "XDG_CACHE_HOME": f"{home}/cache"}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, env=env)
        yield b
        b.close()
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class Tab:
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        """The whole page down to the end of its content (not the empty rest of the viewport)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        width, bottom = self.page.evaluate("[innerWidth, Math.ceil(document.querySelector('main, .login-box')"
                                           ".getBoundingClientRect().bottom + scrollY) + 16]")
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True,
                             clip={"x": 0, "y": 0, "width": width, "height": bottom})

    def open(self, tab: str) -> None:
        self.page.click(f"#tab-{tab}")
        expect(self.page.locator(f"#panel-{tab}")).to_have_attribute("data-state", "ready")


def new_tab(browser: Browser, proxy: Proxy, width: int) -> Tab:
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=proxy.url)
    tab = Tab(context, context.new_page())
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


def signed_in(browser: Browser, proxy: Proxy, width: int = 1280) -> Tab:
    tab = new_tab(browser, proxy, width)
    tab.page.goto("/ui")
    tab.page.fill("#master-key", MASTER)
    tab.page.click("#login-form button[type=submit]")
    expect(tab.page.locator("#panel-budgets")).to_have_attribute("data-state", "ready")
    return tab


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the caller sees the 303 itself


def raw_request(proxy: Proxy, method: str, path: str, headers: dict[str, str], body: bytes | None = None
                ) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(proxy.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirects).open(req, timeout=10) as r:
            r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        e.read()
        e.close()
        return e.code, {k.lower(): v for k, v in e.headers.items()}


def test_wrong_master_key_is_refused(browser: Browser, proxy: Proxy) -> None:
    tab = new_tab(browser, proxy, 1280)
    page = tab.page
    page.goto("/ui")
    page.fill("#master-key", "sk-not-the-master-key")
    with page.expect_response("**/ui/login") as answer:
        page.click("#login-form button[type=submit]")
    assert answer.value.status == 401
    expect(page.locator("#login-error")).to_have_text("Wrong master key.")
    expect(page.locator("#panel-budgets")).to_have_count(0)
    assert tab.context.cookies() == []
    status = page.evaluate("fetch('/budget/list').then(r => r.status)")
    assert status == 401  # and the API refuses the browser too
    tab.shot("signin-refused-1280")
    tab.context.close()
    assert not tab.errors


def test_session_cookie_is_opaque_http_only_and_needs_the_csrf_header(browser: Browser, proxy: Proxy) -> None:
    tab = signed_in(browser, proxy)
    page = tab.page
    (cookie,) = tab.context.cookies()
    assert cookie["name"] == "llmbill_session"
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert MASTER not in cookie["value"] and len(cookie["value"]) >= 40
    assert MASTER not in page.url and page.url.endswith("/ui")
    assert page.evaluate("document.cookie") == ""  # invisible to scripts
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert MASTER not in page.content()
    csrf = page.locator('meta[name="llmbill-csrf"]').get_attribute("content")
    assert csrf and csrf != cookie["value"]

    session = {"cookie": f"llmbill_session={cookie['value']}", "content-type": "application/json"}
    assert raw_request(proxy, "GET", "/budget/list", {**session, "x-llmbill-csrf": csrf})[0] == 200
    assert raw_request(proxy, "GET", "/budget/list", session)[0] == 403  # no CSRF header
    assert raw_request(proxy, "POST", "/budget/new", {**session, "x-llmbill-csrf": "forged"},
                       b'{"budget_id": "csrf"}')[0] == 403
    assert raw_request(proxy, "GET", "/budget/list", {"cookie": "llmbill_session=made-up", "x-llmbill-csrf": csrf})[0] == 401
    assert proxy.request("GET", "/budget/info?budget_id=csrf", None, MASTER)[0] == 404  # nothing was created

    page.click("#sign-out")
    expect(page.locator("#login-form")).to_be_visible()
    assert tab.context.cookies() == []
    assert raw_request(proxy, "GET", "/budget/list", {**session, "x-llmbill-csrf": csrf})[0] == 401  # ended server-side
    tab.context.close()
    assert not tab.errors


def test_operator_journey(browser: Browser, proxy: Proxy) -> None:
    tab = signed_in(browser, proxy)
    page = tab.page

    # Budgets: + Create Budget, checks beside the fields, then my-free-tier with budget 4.
    page.get_by_role("button", name="+ Create Budget").click()
    form = page.locator("#budget-form")
    form.locator("#budget-max").fill("-1")
    form.locator("#budget-tpm").fill("1.5")
    form.locator("#budget-duration").fill("3 weeks")
    form.get_by_role("button", name="Create budget").click()
    expect(form.locator('[data-for="budget_id"]')).to_have_text("Required.")
    expect(form.locator('[data-for="max_budget"]')).to_contain_text("0 or more")
    expect(form.locator('[data-for="tpm_limit"]')).to_contain_text("whole number")
    expect(form.locator('[data-for="budget_duration"]')).to_contain_text("1mo")
    form.locator("#budget-id").fill("my-free-tier")
    form.locator("#budget-max").fill("4")
    form.locator("#budget-soft").fill("5")
    form.locator("#budget-tpm").fill("")
    form.locator("#budget-duration").fill("1mo")
    form.get_by_role("button", name="Create budget").click()
    expect(form.locator('[data-for="soft_budget"]')).to_have_text("Must not exceed the max budget.")
    form.locator("#budget-soft").fill("3")
    form.get_by_role("button", name="Create budget").click()
    expect(page.locator("#budget-dialog")).not_to_be_visible()
    row = page.locator('#budgets-table tr[data-id="my-free-tier"]')
    expect(row).to_contain_text("$4.00")
    expect(row).to_contain_text("$3.00")
    s, b, _ = proxy.request("GET", "/budget/info?budget_id=my-free-tier", None, MASTER)
    assert s == 200 and b["max_budget"] == 4 and b["soft_budget"] == 3 and b["budget_duration"] == "1mo"
    # The API's own refusal lands beside the field it names.
    page.get_by_role("button", name="+ Create Budget").click()
    form.locator("#budget-id").fill("my-free-tier")
    form.get_by_role("button", name="Create budget").click()
    expect(form.locator('[data-for="budget_id"]')).to_have_text("budget 'my-free-tier' already exists")
    form.get_by_role("button", name="Cancel").click()
    # Edit: the RPM limit.
    row.get_by_role("button", name="Edit").click()
    expect(form.locator("#budget-id")).to_have_value("my-free-tier")
    form.locator("#budget-rpm").fill("600")
    form.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("600")

    # Customers: create one on the tier; its spend moves after a call through the proxy.
    tab.open("customers")
    page.get_by_role("button", name="+ New customer").click()
    cform = page.locator("#customer-form")
    cform.locator("#customer-id").fill("my-customer-id")
    cform.locator("#customer-alias").fill("My Customer Inc.")
    cform.locator("#customer-tier").select_option("my-free-tier")
    cform.locator("#customer-max").fill("2")
    cform.get_by_role("button", name="Create customer").click()
    expect(cform.locator('[data-for="max_budget"]')).to_contain_text("not both")
    cform.locator("#customer-max").fill("")
    cform.get_by_role("button", name="Create customer").click()
    crow = page.locator('#customers-table tr[data-id="my-customer-id"]')
    expect(crow.locator(".amount")).to_have_text("$0.00 of $4.00")
    expect(crow.locator(".tier")).to_have_text("my-free-tier")
    assert ask(proxy, "my-customer-id")[0] == 200
    assert ask(proxy, "walk-in")[0] == 200  # a customer first seen in a call, no tier
    page.get_by_role("button", name="Refresh").click()
    expect(crow.locator(".amount")).to_have_text("$0.000026 of $4.00")
    expect(crow.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "0.000026")
    page.fill("#customer-search", "inc.")
    expect(page.locator("#customers-table tbody tr")).to_have_count(1)
    page.fill("#customer-search", "")
    tab.shot("customers-1280")

    # A failed API call shows the API's message: the tier has a customer.
    tab.open("budgets")
    expect(row).to_contain_text("UTC")  # next reset: the customer's window ends on the 1st
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#panel-budgets > .api-error")).to_contain_text(
        "budget 'my-free-tier' is the tier of 1 customer(s) (my-customer-id)")
    for extra in ({"budget_id": "pro", "max_budget": 50, "soft_budget": 40, "rpm_limit": 600, "budget_duration": "1mo"},
                  {"budget_id": "trial", "max_budget": 1, "tpm_limit": 20000, "budget_duration": "7d"}):
        assert proxy.request("POST", "/budget/new", extra, MASTER)[0] == 200
    tab.open("customers")
    tab.open("budgets")
    expect(page.locator("#budgets-table tbody tr")).to_have_count(3)
    tab.shot("budgets-1280")

    # Block the customer: the badge says so, and the proxy refuses its calls.
    tab.open("customers")
    crow.get_by_role("button", name="Block").click()
    expect(crow.locator(".badge")).to_have_text("blocked")
    s, b, _ = ask(proxy, "my-customer-id")
    assert s == 403 and b["error"]["type"] == "customer_blocked"
    # And assign a tier to the walk-in customer.
    page.locator('#customers-table tr[data-id="walk-in"]').get_by_role("button", name="Tier…").click()
    page.locator("#tier-select").select_option("trial")
    page.locator("#tier-form").get_by_role("button", name="Save").click()
    expect(page.locator('#customers-table tr[data-id="walk-in"] .tier')).to_have_text("trial")

    # Keys: generate (raw key shown once, copyable), it works, then revoke it.
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=proxy.url)
    tab.open("keys")
    page.get_by_role("button", name="+ Generate key").click()
    kform = page.locator("#key-form")
    kform.locator("#key-alias").fill("ui-key")
    kform.locator("#key-team").fill("team-ui")
    kform.locator("#key-duration").fill("soon")
    kform.get_by_role("button", name="Generate").click()
    expect(kform.locator('[data-for="duration"]')).to_contain_text("30s")
    kform.locator("#key-duration").fill("30d")
    # (Names the proxy does not serve are accepted, as LiteLLM accepts them: tests/python/test_model_access.py.)
    kform.locator("#key-models").fill("gpt-3.5-turbo")
    kform.get_by_role("button", name="Generate").click()
    raw = page.locator("#new-key-value")
    expect(raw).to_have_text(re.compile(r"^sk-\S{20,}$"))
    key = raw.inner_text()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#new-key-copied")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    krow = page.locator('#keys-table tr[data-alias="ui-key"]')
    expect(krow).to_contain_text("team-ui")
    assert key not in krow.inner_text()  # the list shows only the masked key
    s, b, _ = proxy.request("POST", "/chat/completions", {"model": "gpt-3.5-turbo", "user": "key-customer",
                                                          "messages": [{"role": "user", "content": "hi"}]}, key)
    assert s == 200, b
    tab.shot("keys-1280")
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#new-key")).to_be_hidden()
    assert key not in page.content()  # gone from the page
    page.get_by_role("button", name="Refresh").click()
    expect(krow).to_contain_text("$0.000026")
    page.once("dialog", lambda d: d.accept())
    krow.get_by_role("button", name="Revoke").click()
    expect(krow).to_have_count(0)
    s, b, _ = proxy.request("POST", "/chat/completions", {"model": "gpt-3.5-turbo",
                                                          "messages": [{"role": "user", "content": "hi"}]}, key)
    assert s == 401

    # Spend: the chart renders (history + today's calls), top customers, the billing pipeline.
    tab.open("spend")
    chart = page.locator("#spend-chart svg.chart-svg")
    expect(chart).to_be_visible()
    assert chart.locator("rect.bar").count() >= 14
    expect(page.locator("#spend-legend")).to_contain_text("gpt-3.5-turbo")
    expect(page.locator('#top-customers tr[data-id="acme"]')).to_be_visible()
    expect(page.locator('#top-customers tr[data-id="my-customer-id"]')).to_contain_text("$0.000026")
    expect(page.locator('#pipeline [data-key="status"]')).to_have_text("healthy")
    expect(page.locator('#pipeline [data-key="delivered"]')).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator('#pipeline [data-key="dead_lettered"]')).to_have_text("0")
    tab.shot("spend-1280")
    page.select_option("#spend-group", "team")
    expect(page.locator("#spend-legend")).to_contain_text("team-ui")
    page.select_option("#spend-group", "customer")
    expect(page.locator("#spend-legend")).to_contain_text("my-customer-id")
    tab.context.close()
    assert not tab.errors


@pytest.mark.parametrize("width", [390, 1280])
def test_every_tab_fits_the_width(browser: Browser, proxy: Proxy, width: int) -> None:
    tab = signed_in(browser, proxy, width)
    page = tab.page
    for name in ("budgets", "customers", "keys", "spend"):
        tab.open(name)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} is {overflow} px wide at {width} px"
        if width == 390:
            tab.shot(f"{name}-390")
    svg_width = float(page.locator("#spend-chart svg").get_attribute("width") or 0)
    assert 0 < svg_width <= width
    tab.open("budgets")
    page.get_by_role("button", name="+ Create Budget").click()
    box = page.locator("#budget-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    if width == 390:
        tab.shot("budget-dialog-390")
    tab.context.close()
    assert not tab.errors


def test_ui_serves_its_files_from_the_installed_package(proxy: Proxy) -> None:
    import llmbill.proxy.ui as ui

    installed = Path(ui.__file__).parent
    assert "site-packages" in str(installed)  # the wheel carries the non-Python files
    for name in ("app.html", "login.html", "static/app.js", "static/app.css"):
        assert (installed / name).is_file(), name
    status, headers = raw_request(proxy, "GET", "/ui/static/app.js", {})
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, headers = raw_request(proxy, "GET", "/ui", {})
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"


def test_login_answers_json_clients_and_sets_no_cookie_when_wrong(proxy: Proxy) -> None:
    status, headers = raw_request(proxy, "POST", "/ui/login", {"content-type": "application/json"},
                                  b'{"master_key": "nope"}')
    assert status == 401 and "set-cookie" not in headers
    status, headers = raw_request(proxy, "POST", "/ui/login", {"content-type": "application/x-www-form-urlencoded"},
                                  f"master_key={MASTER}".encode())
    assert status == 303 and headers["location"] == "/ui?signed_in=1"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie and MASTER not in cookie


def test_a_browser_that_drops_the_cookie_is_told_why(proxy: Proxy) -> None:
    status, body, _ = proxy.request("GET", "/ui?signed_in=1")  # back from /ui/login, but without the cookie
    assert status == 200 and "did not keep the session cookie" in body and "HTTPS" in body


def test_without_a_master_key_the_page_is_open_and_shows_held_billing(browser: Browser) -> None:
    # An open proxy (no master key) whose Lago lacks the event code's billable metric.
    with FakeOpenAI() as upstream, FakeLago(api_key="lago-key") as lago:
        config = seed_config(upstream)
        del config["general_settings"]["master_key"]
        env = {"LAGO_API_BASE": lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": "openai_tokens"}
        with Proxy(config, env) as open_proxy:  # not lago_env(): that creates the metric
            status, body, _ = open_proxy.request("GET", "/ui")
            assert status == 200 and 'id="panel-budgets"' in body  # no sign-in form
            assert ask(open_proxy, "someone")[0] == 200
            deadline = time.monotonic() + 10  # the sender holds the event a moment later
            while open_proxy.request("GET", "/health/readiness")[1]["billing"]["dead_letters"] < 1:
                assert time.monotonic() < deadline, "the held event never became a dead letter"
                time.sleep(0.05)
            tab = new_tab(browser, open_proxy, 1280)
            tab.page.goto("/ui#spend")
            expect(tab.page.locator(".banner.warn")).to_contain_text("No master key is configured")
            expect(tab.page.locator("#panel-spend")).to_have_attribute("data-state", "ready")
            held = tab.page.locator('#pipeline [data-key="held_codes"]')
            expect(held).to_contain_text("openai_tokens (not a billable metric in Lago)")
            expect(held).to_have_class("bad")
            dead = tab.page.locator('#pipeline [data-key="dead_lettered"]')
            expect(dead).to_have_text(re.compile(r"^1 \(oldest \d+ s\)$"))
            expect(dead).to_have_class("bad")
            tab.shot("spend-held-billing-1280")
            tab.context.close()
            assert not tab.errors
