"""The reservation a call holds against budgets is an upper bound of what it is then billed: every
body byte a prompt token, images at the documented maximum, every choice, the output limit when
max_tokens is absent, each side at its dearest rate — and parallel calls end within that bound."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import orjson
import pytest

from llmbill.proxy.config import load_config_dict
from llmbill.proxy.deployments import Deployment
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.upper_bound import IMAGE_TOKENS, UNKNOWN_CONTEXT_TOKENS, UNKNOWN_OUTPUT_TOKENS, upper_bound_cost
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, lago_env

IN, OUT = Decimal("0.000001"), Decimal("0.000002")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city, today.",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}}}}]
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}


def deployment(model: str = "openai/my-model", **params: Any) -> Deployment:
    if model.startswith("openai/my-"):
        params = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, **params}
    entry: dict[str, Any] = {"model_name": "m", "litellm_params": {"model": model, "api_key": "k", **params}}
    if "model_info" in params:
        entry["model_info"] = entry["litellm_params"].pop("model_info")
    return load_config_dict({"model_list": [entry]}).deployments[0]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, **extra}


def body_bytes(d: Deployment, body: dict[str, Any]) -> int:
    """What the upstream receives: the body with the deployment's model name."""
    return len(orjson.dumps({**body, "model": d.upstream_model}))


def bound(d: Deployment, body: dict[str, Any], route: str = "chat") -> Decimal:
    b = upper_bound_cost(d, route, body)
    assert b.unpriced is None
    return b.cost


def test_every_body_byte_is_a_prompt_token_and_every_choice_is_counted() -> None:
    d = deployment()
    body = chat(tools=TOOLS, response_format={"type": "json_object"}, n=16)
    assert bound(d, body) == body_bytes(d, body) * IN + 16 * 10 * OUT
    # tools, response_format and n each raise it (main counted messages and max_tokens once)
    assert bound(d, body) > bound(d, chat(n=16)) > bound(d, chat())


def test_completions_count_the_prompt_beside_messages_and_best_of() -> None:
    d = deployment()
    body = {"model": "m", "prompt": "x" * 5000, "messages": [{"role": "user", "content": "y"}], "max_tokens": 7,
            "n": 2, "best_of": 5}
    assert bound(d, body, "completion") == body_bytes(d, body) * IN + 5 * 7 * OUT
    assert bound(d, {"model": "m", "input": ["a", "b"]}, "embedding") == body_bytes(d, {"model": "m", "input": ["a", "b"]}) * IN


def test_images_count_at_the_documented_maximum_and_unbounded_parts_at_the_context_window() -> None:
    d = deployment()
    body = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "what is it"}, IMAGE, IMAGE]}])
    assert bound(d, body) == (body_bytes(d, body) + 2 * IMAGE_TOKENS) * IN + 10 * OUT
    pdf = {"type": "file", "file": {"file_id": "file-abc"}}
    body = chat(messages=[{"role": "user", "content": [pdf]}])
    assert bound(d, body) == (body_bytes(d, body) + UNKNOWN_CONTEXT_TOKENS) * IN + 10 * OUT
    gpt4o = deployment("openai/gpt-4o")  # the table knows its context window: 128k
    for unknown in ({"type": "video_url", "video_url": {"url": "v"}}, pdf):
        body = chat(messages=[{"role": "user", "content": [unknown]}])
        assert bound(gpt4o, body) == (body_bytes(gpt4o, body) + 128_000) * Decimal("2.5e-6") + 10 * Decimal("1e-5")
    body = chat(web_search_options={})
    assert bound(gpt4o, body) == (body_bytes(gpt4o, body) + 128_000) * Decimal("2.5e-6") + 10 * Decimal("1e-5")


def test_without_max_tokens_the_model_output_limit_bounds_each_choice() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 3}
    gpt4o = deployment("openai/gpt-4o")  # 16384 output tokens in the table
    assert bound(gpt4o, body) == body_bytes(gpt4o, body) * Decimal("2.5e-6") + 3 * 16384 * Decimal("1e-5")
    d = deployment()  # a name the table lacks: no known limit
    assert bound(d, body) == body_bytes(d, body) * IN + 3 * UNKNOWN_OUTPUT_TOKENS * OUT
    d = deployment(model_info={"max_output_tokens": 1000})
    assert bound(d, body) == body_bytes(d, body) * IN + 3 * 1000 * OUT
    d = deployment()  # both limits given: the larger, whichever the upstream honours
    assert bound(d, chat(max_completion_tokens=50)) == body_bytes(d, chat(max_completion_tokens=50)) * IN + 50 * OUT
    # rejected prediction tokens bill as output
    prediction = {"type": "content", "content": "p" * 300}
    assert bound(d, chat(prediction=prediction)) == (body_bytes(d, chat(prediction=prediction)) * IN
                                                    + (10 + len(orjson.dumps(prediction))) * OUT)


def test_each_side_at_the_dearest_rate_the_model_has() -> None:
    body = chat()
    # cache writes dearer than input (Anthropic): 3.75e-6 per prompt token, output 1.5e-5
    claude = deployment("mock/claude-sonnet-4-5")
    assert bound(claude, body) == body_bytes(claude, body) * Decimal("3.75e-6") + 10 * Decimal("1.5e-5")
    # a >200k tier applies however small the prompt looks: 2.5e-6 in, 1.5e-5 out
    pro = deployment("mock/gemini-2.5-pro")
    assert bound(pro, body) == body_bytes(pro, body) * Decimal("2.5e-6") + 10 * Decimal("1.5e-5")
    custom = deployment(cache_creation_input_token_cost=5e-06)
    assert bound(custom, body) == body_bytes(custom, body) * Decimal("0.000005") + 10 * OUT


def test_the_deployment_upstream_name_is_what_is_sent() -> None:
    d = deployment("openai/my-model-with-a-much-longer-upstream-name")
    body = chat()
    assert bound(d, body) == body_bytes(d, body) * IN + 10 * OUT


@pytest.mark.parametrize("field,value", [("n", 0), ("n", -1), ("n", "2"), ("n", True), ("n", 2.0), ("n", 129),
                                         ("n", 10**30), ("best_of", 0), ("best_of", 1000),
                                         ("max_tokens", 10**30), ("max_completion_tokens", 10**9)])
def test_malformed_counts_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ProxyError) as err:
        upper_bound_cost(deployment(), "chat", chat(**{field: value}))
    assert err.value.status == 400 and err.value.param == field


def test_an_unpriced_model_has_no_bound() -> None:
    d = deployment("openai/no-such-model-anywhere", input_cost_per_token=None, output_cost_per_token=None)
    b = upper_bound_cost(d, "chat", chat(n=2))
    assert b.unpriced == "m" and b.cost == 0
    with pytest.raises(ProxyError):
        upper_bound_cost(d, "chat", chat(n=0))  # still validated


def test_parallel_calls_with_n_tools_and_images_end_within_one_upper_bound(upstream: FakeOpenAI,
                                                                           lago: FakeLago) -> None:
    """The issue's measurement (n=16, 30 parallel calls) against an upstream that bills everything a
    request allows: gpt-4o-mini's largest image, every choice to max_tokens."""
    upstream.usage_from_request = True
    upstream.image_tokens = IMAGE_TOKENS
    upstream.delay = 0.2  # the calls overlap
    cfg = {"model_list": [{"model_name": "vision", "litellm_params": {
               "model": "openai/my-vision", "api_base": upstream.url, "api_key": "k",
               "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}],
           "litellm_settings": {"callbacks": ["lago"]}, "general_settings": {"master_key": MASTER}}
    body = {"model": "vision", "n": 16, "max_tokens": 50, "tools": TOOLS,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "which city is this?"}, IMAGE]}]}
    # The README's bound, by hand: body bytes + one image at 48,169 tokens; 16 choices of 50 tokens.
    sent = len(orjson.dumps({**body, "model": "my-vision"}))
    one_call = (sent + IMAGE_TOKENS) * IN + 16 * 50 * OUT
    budget = Decimal("0.2")
    with Proxy(cfg, lago_env(lago, "end_user_id")) as proxy:
        s, key, _ = proxy.request("POST", "/key/generate", {"max_budget": str(budget)}, MASTER)
        assert s == 200, key

        def until_refused(_: int) -> list[Decimal]:
            costs = []
            while True:
                s, reply, headers = proxy.request("POST", "/chat/completions", body, key["key"])
                if s != 200:
                    assert s == 422 and reply["error"]["type"] == "budget_exceeded", reply
                    return costs
                assert len(reply["choices"]) == 16
                costs.append(Decimal(headers["x-litellm-response-cost"]))

        with ThreadPoolExecutor(30) as pool:
            costs = [c for per_thread in pool.map(until_refused, range(30)) for c in per_thread]
        spend = sum(costs, Decimal(0))
        s, info, _ = proxy.request("GET", f"/key/info?key={key['key']}", None, MASTER)
        assert Decimal(str(info["info"]["spend"])) == spend
    assert costs and max(costs) <= one_call  # the fake billed close to the bound: it is not loose
    assert max(costs) > one_call * Decimal("0.9")
    assert spend <= budget + one_call, (spend, len(costs))


def test_anthropic_messages_bodies_are_bounded_by_their_blocks() -> None:
    """/v1/messages: tool_use and tool_result blocks are text the provider reads (bounded by their
    bytes); an image inside a tool_result is counted; a document is not bounded by its bytes."""
    d = deployment()
    turn = [{"role": "user", "content": [{"type": "text", "text": "run it"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "sh", "input": {"cmd": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a b c"}]}]
    body = {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "be brief"}], "messages": turn}
    assert bound(d, body, "messages") == body_bytes(d, body) * IN + 10 * OUT
    with_image = {**body, "messages": turn[:2] + [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}]}
    assert bound(d, with_image, "messages") == (body_bytes(d, with_image) + IMAGE_TOKENS) * IN + 10 * OUT
    document = {**body, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}
    assert bound(d, document, "messages") >= UNKNOWN_CONTEXT_TOKENS * IN


def test_responses_inputs_and_stored_context() -> None:
    """/v1/responses: input_image items count as images, max_output_tokens bounds the output, and a
    previous_response_id (a stored conversation the provider prepends) is not bounded by the body."""
    d = deployment()
    body = {"model": "m", "max_output_tokens": 10,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "what is this"},
                                                   {"type": "input_image", "image_url": "https://x/y.png"}]}]}
    assert bound(d, body, "responses") == (body_bytes(d, body) + IMAGE_TOKENS) * IN + 10 * OUT
    chained = {"model": "m", "max_output_tokens": 10, "input": "and then?", "previous_response_id": "resp_1"}
    assert bound(d, chained, "responses") >= UNKNOWN_CONTEXT_TOKENS * IN
