"""What the providers' end-to-end tests (test_providers_e2e.py) share: the fakes behind one proxy,
the config routing a model name to each, the chat cases every provider is held to, and small readers
of keys, spend and Lago events. Expected costs are computed from the price table's own values.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai

import llmbill
from tests.python.fakes.azure_upstream import API_KEY as AZURE_KEY, FakeAzure
from tests.python.fakes.bedrock_upstream import ACCESS_KEY, SECRET_KEY, FakeBedrock
from tests.python.fakes.gemini_upstream import FakeGemini
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.fakes.vertex_upstream import FakeVertex
from tests.python.proxy_harness import Proxy

MASTER = "sk-master-providers-e2e-0123456789"
CODE = "llm_tokens"
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
HI = [{"role": "user", "content": "Say hello."}]


@dataclass
class Fakes:
    openai: FakeOpenAI
    gemini: FakeGemini
    vertex: FakeVertex
    bedrock: FakeBedrock
    azure: FakeAzure
    lago: FakeLago


@dataclass(frozen=True)
class Case:
    """One provider's chat deployment, as the proxy serves it and the table prices it."""

    model: str  # the name clients call
    price_name: str  # the price table's name of the upstream model
    fake: str  # the Fakes attribute serving it
    bad_auth: str  # a deployment of the same fake whose credentials the provider refuses
    translated: bool  # replies translated from the provider's own shape (else OpenAI's, passed on)

    def price(self) -> Any:
        found = llmbill.default_prices().find(self.price_name)
        assert found is not None and found.priced, self.price_name
        return found


CASES = [
    Case("gemini-flash", "gemini/gemini-2.5-flash", "gemini", "gemini-badkey", True),
    Case("vertex-flash", "vertex_ai/gemini-2.5-flash", "vertex", "vertex-elsewhere", True),
    Case("bedrock-sonnet", "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "bedrock-badsecret", True),
    Case("azure-4o", "azure/gpt-4o-2024-08-06", "azure", "azure-badkey", False),
    Case("groq-oss", "groq/openai/gpt-oss-20b", "openai", "groq-badkey", False),
]
IDS = [c.model for c in CASES]


def cost(price: Any, prompt: int, completion: int = 0) -> Decimal:
    """Tokens times the table's per-token prices, exactly (Decimal, from the table's own values)."""
    total = Decimal(prompt) * price.input_cost_per_token
    if completion:
        total += Decimal(completion) * price.output_cost_per_token
    return Decimal(total)


def deployments(f: Fakes) -> list[dict[str, Any]]:
    """Each provider's deployment, one whose credentials the provider refuses, embeddings, a wildcard."""
    aws = {"api_base": f.bedrock.url, "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY,
           "aws_region_name": "us-east-1"}
    vertex = {"api_base": f.vertex.url, "vertex_project": "acme", "vertex_location": "us-east5",
              "vertex_credentials": json.dumps(f.vertex.account.info if f.vertex.account else {})}
    azure = {"api_base": f.azure.url, "api_key": AZURE_KEY, "api_version": "2024-10-21"}
    d: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("gemini-flash", {"model": "gemini/gemini-2.5-flash", "api_base": f.gemini.url, "api_key": "gemini-key"}, {}),
        ("gemini-badkey", {"model": "gemini/gemini-2.5-flash", "api_base": f.gemini.url, "api_key": "wrong"}, {}),
        ("vertex-flash", {"model": "vertex_ai/gemini-2.5-flash", **vertex}, {}),
        ("vertex-elsewhere", {"model": "vertex_ai/gemini-2.5-flash", **vertex, "vertex_project": "not-ours"}, {}),
        ("bedrock-sonnet", {"model": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", **aws}, {}),
        ("bedrock-badsecret", {"model": "bedrock/converse/anthropic.claude-sonnet-4-5-20250929-v1:0", **aws,
                               "aws_secret_access_key": "not-the-secret"}, {}),
        ("bedrock-titan", {"model": "bedrock/amazon.titan-embed-text-v2:0", **aws}, {}),
        ("azure-4o", {"model": "azure/prod-4o", **azure}, {"base_model": "gpt-4o-2024-08-06"}),
        ("azure-mini", {"model": "azure/mini", **azure}, {}),  # priced by the model its replies name
        ("azure-badkey", {"model": "azure/prod-4o", **azure, "api_key": "wrong"}, {"base_model": "gpt-4o-2024-08-06"}),
        ("azure-embed", {"model": "azure/embed", **azure}, {"base_model": "text-embedding-3-small"}),
        ("groq-oss", {"model": "groq/openai/gpt-oss-20b", "api_base": f.openai.url, "api_key": "gsk-1"}, {}),
        ("groq-badkey", {"model": "groq/openai/gpt-oss-20b", "api_base": f.openai.url, "api_key": "gsk-2"}, {}),
        ("*", {"model": "gemini/*", "api_base": f.gemini.url, "api_key": "gemini-key"}, {}),
        ("vllm", {"model": "hosted_vllm/my-llama", "api_base": f.openai.url, "input_cost_per_token": "3e-07",
                  "output_cost_per_token": "6e-07"}, {}),
    ]
    # Each chat case's twin: an openai/ deployment with the same prices, for the budget comparison.
    for case in CASES:
        p = case.price()
        d.append((f"twin-{case.model}", {"model": f"openai/twin-{case.model}", "api_base": f.openai.url,
                                         "api_key": "sk-up", "input_cost_per_token": str(p.input_cost_per_token),
                                         "output_cost_per_token": str(p.output_cost_per_token)}, {}))
    return [{"model_name": name, "litellm_params": params, **({"model_info": info} if info else {})}
            for name, params, info in d]



def config(f: Fakes) -> tuple[dict[str, Any], dict[str, str]]:
    """The proxy's config and environment: every deployment above, Lago billing by end user."""
    config = {"model_list": deployments(f), "litellm_settings": {"callbacks": ["lago"]},
              "general_settings": {"master_key": MASTER}}
    env = {"LAGO_API_BASE": f.lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": CODE,
           "LAGO_API_CHARGE_BY": "end_user_id"}
    return config, env


def new_key(proxy: Proxy, max_budget: Decimal | None = None) -> str:
    body: dict[str, Any] = {} if max_budget is None else {"max_budget": str(max_budget)}
    status, reply, _ = proxy.request("POST", "/key/generate", body, MASTER)
    assert status == 200, reply
    return str(reply["key"])


def sdk(proxy: Proxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0)


def key_spend(proxy: Proxy, key: str) -> Decimal:
    status, info, _ = proxy.request("GET", f"/key/info?key={key}", None, MASTER)
    assert status == 200, info
    return Decimal(str(info["info"]["spend"]))


def customer_spend(proxy: Proxy, customer: str) -> Decimal:
    status, info, _ = proxy.request("GET", f"/customer/info?end_user_id={customer}", None, MASTER)
    assert status == 200, info
    return Decimal(str(info["spend"]))


def events(lago: FakeLago, call_ids: list[str], timeout: float = 10) -> dict[str, dict[str, Any]]:
    """The Lago events of these calls, waited for (the proxy's sender delivers behind the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {e["transaction_id"]: e for e in lago.events if e["transaction_id"] in call_ids}
        if len(found) == len(call_ids) or time.monotonic() > deadline:
            assert sorted(found) == sorted(call_ids), "events missing in Lago"
            return found
        time.sleep(0.02)


def customer_events(lago: FakeLago, customer: str) -> list[dict[str, Any]]:
    return [e for e in lago.events if e["properties"].get("end_user_id") == customer]


def fake_of(f: Fakes, case: Case) -> Any:
    return getattr(f, case.fake)

