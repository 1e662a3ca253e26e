"""Fallback lists as the config and the request body spell them (proxy/fallback_rules.py,
proxy/fallback_request.py), and which provider failures start which list (proxy/failures.py)."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from llmbill.billing import ConfigError
from llmbill.proxy import failures, fallback_request, fallback_rules
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.errors import ProxyError, bad_request
from llmbill.proxy.failures import CONTENT_POLICY, CONTEXT_WINDOW, GENERAL, kind_of

MODELS = [{"model_name": n, "litellm_params": {"model": f"mock/{n}"}} for n in ("a", "b", "c")]


def load(**sections: Any) -> Any:
    return load_config_dict({"model_list": MODELS, **sections}).fallbacks


def test_the_modules_examples_hold() -> None:
    for module in (failures, fallback_rules):
        assert doctest.testmod(module).failed == 0


def test_every_list_is_read_from_either_section() -> None:
    rules = load(litellm_settings={"fallbacks": [{"a": ["b", "c"]}], "default_fallbacks": ["c"]},
                 router_settings={"context_window_fallbacks": [{"*": ["c"]}],
                                  "content_policy_fallbacks": [{"a": ["b"]}], "max_fallbacks": 1})
    assert rules.chain(GENERAL, "a") == ("b", "c")
    assert rules.chain(GENERAL, "b") == ("c",)  # default_fallbacks: any model without its own list
    assert rules.chain(CONTEXT_WINDOW, "b") == ("c",)  # "*": any model
    assert rules.chain(CONTENT_POLICY, "a") == ("b",) and rules.chain(CONTENT_POLICY, "b") == ()
    assert rules.max_fallbacks == 1 and load().max_fallbacks == 5 and not load().has(GENERAL)
    # The same value in both sections is one setting.
    same = [{"a": ["b"]}]
    assert load(litellm_settings={"fallbacks": same}, router_settings={"fallbacks": same}).chain(GENERAL, "a") == ("b",)


def test_a_wildcard_deployment_serves_any_name() -> None:
    raw = {"model_list": [{"model_name": "*", "litellm_params": {"model": "openai/*", "api_key": "k"}}],
           "router_settings": {"fallbacks": [{"gpt-4o": ["gpt-4o-mini"]}]}}
    assert load_config_dict(raw).fallbacks.chain(GENERAL, "gpt-4o") == ("gpt-4o-mini",)


@pytest.mark.parametrize("sections,message", [
    ({"litellm_settings": {"fallbacks": {"a": ["b"]}}}, "litellm_settings.fallbacks: expected a list"),
    ({"router_settings": {"fallbacks": ["b"]}}, "router_settings.fallbacks[0]: expected a mapping"),
    ({"router_settings": {"fallbacks": [{}]}}, "router_settings.fallbacks[0]: expected a mapping"),
    ({"router_settings": {"fallbacks": [{"a": "b"}]}}, "router_settings.fallbacks[0].a: expected a list"),
    ({"router_settings": {"fallbacks": [{"a": ["b", 3]}]}}, r"router_settings.fallbacks[0].a[1]: expected a model"),
    ({"router_settings": {"fallbacks": [{"a": ["b"]}, {"a": ["c"]}]}}, "router_settings.fallbacks[1].a: listed twice"),
    ({"router_settings": {"fallbacks": [{"a": ["a"]}]}}, "router_settings.fallbacks[0].a: lists the model itself"),
    ({"litellm_settings": {"context_window_fallbacks": [{"a": ["nope"]}]}},
     "litellm_settings.context_window_fallbacks.a: fallback 'nope' is not a model_name"),
    ({"router_settings": {"content_policy_fallbacks": [{"nope": ["b"]}]}},
     "router_settings.content_policy_fallbacks: 'nope' is not a model_name"),
    ({"litellm_settings": {"default_fallbacks": "b"}}, "litellm_settings.default_fallbacks: expected a list"),
    ({"litellm_settings": {"default_fallbacks": ["nope"]}}, "litellm_settings.default_fallbacks: 'nope' is not"),
    ({"router_settings": {"max_fallbacks": -1}}, "router_settings.max_fallbacks: expected an integer"),
    ({"router_settings": {"max_fallbacks": True}}, "router_settings.max_fallbacks: expected an integer"),
    ({"litellm_settings": {"fallbacks": [{"a": ["b"]}]}, "router_settings": {"fallbacks": [{"a": ["c"]}]}},
     "router_settings.fallbacks: also set, differently, in litellm_settings.fallbacks"),
])
def test_a_bad_shape_stops_start_up_naming_the_key(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(**sections)
    assert str(refused.value).startswith(message), refused.value


def validate(body: dict[str, Any]) -> None:
    if not isinstance(body.get("messages"), list):
        raise bad_request("'messages' must be a non-empty list", "messages")


def read(**fields: Any) -> fallback_request.Asked:
    return fallback_request.read({"model": "a", "messages": [], **fields}, None, validate)


def test_the_request_body_forms_as_litellm_reads_them() -> None:
    asked = read(fallbacks=["b", {"model": "c", "temperature": 0}], context_window_fallback_dict={"a": "c"},
                 content_policy_fallbacks=[{"a": ["b"]}], mock_testing_context_fallbacks=True)
    assert asked.body == {"model": "a", "messages": []}  # never sent to a provider
    assert asked.lists(GENERAL) == {"*": (("b", {}), ("c", {"temperature": 0}))}
    assert asked.lists(CONTEXT_WINDOW) == {"a": (("c", {}),)}
    assert asked.lists(CONTENT_POLICY) == {"a": (("b", {}),)}
    assert asked.mock == CONTEXT_WINDOW and not asked.disabled
    assert read(fallbacks=[{"a": ["c"]}]).lists(GENERAL) == {"a": (("c", {}),)}  # the config's shape
    assert read(disable_fallbacks=True).disabled
    assert fallback_request.read({"model": "a"}, {"metadata": {"disable_fallbacks": True}}, validate).disabled
    plain = {"model": "a", "messages": []}
    assert fallback_request.read(plain, None, validate).body is plain  # nothing to strip: no copy


@pytest.mark.parametrize("fields,param,message", [
    ({"fallbacks": "b"}, "fallbacks", "must be a list"),
    ({"fallbacks": [3]}, "fallbacks", "'fallbacks[0]' must be a model name"),
    ({"fallbacks": [""]}, "fallbacks", "'fallbacks[0]' must be a model name"),
    ({"fallbacks": [{"model": "b", "user": "someone-else"}]}, "fallbacks", "'fallbacks[0]' may not set user"),
    ({"fallbacks": [{"model": "b", "stream": True}]}, "fallbacks", "may not set stream"),
    ({"fallbacks": [{"model": "b", "messages": "x"}]}, "fallbacks", "'fallbacks[0]': 'messages' must be"),
    ({"fallbacks": ["b"] * 65}, "fallbacks", "at most 64"),
    ({"context_window_fallbacks": {"a": "b"}}, "context_window_fallbacks", "must be a list"),
    ({"content_policy_fallbacks": [{"a": "b"}]}, "content_policy_fallbacks", "content_policy_fallbacks[0].a"),
    ({"context_window_fallback_dict": ["b"]}, "context_window_fallback_dict", "must be an object"),
    ({"disable_fallbacks": "yes"}, "disable_fallbacks", "must be true or false"),
    ({"mock_testing_fallbacks": 1}, "mock_testing_fallbacks", "must be true or false"),
])
def test_a_bad_request_field_is_a_400_naming_it(fields: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(ProxyError) as refused:
        read(**fields)
    assert (refused.value.status, refused.value.param) == (400, param) and message in refused.value.message


OPENAI_WINDOW = (b'{"error": {"message": "This model\'s maximum context length is 8192 tokens. However, your '
                 b'messages resulted in 9000 tokens.", "type": "invalid_request_error", "param": "messages", '
                 b'"code": "context_length_exceeded"}}')
ANTHROPIC_WINDOW = (b'{"type": "error", "error": {"type": "invalid_request_error", '
                    b'"message": "prompt is too long: 210000 tokens > 200000 maximum"}}')
BEDROCK_WINDOW = b'{"message": "Input is too long for requested model."}'
GEMINI_WINDOW = (b'{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number '
                 b'of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}')
AZURE_FILTER = (b'{"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI\'s '
                b'content management policy.", "param": "prompt", "code": "content_filter", "status": 400}}')
OPENAI_POLICY = (b'{"error": {"code": "content_policy_violation", "message": "Your request was rejected as a result '
                 b'of our safety system.", "type": "invalid_request_error"}}')
UNKNOWN_PARAM = (b'{"error": {"message": "Unrecognized request argument supplied: foo", '
                 b'"type": "invalid_request_error"}}')


@pytest.mark.parametrize("status,body,kind", [
    (429, b"", GENERAL), (500, b"", GENERAL), (502, b"", GENERAL), (503, b"", GENERAL), (504, b"", GENERAL),
    (529, b'{"type": "error", "error": {"type": "overloaded_error"}}', GENERAL),
    (400, OPENAI_WINDOW, CONTEXT_WINDOW), (400, ANTHROPIC_WINDOW, CONTEXT_WINDOW),
    (400, BEDROCK_WINDOW, CONTEXT_WINDOW), (400, GEMINI_WINDOW, CONTEXT_WINDOW),
    (400, AZURE_FILTER, CONTENT_POLICY), (400, OPENAI_POLICY, CONTENT_POLICY),
    (400, UNKNOWN_PARAM, None), (401, b"", None), (404, b"", None), (501, b"", None),
])
def test_which_answered_failure_starts_which_list(status: int, body: bytes, kind: str | None) -> None:
    assert kind_of(status, body) == kind
