"""OpenAI chat/completions body → Bedrock Converse body (pure; no I/O).

What Converse needs that OpenAI does not enforce: system text apart from the conversation, roles
user/assistant only, strictly alternating and starting with the user, tool results as user content
blocks (`toolResult`) answering the previous turn's `toolUse` blocks, images as raw bytes (base64 in
JSON, from a data: URL — the adapter never fetches a URL), and no blank text blocks. A request that
cannot be said in Converse is refused with ProviderInputError naming the parameter, never altered
silently. `cache_control` on a content part (the Anthropic convention LiteLLM accepts) becomes a
Converse `cachePoint` after it.

>>> body = converse_body({"messages": [{"role": "system", "content": "Be brief."},
...                                     {"role": "user", "content": "Hi"}], "max_tokens": 5})
>>> body["system"], body["messages"], body["inferenceConfig"]
([{'text': 'Be brief.'}], [{'role': 'user', 'content': [{'text': 'Hi'}]}], {'maxTokens': 5})
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from .base import ProviderInputError

Block = dict[str, Any]

# Parameters Converse can say (or that do not reach the model: the route reads stream/stream_options,
# `user` is the caller's label for abuse tracking).
_KNOWN = {"model", "messages", "stream", "stream_options", "user", "n", "parallel_tool_calls", "max_tokens",
          "max_completion_tokens", "temperature", "top_p", "stop", "tools", "tool_choice"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_CACHE_POINT: Block = {"cachePoint": {"type": "default"}}


def converse_body(body: Mapping[str, Any]) -> dict[str, Any]:
    unsupported = sorted(k for k, v in body.items() if k not in _KNOWN and v is not None)
    if unsupported:
        raise ProviderInputError(f"Bedrock Converse does not support {', '.join(unsupported)}", unsupported[0])
    if body.get("n") not in (None, 1):
        raise ProviderInputError("Bedrock Converse returns one choice: n must be 1", "n")
    if body.get("parallel_tool_calls") is False:
        raise ProviderInputError("Bedrock Converse cannot forbid parallel tool calls", "parallel_tool_calls")
    system, messages = _conversation(body.get("messages"))
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference = _inference(body)
    if inference:
        out["inferenceConfig"] = inference
    tools = _tool_config(body, messages)
    if tools:
        out["toolConfig"] = tools
    return out


def _inference(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ProviderInputError("max_tokens must be a positive integer", "max_tokens")
        out["maxTokens"] = max_tokens
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(ours)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ProviderInputError(f"{ours} must be a number", ours)
            out[theirs] = value
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ProviderInputError("stop must be a string or a list of strings", "stop")
        if stops:
            out["stopSequences"] = stops
    return out


def _conversation(raw: object) -> tuple[list[Block], list[dict[str, Any]]]:
    if not isinstance(raw, list) or not raw:
        raise ProviderInputError("messages must be a non-empty list", "messages")
    system: list[Block] = []
    messages: list[dict[str, Any]] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise ProviderInputError(f"{where} must be an object", "messages")
        role = msg.get("role")
        if role in ("system", "developer"):
            # Converse keeps system text apart; a system message late in the list joins it there.
            system += _blocks(msg.get("content"), where, text_only=True)
            continue
        if role == "user":
            blocks, their_role = _blocks(msg.get("content"), where), "user"
        elif role == "assistant":
            blocks = _blocks(msg.get("content"), where) + _tool_uses(msg.get("tool_calls"), where)
            their_role = "assistant"
        elif role == "tool":
            blocks, their_role = [_tool_result(msg, where)], "user"
        else:
            raise ProviderInputError(f"{where}: role {role!r} is not supported by Bedrock Converse", "messages")
        if not blocks:
            continue  # an empty turn says nothing, and Converse refuses blank text
        if messages and messages[-1]["role"] == their_role:
            messages[-1]["content"] += blocks  # Converse needs turns to alternate: merge same-role neighbours
        else:
            messages.append({"role": their_role, "content": blocks})
    if not messages:
        raise ProviderInputError("messages must contain a user message besides the system text", "messages")
    if messages[0]["role"] != "user":
        raise ProviderInputError("Bedrock Converse needs the conversation to start with a user message", "messages")
    return system, messages


def _blocks(content: object, where: str, text_only: bool = False) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise ProviderInputError(f"{where}.content must be a string or a list of parts", "messages")
    out: list[Block] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                out.append({"text": part["text"]})
        elif kind == "image_url" and not text_only:
            out.append(_image(part.get("image_url"), at))
        else:
            raise ProviderInputError(f"{at}: content part {kind!r} is not supported here by Bedrock Converse",
                                     "messages")
        if part.get("cache_control"):
            out.append(dict(_CACHE_POINT))
    return out


def _image(image: object, where: str) -> Block:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ProviderInputError(f"{where}: Bedrock takes images inline: use a data: URL (base64), not a link",
                                 "messages")
    head, _, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    fmt = _IMAGE_FORMATS.get(mime.lower())
    if fmt is None or encoding != "base64":
        raise ProviderInputError(f"{where}: Bedrock takes png, jpeg, gif or webp images as base64 data: URLs",
                                 "messages")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderInputError(f"{where}: the image's base64 data is malformed", "messages") from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}  # JSON carries blob fields as base64


def _tool_uses(calls: object, where: str) -> list[Block]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise ProviderInputError(f"{where}.tool_calls must be a list", "messages")
    out: list[Block] = []
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(call.get("id"), str) or not isinstance(fn.get("name"), str):
            raise ProviderInputError(f"{at} needs an id and a function name", "messages")
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise ProviderInputError(f"{at}.function.arguments is not JSON", "messages") from None
        if not isinstance(args, dict):
            raise ProviderInputError(f"{at}.function.arguments must be a JSON object for Bedrock", "messages")
        out.append({"toolUse": {"toolUseId": call["id"], "name": fn["name"], "input": args}})
    return out


def _tool_result(msg: Mapping[str, Any], where: str) -> Block:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ProviderInputError(f"{where}: a tool message needs tool_call_id", "messages")
    content = [b for b in _blocks(msg.get("content"), where, text_only=True) if "text" in b]
    return {"toolResult": {"toolUseId": call_id, "content": content}}


def _tool_config(body: Mapping[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise ProviderInputError("tool_choice needs tools", "tool_choice")
        return None
    if not isinstance(tools, list):
        raise ProviderInputError("tools must be a list", "tools")
    if choice == "none":
        uses_tools = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
        if uses_tools:  # Converse must see the tools that the history used, and cannot forbid them
            raise ProviderInputError("Bedrock Converse cannot express tool_choice 'none' in a conversation "
                                     "that used tools", "tool_choice")
        return None
    specs = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ProviderInputError(f"tools[{i}]: Bedrock takes function tools with a name", "tools")
        spec: dict[str, Any] = {"name": fn["name"],
                                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if not isinstance(name, str):
            raise ProviderInputError("tool_choice must name a function", "tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice is not None:
        raise ProviderInputError(f"tool_choice {choice!r} is not supported by Bedrock Converse", "tool_choice")
    return config
