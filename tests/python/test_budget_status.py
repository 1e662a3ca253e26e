"""The status of a budget refusal: `litellm_settings.budget_exceeded_status_code`, default 422 as
LiteLLM 1.108 answers, always with `x-should-retry: false` and LiteLLM's message texts — raw HTTP and
the openai SDK (which must not retry it), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from llmbill.billing import ConfigError
from llmbill.proxy.config import load_config_dict
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config, lago_env

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    from tests.python.pg import create_database

    return create_database(str(request.getfixturevalue("postgres_url")), f"budget_{uuid.uuid4().hex[:10]}")


def proxy_for(upstream: FakeOpenAI, lago: FakeLago, database_url: str | None, status: int | None) -> Proxy:
    cfg = config(upstream, database_url)
    if status is not None:
        cfg["litellm_settings"]["budget_exceeded_status_code"] = status
    return Proxy(cfg, lago_env(lago, "end_user_id"))


class Counting:
    """An openai client whose HTTP requests are counted (to see that the SDK did not retry)."""

    def __init__(self, proxy: Proxy, key: str) -> None:
        self.sent = 0
        self.http = httpx.Client(event_hooks={"request": [self._count]})
        self.client = openai.OpenAI(api_key=key, base_url=proxy.url + "/v1", max_retries=2, http_client=self.http)

    def _count(self, _: httpx.Request) -> None:
        self.sent += 1

    def close(self) -> None:
        self.client.close()
        self.http.close()


@pytest.fixture
def proxy(upstream: FakeOpenAI, lago: FakeLago, database_url: str | None) -> Iterator[Proxy]:
    with proxy_for(upstream, lago, database_url, None) as p:
        yield p


def test_default_is_422_never_retried_with_litellm_messages(proxy: Proxy, upstream: FakeOpenAI) -> None:
    s, key, _ = proxy.request("POST", "/key/generate", {"models": ["custom-model"], "max_budget": 0}, MASTER)
    assert s == 200, key
    s, b, h = proxy.request("POST", "/chat/completions", {"model": "custom-model", "messages": HI}, key["key"])
    assert (s, b["error"]["type"], b["error"]["code"], h["x-should-retry"]) == (422, "budget_exceeded", "422", "false")
    assert b["error"]["message"] == "Budget has been exceeded! Current cost: 0, Max budget: 0"
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "ishaan3", "max_budget": 0}, MASTER)
    counting = Counting(proxy, MASTER)
    with pytest.raises(openai.UnprocessableEntityError) as over:
        counting.client.chat.completions.create(model="custom-model", messages=HI, user="ishaan3")
    assert over.value.body["message"] == ("ExceededBudget: End User=ishaan3 over budget. "  # type: ignore[index]
                                          "Spend=0, Budget=0")
    assert counting.sent == 1 and upstream.requests == []
    counting.close()


@pytest.mark.parametrize("status, error", [(429, openai.RateLimitError), (400, openai.BadRequestError)])
def test_the_operator_pins_the_status(upstream: FakeOpenAI, lago: FakeLago, database_url: str | None, status: int,
                                      error: type[openai.APIStatusError]) -> None:
    with proxy_for(upstream, lago, database_url, status) as proxy:
        s, team, _ = proxy.request("POST", "/team/new", {"team_alias": "capped", "max_budget": 0}, MASTER)
        s, key, _ = proxy.request("POST", "/key/generate", {"team_id": team["team_id"]}, MASTER)
        counting = Counting(proxy, key["key"])
        with pytest.raises(error) as over:  # a 429 too: x-should-retry stops the SDK's retries
            counting.client.chat.completions.create(model="custom-model", messages=HI)
        assert over.value.status_code == status and over.value.response.headers["x-should-retry"] == "false"
        body: Any = over.value.body
        assert body["type"] == "budget_exceeded"
        assert body["message"].startswith(f"Budget has been exceeded! Team={team['team_id']} Current cost: 0")
        assert counting.sent == 1 and upstream.requests == []
        counting.close()


@pytest.mark.parametrize("value, message", [("422", "expected an integer"), (200, "an HTTP error status"),
                                            (True, "got bool")])
def test_config_refuses_a_status_that_is_not_an_error(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=f"litellm_settings.budget_exceeded_status_code: .*{message}"):
        load_config_dict({"litellm_settings": {"budget_exceeded_status_code": value}})
    assert load_config_dict({}).budget_exceeded_status_code == 422
