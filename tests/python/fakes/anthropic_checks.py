"""The request rules of the fake Anthropic Messages API (fakes/anthropic_upstream.py).

Each rule is one the real API documents or enforces; a broken rule raises Invalid with the kind of
message Anthropic's 400 invalid_request_error carries (`<field path>: <what is wrong>`).
Consecutive turns of one role are combined before the turn rules apply, as the API reference says.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

Json = dict[str, Any]

VERSIONS = ("2023-06-01", "2026-10-21")  # 2026-10-21 removed temperature, top_p and top_k
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
MAX_BREAKPOINTS = 4

_MESSAGES_KEYS = {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p",
                  "top_k", "metadata", "tools", "tool_choice", "thinking", "service_tier", "output_config"}
_COUNT_KEYS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"}
_BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "cache_control", "title", "context", "citations"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
_ROLE_ONLY = {"tool_use": "assistant", "thinking": "assistant", "redacted_thinking": "assistant",
              "tool_result": "user", "image": "user", "document": "user"}


class Invalid(ValueError):
    """A request the real API answers with 400 invalid_request_error."""


def check_request(body: Any, *, version: str, count_tokens: bool = False) -> list[Json]:
    """Checks a Messages (or count_tokens) body; returns its turns with same-role turns combined,
    every content as a list of blocks."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    allowed = _COUNT_KEYS if count_tokens else _MESSAGES_KEYS
    for key in body:
        if key not in allowed:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    if not count_tokens:
        _check_max_tokens(body.get("max_tokens"))
        _check_sampling(body, version)
    tools = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), tools)
    system = _check_system(body.get("system"))
    turns = _check_messages(body.get("messages"))
    _check_breakpoints(body.get("tools") or [], system, turns)
    _check_thinking(body.get("thinking"), body.get("max_tokens"))
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise Invalid("stop_sequences: Input should be a valid list of strings")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
            raise Invalid("metadata: only user_id is permitted")
        if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            raise Invalid("metadata.user_id: Input should be a valid string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Invalid("stream: Input should be a valid boolean")
    return turns


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_max_tokens(value: Any) -> None:
    if value is None:
        raise Invalid("max_tokens: Field required")
    if not _is_int(value) or value < 0:  # 0 only warms the prompt cache
        raise Invalid("max_tokens: Input should be a non-negative integer")


def _check_sampling(body: Json, version: str) -> None:
    for name, upper in (("temperature", 1.0), ("top_p", 1.0), ("top_k", None)):
        value = body.get(name)
        if value is None:
            continue
        if version == "2026-10-21":
            raise Invalid(f"{name}: is not supported in anthropic-version 2026-10-21")
        if upper is None:
            if not _is_int(value) or value < 0:
                raise Invalid(f"{name}: Input should be a non-negative integer")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= upper:
            raise Invalid(f"{name}: Input should be less than or equal to {upper:g}")


def _check_thinking(thinking: Any, max_tokens: Any) -> None:
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("disabled", "adaptive"):
        return
    if kind != "enabled":
        raise Invalid("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    budget = thinking.get("budget_tokens")
    if not _is_int(budget) or budget < 1024:
        raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if _is_int(max_tokens) and budget >= max_tokens:
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")


def _check_cache_control(mark: Any, where: str) -> None:
    if mark is None:
        return
    if not isinstance(mark, dict) or mark.get("type") != "ephemeral" or set(mark) - {"type", "ttl"}:
        raise Invalid(f"{where}.cache_control: Input should be {{'type': 'ephemeral', 'ttl'?: '5m' | '1h'}}")
    if mark.get("ttl", "5m") not in ("5m", "1h"):
        raise Invalid(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")


def _check_tools(tools: Any) -> list[Json]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Invalid("tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise Invalid(f"{where}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution ...): its own rules, not modelled here
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise Invalid(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if name in names:
            raise Invalid(f"tools: Tool names must be unique ({name})")
        names.add(name)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"{where}.input_schema.type: Input should be 'object'")
        extra = set(tool) - {"type", "name", "description", "input_schema", "cache_control", "strict"}
        if extra:
            raise Invalid(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
        _check_cache_control(tool.get("cache_control"), where)
    return tools


def _check_tool_choice(choice: Any, tools: list[Json]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise Invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if kind == "tool" and not any(t.get("name") == choice.get("name") for t in tools):
        raise Invalid(f"tool_choice.name: no tool named {choice.get('name')!r} in tools")
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and (kind == "none" or not isinstance(parallel, bool)):
        raise Invalid("tool_choice.disable_parallel_tool_use: Extra inputs are not permitted")


def _check_system(system: Any) -> list[Json]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}] if system else []
    if not isinstance(system, list):
        raise Invalid("system: Input should be a valid string or list of text blocks")
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Invalid(f"system.{j}.type: Input should be 'text'")
        _check_block(block, f"system.{j}", "system")
    return system


def _check_messages(messages: Any) -> list[Json]:
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required (at least one message)")
    turns: list[Json] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise Invalid(f"{where}: Input should be a valid dictionary")
        extra = set(message) - {"role", "content"}
        if extra:
            raise Invalid(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise Invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                raise Invalid(f"{where}.content: text content blocks must be non-empty")
            blocks = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            blocks = content
            for j, block in enumerate(blocks):
                _check_block(block, f"{where}.content.{j}", role)
        else:
            raise Invalid(f"{where}.content: Input should be a non-empty string or list of content blocks")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = turns[-1]["content"] + blocks  # the API combines consecutive turns
        else:
            turns.append({"role": role, "content": list(blocks)})
    if turns[0]["role"] != "user":
        raise Invalid('messages: first message must use the "user" role')
    _check_tool_pairs(turns)
    return turns


def _check_block(block: Any, where: str, role: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in _BLOCK_KEYS:
        raise Invalid(f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags")
    assert isinstance(block, dict)
    extra = set(block) - _BLOCK_KEYS[kind]
    if extra:
        raise Invalid(f"{where}.{kind}.{sorted(extra)[0]}: Extra inputs are not permitted")
    only = _ROLE_ONLY.get(kind)
    if only is not None and role != only:
        raise Invalid(f"{where}: {kind} blocks are only allowed in {only} messages")
    _check_cache_control(block.get("cache_control"), where)
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        raise Invalid(f"{where}: text content blocks must be non-empty")
    if kind in ("image", "document"):
        _check_source(block.get("source"), f"{where}.source", kind)
    if kind == "tool_use":
        if not isinstance(block.get("id"), str) or not TOOL_ID.match(block["id"]):
            raise Invalid(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
            raise Invalid(f"{where}: tool_use blocks need a name and an input object")
    if kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise Invalid(f"{where}.tool_use_id: Field required")
        content = block.get("content")
        if isinstance(content, list):
            for k, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                    raise Invalid(f"{where}.content.{k}.type: Input should be 'text' or 'image'")
                _check_block(part, f"{where}.content.{k}", "user")
        elif content is not None and not isinstance(content, str):
            raise Invalid(f"{where}.content: Input should be a valid string or list")


def _check_source(source: Any, where: str, kind: str) -> None:
    stype = source.get("type") if isinstance(source, dict) else None
    if stype == "url":
        url = source.get("url") if isinstance(source, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Invalid(f"{where}.url: Input should be a valid URL")
        return
    if stype != "base64" or not isinstance(source, dict):
        raise Invalid(f"{where}.type: Input should be 'base64' or 'url'")
    media = source.get("media_type")
    allowed = IMAGE_TYPES if kind == "image" else ("application/pdf",)
    if media not in allowed:
        raise Invalid(f"{where}.media_type: Input should be one of {', '.join(allowed)}")
    try:
        base64.b64decode(source.get("data") or "", validate=True)
    except (binascii.Error, TypeError):
        raise Invalid(f"{where}.data: the base64 data is invalid") from None
    if not source.get("data"):
        raise Invalid(f"{where}.data: Field required")


def _check_tool_pairs(turns: list[Json]) -> None:
    """Every tool_use needs its tool_result in the next turn; every tool_result answers a tool_use
    of the turn before; tool results come first in their turn."""
    for i, turn in enumerate(turns):
        results = [b for b in turn["content"] if b.get("type") == "tool_result"]
        if turn["role"] == "user" and results:
            before = turns[i - 1]["content"] if i > 0 else []
            asked = {b["id"] for b in before if b.get("type") == "tool_use"}
            for j, block in enumerate(turn["content"]):
                if block.get("type") != "tool_result":
                    if any(b.get("type") == "tool_result" for b in turn["content"][j:]):
                        raise Invalid(f"messages.{i}: tool_result blocks must come first in the message content")
                    break
            stray = [b["tool_use_id"] for b in results if b["tool_use_id"] not in asked]
            if stray:
                raise Invalid(f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {stray[0]}. "
                              "Each `tool_result` block must have a corresponding `tool_use` block in the "
                              "previous message.")
        if turn["role"] == "assistant" and i + 1 < len(turns):
            asked_ids = [b["id"] for b in turn["content"] if b.get("type") == "tool_use"]
            answered = {b.get("tool_use_id") for b in turns[i + 1]["content"] if b.get("type") == "tool_result"}
            missing = [x for x in asked_ids if x not in answered]
            if missing:
                raise Invalid(f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                              f"immediately after: {missing[0]}. Each `tool_use` block must have a "
                              "corresponding `tool_result` block in the next message.")


def breakpoints(tools: list[Json], system: list[Json], turns: list[Json]) -> list[tuple[int, str]]:
    """(unit position, ttl) of every cache_control, in the cache's prefix order: tools, system,
    messages (the unit positions of cache_units in anthropic_upstream)."""
    units = list(tools) + list(system) + [b for t in turns for b in t["content"]]
    return [(i, u["cache_control"].get("ttl", "5m")) for i, u in enumerate(units)
            if isinstance(u, dict) and u.get("cache_control")]


def _check_breakpoints(tools: list[Json], system: list[Json], turns: list[Json]) -> None:
    marks = breakpoints(tools, system, turns)
    if len(marks) > MAX_BREAKPOINTS:
        raise Invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marks)}.")
    ttls = [ttl for _, ttl in marks]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m"):]:
        raise Invalid("a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block")
