"""OpenAI chat/completions request → Anthropic Messages request body (pure; see anthropic.py).

Decisions (each one a place where the two APIs differ):
- `system` and `developer` messages, wherever they stand, become the top-level `system` in their
  order, as text blocks that keep their `cache_control`.
- Messages become content blocks; consecutive messages of one role merge into one turn (tool
  results first, then the text that followed them, as Anthropic requires). The conversation must
  start with a user turn: nothing is invented to make it so (ProviderInputError instead).
- Empty text is dropped (Anthropic rejects empty text blocks): an assistant turn that only carried
  tool calls keeps them; a user turn left with nothing is an error.
- A message-level `cache_control` (LiteLLM's spelling) lands on that message's last block.
- `max_tokens` is required by Anthropic: `max_completion_tokens`, else `max_tokens`, else the
  deployment's `max_output_tokens` (params.extra, the model's output limit), else 4096.
- `response_format` json_object / json_schema: a forced tool named JSON_TOOL whose input schema is
  the requested schema (Anthropic's documented way of getting JSON that follows a schema through
  tool use, and available on every tool-capable model); the reply's call of that tool becomes the
  message content (anthropic_reply.py). It cannot be combined with the client's own tools.
- A parameter Anthropic cannot honour is refused (ProviderInputError naming it) unless it holds
  OpenAI's default (`n: 1`, `logprobs: false`, penalties 0, ...). `metadata` (OpenAI's tags for
  stored completions) and `service_tier` do not change the answer and are not forwarded.
- Anthropic-only parameters LiteLLM users send through the OpenAI route, `top_k` and `thinking`,
  are passed on as they are; an assistant message's `thinking_blocks` (LiteLLM's field) go back as
  its first blocks, as Anthropic requires when thinking and tools are combined.
- Within messages, what Anthropic has no place for is left out: a message's `name` and an image's
  `detail` (Anthropic sizes images itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import ProviderInputError

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "llmbill_json_response"  # reserved: the forced tool that carries response_format JSON
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

Json = dict[str, Any]

# Accepted when they hold OpenAI's default value (the answer is then the same without them).
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "n": (1,), "logprobs": (False,), "frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0),
    "logit_bias": ({},), "store": (False,), "modalities": (["text"],), "top_logprobs": (0,),
}
# Consumed here, or harmless to leave out (see the module docstring).
_HANDLED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop",
    "temperature", "top_p", "top_k", "thinking", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "user", "metadata", "service_tier",
})
_HINTS = {
    "functions": "use `tools`", "function_call": "use `tool_choice`",
    "reasoning_effort": "use Anthropic's `thinking` parameter",
}


def messages_body(body: Mapping[str, Any], model: str, stream: bool, max_output_tokens: Any = None) -> Json:
    """The Messages API body for an OpenAI chat body (raises ProviderInputError)."""
    _refuse_unsupported(body)
    system, turns = _conversation(body.get("messages"))
    out: Json = {"model": model, "max_tokens": _max_tokens(body, max_output_tokens), "messages": turns}
    if system:
        out["system"] = system
    stop = body.get("stop")
    if stop is not None:
        out["stop_sequences"] = _stop_sequences(stop)
    for name, upper in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None:
            out[name] = _unit_number(name, value, upper)
    for name in ("top_k", "thinking"):
        if body.get(name) is not None:
            out[name] = body[name]
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise ProviderInputError("'user' must be a string", "user")
        if user:
            out["metadata"] = {"user_id": user}
    _tools(body, out)
    if stream:
        out["stream"] = True
    return out


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if name in _HANDLED or value is None:
            continue
        if any(type(value) is type(d) and value == d for d in _DEFAULTS.get(name, ())):
            continue  # `n: true` is not `n: 1`: the type must match too
        hint = _HINTS.get(name)
        why = f"; {hint}" if hint else ""
        raise ProviderInputError(f"Anthropic models do not support '{name}' = {_short(value)}{why}", name)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _max_tokens(body: Mapping[str, Any], fallback: Any) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ProviderInputError(f"'{name}' must be a positive integer", name)
        return value
    if isinstance(fallback, int) and not isinstance(fallback, bool) and fallback > 0:
        return fallback
    return DEFAULT_MAX_TOKENS


def _stop_sequences(stop: Any) -> list[str]:
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ProviderInputError("'stop' must be a string or a list of strings", "stop")
    return [s for s in items if s]


def _unit_number(name: str, value: Any, upper: float) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= upper:
        raise ProviderInputError(f"'{name}' must be a number from 0 to {upper:g} for Anthropic models", name)
    return value


# ---- messages -------------------------------------------------------------------------------------

def _conversation(messages: Any) -> tuple[list[Json], list[Json]]:
    if not isinstance(messages, list) or not messages:
        raise ProviderInputError("'messages' must be a non-empty list", "messages")
    system: list[Json] = []
    turns: list[Json] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise ProviderInputError(f"{where} must be an object", where)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_with_cache_control(_text_blocks(message.get("content"), where), message))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            blocks, role = [_tool_result(message, where)], "user"
        else:
            raise ProviderInputError(f"{where}.role {role!r} is not one Anthropic models accept "
                                     "(system, developer, user, assistant, tool)", f"{where}.role")
        if not blocks:
            if role == "assistant":
                continue  # nothing said: an empty assistant turn carries nothing to send
            raise ProviderInputError(f"{where}.content is empty", f"{where}.content")
        blocks = _with_cache_control(blocks, message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _merge(turns[-1]["content"], blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise ProviderInputError("'messages' needs at least one user message for Anthropic models", "messages")
    if turns[0]["role"] != "user":
        raise ProviderInputError("Anthropic models need the conversation (after system messages) to start "
                                 "with a user message", "messages")
    return system, turns


def _merge(earlier: list[Json], later: list[Json]) -> list[Json]:
    # Anthropic wants a user turn's tool results before anything else in it.
    both = earlier + later
    results = [b for b in both if b.get("type") == "tool_result"]
    return results + [b for b in both if b.get("type") != "tool_result"] if results else both


def _with_cache_control(blocks: list[Json], message: Mapping[str, Any]) -> list[Json]:
    mark = message.get("cache_control")
    if mark is not None and blocks:
        blocks[-1] = {**blocks[-1], "cache_control": mark}
    return blocks


def _text_blocks(content: Any, where: str) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise ProviderInputError(f"{where}.content must be a string or a list of parts", f"{where}.content")
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "refusal"):
            raise ProviderInputError(f"{where}.content[{j}] must be a text part here", f"{where}.content")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str):
            raise ProviderInputError(f"{where}.content[{j}] has no text", f"{where}.content")
        if text:
            out.append(_cached({"type": "text", "text": text}, part))
    return out


def _cached(block: Json, part: Mapping[str, Any]) -> Json:
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _user_blocks(content: Any, where: str) -> list[Json]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, where)
    if not isinstance(content, list):
        raise ProviderInputError(f"{where}.content must be a string or a list of parts", f"{where}.content")
    out: list[Json] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            out.extend(_text_blocks([part], where))
        elif kind == "image_url":
            out.append(_cached(_image(part.get("image_url"), f"{where}.content[{j}]"), part))
        elif kind == "file":
            out.append(_cached(_document(part.get("file"), f"{where}.content[{j}]"), part))
        else:
            raise ProviderInputError(f"{where}.content[{j}]: part type {kind!r} is not supported for Anthropic "
                                     "models (text, image_url, file with PDF data)", f"{where}.content")
    return out


def _image(spec: Any, where: str) -> Json:
    url = spec.get("url") if isinstance(spec, Mapping) else spec
    if not isinstance(url, str) or not url:
        raise ProviderInputError(f"{where}.image_url.url is missing", f"{where}.image_url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _data_url(url, where)
    if media_type not in IMAGE_TYPES:
        raise ProviderInputError(f"{where}: image type {media_type!r} is not supported by Anthropic models "
                                 f"({', '.join(sorted(IMAGE_TYPES))})", f"{where}.image_url")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(spec: Any, where: str) -> Json:
    data_url = spec.get("file_data") if isinstance(spec, Mapping) else None
    if not isinstance(data_url, str):
        raise ProviderInputError(f"{where}: only files given inline as file_data can go to Anthropic models",
                                 f"{where}.file")
    media_type, data = _data_url(data_url, where)
    if media_type != "application/pdf":
        raise ProviderInputError(f"{where}: file type {media_type!r} is not supported (application/pdf)",
                                 f"{where}.file")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, where: str) -> tuple[str, str]:
    head, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not head.endswith(";base64"):
        raise ProviderInputError(f"{where}: expected an http(s) URL or a base64 data: URL", where)
    return head[len("data:"):-len(";base64")].lower(), data


def _assistant_blocks(message: Mapping[str, Any], where: str) -> list[Json]:
    blocks: list[Json] = []
    thinking = message.get("thinking_blocks")  # LiteLLM's field: Anthropic wants them sent back
    if isinstance(thinking, list):
        blocks.extend(dict(b) for b in thinking if isinstance(b, Mapping))
    blocks.extend(_text_blocks(message.get("content"), where))
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise ProviderInputError(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    for k, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]"))
    return blocks


def _tool_use(call: Any, where: str) -> Json:
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(call, Mapping) or call.get("type", "function") != "function" or not isinstance(fn, Mapping):
        raise ProviderInputError(f"{where} must be a function tool call", where)
    call_id, name, arguments = call.get("id"), fn.get("name"), fn.get("arguments") or "{}"
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise ProviderInputError(f"{where} needs an id and a function name", where)
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderInputError(f"{where}.function.arguments must be a JSON object", f"{where}.function.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": value}


def _tool_result(message: Mapping[str, Any], where: str) -> Json:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ProviderInputError(f"{where}.tool_call_id is missing", f"{where}.tool_call_id")
    content = message.get("content")
    block: Json = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        block["content"] = _text_blocks(content, where)
    return block


# ---- tools and response_format --------------------------------------------------------------------

def _tools(body: Mapping[str, Any], out: Json) -> None:
    given = body.get("tools") or []
    if not isinstance(given, list):
        raise ProviderInputError("'tools' must be a list", "tools")
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(given)]
    choice = _tool_choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ProviderInputError("'parallel_tool_calls' must be true or false", "parallel_tool_calls")
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        if tools or choice is not None:
            raise ProviderInputError("'response_format' JSON cannot be combined with tools for Anthropic models",
                                     "response_format")
        tools, choice = [json_tool], {"type": "tool", "name": JSON_TOOL}
    if parallel is False and tools:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice["type"] == "none":
            del choice["disable_parallel_tool_use"]
    if tools:
        out["tools"] = tools
    if choice is not None and tools:  # without tools there is nothing to choose from
        out["tool_choice"] = choice


def _tool(tool: Any, where: str) -> Json:
    fn = tool.get("function") if isinstance(tool, Mapping) else None
    if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(fn, Mapping):
        raise ProviderInputError(f"{where}: only function tools can go to Anthropic models", where)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ProviderInputError(f"{where}.function.name is missing", f"{where}.function.name")
    if name == JSON_TOOL:
        raise ProviderInputError(f"{where}: the tool name {JSON_TOOL!r} is reserved", f"{where}.function.name")
    schema = fn.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise ProviderInputError(f"{where}.function.parameters must be a JSON schema of type object",
                                 f"{where}.function.parameters")
    out: Json = {"name": name, "input_schema": dict(schema)}
    if isinstance(fn.get("description"), str) and fn["description"]:
        out["description"] = fn["description"]
    if fn.get("strict") is True:
        out["strict"] = True
    return _cached(out, tool)


def _tool_choice(choice: Any, tools: Sequence[Json]) -> Json | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str) or not any(t["name"] == name for t in tools):
        raise ProviderInputError("'tool_choice' must be auto, none, required or a function named in 'tools'",
                                 "tool_choice")
    return {"type": "tool", "name": name}


def _json_tool(response_format: Any) -> Json | None:
    kind = response_format.get("type") if isinstance(response_format, Mapping) else response_format
    if response_format is None or kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object"}
        description = "Reply with a JSON object."
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise ProviderInputError("response_format.json_schema.schema must be a JSON schema of type object "
                                     "for Anthropic models", "response_format")
        assert isinstance(spec, Mapping)
        description = spec.get("description") or "Reply with a JSON object that follows this schema."
    else:
        raise ProviderInputError("'response_format' must be text, json_object or json_schema", "response_format")
    return {"name": JSON_TOOL, "description": description, "input_schema": dict(schema)}
