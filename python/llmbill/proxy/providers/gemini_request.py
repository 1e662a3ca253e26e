"""OpenAI chat/completions body → Gemini `GenerateContentRequest` (shared by `gemini/` and `vertex_ai/`).

The mapping, per Google's generateContent reference:
- `system` / `developer` messages → `systemInstruction.parts` (all of them, in order: Gemini has one
  system instruction); `user` → role `user`, `assistant` → role `model`; consecutive turns of the same
  role are merged, so a `tool` message (a `functionResponse` part in a `user` turn) and the user text
  after it form one turn, as Gemini expects;
- content parts: text → `text`; `image_url` data: URLs → `inlineData`; http(s) image URLs →
  `fileData` (Gemini fetches public and signed URLs; `fileData.mimeType` is required, so it is taken
  from the file extension, and a URL without a known image extension is refused); `gs://` URIs only
  on Vertex; `input_audio` → `inlineData` (audio/wav, audio/mp3); `file.file_data` → `inlineData`;
- assistant `tool_calls` → `functionCall` parts (the arguments must be a JSON object); `tool` messages
  → `functionResponse` parts named after the earlier call with that id, the tool's text as
  `{"output": text}` (the key Google's reference names for a function's output);
- a thought signature Gemini attached to a function call travels in the OpenAI tool-call id (see
  gemini_reply.THOUGHT_SIGNATURE) and is sent back on that `functionCall` part, as Gemini 3 requires;
- `max_completion_tokens` (else `max_tokens`) → maxOutputTokens; temperature, top_p → topP, top_k →
  topK, stop → stopSequences, n → candidateCount, presence_penalty, frequency_penalty, seed;
  `response_format` json_object → responseMimeType application/json, json_schema → also responseSchema
  (the JSON Schema subset in gemini_schema.py); tools → `tools[0].functionDeclarations`; tool_choice →
  `toolConfig.functionCallingConfig` (none → NONE, auto → AUTO, required → ANY, a named function → ANY
  with allowedFunctionNames); `parallel_tool_calls: true` is Gemini's behaviour, `false` is refused.
- Read but not sent: `model` (the deployment names it), `stream` (the adapter's argument decides),
  `stream_options` (Gemini always reports usage), `user` and `metadata` (read by the proxy itself;
  Gemini has no such field). Any other parameter raises ProviderInputError naming it: nothing is
  dropped silently. The same for message fields, except `reasoning_content` (a reply field clients
  echo back: Gemini takes thought text back only as signatures) and `refusal: null`.

>>> out = generate_content_body({"messages": [{"role": "system", "content": "Be brief."},
...                                           {"role": "user", "content": "Hi"}], "max_tokens": 5})
>>> out["systemInstruction"], out["contents"], out["generationConfig"]
({'parts': [{'text': 'Be brief.'}]}, [{'role': 'user', 'parts': [{'text': 'Hi'}]}], {'maxOutputTokens': 5})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .base import ProviderInputError
from .gemini_reply import THOUGHT_SIGNATURE
from .gemini_schema import to_gemini_schema

_PASSIVE = frozenset({"model", "stream", "stream_options", "user", "metadata"})
_NUMBERS = {"temperature": "temperature", "top_p": "topP", "presence_penalty": "presencePenalty",
            "frequency_penalty": "frequencyPenalty"}
_INTEGERS = {"top_k": ("topK", 1), "n": ("candidateCount", 1), "seed": ("seed", None)}
_KNOWN = _PASSIVE | set(_NUMBERS) | set(_INTEGERS) | {
    "messages", "max_tokens", "max_completion_tokens", "stop", "response_format", "tools", "tool_choice",
    "parallel_tool_calls"}
_MESSAGE_FIELDS = {"system": {"content"}, "developer": {"content"}, "user": {"content"},
                   "assistant": {"content", "tool_calls", "reasoning_content"},
                   "tool": {"content", "tool_call_id", "name"}}
_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
                "heic": "image/heic", "heif": "image/heif", "gif": "image/gif"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def generate_content_body(body: Mapping[str, Any], *, allow_gcs: bool = False) -> dict[str, Any]:
    """The GenerateContentRequest for an OpenAI chat body; raises ProviderInputError naming the param."""
    unknown = sorted(k for k, v in body.items() if k not in _KNOWN and v is not None)
    if unknown:
        raise ProviderInputError(f"parameter {unknown[0]!r} is not supported for Gemini models", unknown[0])
    declarations = _function_declarations(body.get("tools"))
    system, contents = _contents(body.get("messages"), allow_gcs)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    calling = _function_calling_config(body, declarations)
    if calling:
        out["toolConfig"] = {"functionCallingConfig": calling}
    return out


# --- messages -----------------------------------------------------------------------------------
def _contents(messages: Any, allow_gcs: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise ProviderInputError("messages must be a non-empty list", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    calls: dict[str, str] = {}  # tool-call id → function name, for the functionResponse parts
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise ProviderInputError(f"{where} must be an object", where)
        role = m.get("role")
        if not isinstance(role, str) or role not in _MESSAGE_FIELDS:
            raise ProviderInputError(f"{where}.role {role!r} is not supported for Gemini models", f"{where}.role")
        for key, value in m.items():
            if key != "role" and key not in _MESSAGE_FIELDS[role] and value not in (None, [], {}):
                raise ProviderInputError(f"{where}.{key} is not supported for Gemini models", f"{where}.{key}")
        if role in ("system", "developer"):
            system += [{"text": t} for t in [_text(m.get("content"), f"{where}.content")] if t]
            continue
        if role == "user":
            parts = _user_parts(m.get("content"), f"{where}.content", allow_gcs)
        elif role == "assistant":
            parts = _assistant_parts(m, where, calls)
        else:
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in calls:
                raise ProviderInputError(f"{where}.tool_call_id names no earlier assistant tool call",
                                         f"{where}.tool_call_id")
            if m.get("name") not in (None, calls[call_id]):  # some clients repeat the function's name here
                raise ProviderInputError(f"{where}.name differs from the name of call {call_id!r}", f"{where}.name")
            output = _text(m.get("content"), f"{where}.content")
            parts = [{"functionResponse": {"name": calls[call_id], "response": {"output": output}}}]
        gemini_role = "model" if role == "assistant" else "user"
        if not parts:
            continue  # an empty message carries nothing, and Gemini refuses a turn without parts
        if turns and turns[-1]["role"] == gemini_role:
            turns[-1]["parts"] += parts
        else:
            turns.append({"role": gemini_role, "parts": parts})
    if not turns:
        raise ProviderInputError("messages hold no user or assistant content to send", "messages")
    return system, turns


def _text(content: Any, where: str) -> str:
    """String content, or a list of text parts joined (system, tool and assistant text)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ProviderInputError(f"{where}[{j}] must be a text part here", f"{where}[{j}]")
            texts.append(part["text"])
        return "".join(texts)
    raise ProviderInputError(f"{where} must be a string or a list of parts", where)


def _user_parts(content: Any, where: str, allow_gcs: bool) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise ProviderInputError(f"{where} must be a string or a list of parts", where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_image(part.get("image_url"), f"{at}.image_url", allow_gcs))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, Mapping) or not isinstance(audio.get("format"), str) \
                    or audio["format"] not in _AUDIO_TYPES \
                    or not isinstance(audio.get("data"), str):
                raise ProviderInputError(f"{at}.input_audio needs base64 data and format wav or mp3",
                                         f"{at}.input_audio")
            parts.append({"inlineData": {"mimeType": _AUDIO_TYPES[audio["format"]], "data": audio["data"]}})
        elif kind == "file":
            file = part.get("file")
            data = file.get("file_data") if isinstance(file, Mapping) else None
            if not isinstance(data, str):
                raise ProviderInputError(f"{at}.file: Gemini takes a file as file_data (a data: URL), "
                                         "not a file_id", f"{at}.file")
            parts.append(_data_url(data, f"{at}.file.file_data"))
        else:
            raise ProviderInputError(f"{at}: content part type {kind!r} is not supported for Gemini models", at)
    return parts


def _image(image: Any, where: str, allow_gcs: bool) -> dict[str, Any]:
    if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
        raise ProviderInputError(f"{where}.url must be a string", f"{where}.url")
    url, detail = image["url"], image.get("detail")
    if detail not in (None, "auto"):  # Gemini sets media resolution per request, not per image
        raise ProviderInputError(f"{where}.detail {detail!r} cannot be expressed per image for Gemini",
                                 f"{where}.detail")
    if url.startswith("data:"):
        return _data_url(url, f"{where}.url")
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https") or (scheme == "gs" and allow_gcs):
        ext = urlsplit(url).path.rsplit(".", 1)[-1].lower() if "." in urlsplit(url).path else ""
        if ext not in _IMAGE_TYPES:
            raise ProviderInputError(f"{where}.url: Gemini needs the image's type, and this URL's path ends in no "
                                     f"known image extension ({', '.join(sorted(_IMAGE_TYPES))}); send a data: URL",
                                     f"{where}.url")
        return {"fileData": {"mimeType": _IMAGE_TYPES[ext], "fileUri": url}}
    raise ProviderInputError(f"{where}.url: scheme {scheme!r} is not supported for this deployment", f"{where}.url")


def _data_url(url: str, where: str) -> dict[str, Any]:
    head, sep, data = url.partition(",")
    if not url.startswith("data:") or not sep or not head.endswith(";base64") or not data:
        raise ProviderInputError(f"{where} must be a base64 data: URL", where)
    mime = head[len("data:"):-len(";base64")]
    if "/" not in mime:
        raise ProviderInputError(f"{where}: the data: URL names no media type", where)
    return {"inlineData": {"mimeType": mime, "data": data}}


def _assistant_parts(m: Mapping[str, Any], where: str, calls: dict[str, str]) -> list[dict[str, Any]]:
    text = _text(m.get("content"), f"{where}.content")
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    tool_calls = m.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise ProviderInputError(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    for k, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or call.get("type", "function") != "function" \
                or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise ProviderInputError(f"{at} must be a function call with an id and a name", at)
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except (TypeError, ValueError):
            args = None
        if not isinstance(args, dict):
            raise ProviderInputError(f"{at}.function.arguments must be a JSON object", f"{at}.function.arguments")
        calls[call["id"]] = fn["name"]
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
        _, sep, signature = call["id"].partition(THOUGHT_SIGNATURE)
        if sep and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


# --- generation config and tools ----------------------------------------------------------------
def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    if body.get(limit_name) is not None:
        config["maxOutputTokens"] = _integer(body, limit_name, 1)
    for name, field in _NUMBERS.items():
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProviderInputError(f"{name} must be a number", name)
            config[field] = value
    for name, (field, low) in _INTEGERS.items():
        if body.get(name) is not None:
            config[field] = _integer(body, name, low)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 5:
            raise ProviderInputError("stop must be a string or a list of at most 5 non-empty strings", "stop")
        if stops:
            config["stopSequences"] = stops
    config.update(_response_format(body.get("response_format")))
    return config


def _integer(body: Mapping[str, Any], name: str, low: int | None) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise ProviderInputError(f"{name} must be an integer" + (f" of at least {low}" if low is not None else ""),
                                 name)
    return value


def _response_format(fmt: Any) -> dict[str, Any]:
    if fmt is None:
        return {}
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, Mapping):
            raise ProviderInputError("response_format.json_schema must be an object", "response_format.json_schema")
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if spec.get("schema") is not None:
            out["responseSchema"] = to_gemini_schema(spec["schema"], "response_format.json_schema.schema")
        return out
    raise ProviderInputError(f"response_format type {kind!r} is not supported for Gemini models", "response_format")


def _function_declarations(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ProviderInputError("tools must be a list", "tools")
    out = []
    for j, tool in enumerate(tools):
        at = f"tools[{j}]"
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(fn, Mapping):
            raise ProviderInputError(f"{at}: only function tools are supported for Gemini models", at)
        unknown = sorted(set(fn) - {"name", "description", "parameters", "strict"})
        if unknown:
            raise ProviderInputError(f"{at}.function.{unknown[0]} is not supported for Gemini models",
                                     f"{at}.function.{unknown[0]}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ProviderInputError(f"{at}.function.name must be a non-empty string", f"{at}.function.name")
        declaration: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            declaration["description"] = fn["description"]
        if fn.get("parameters") is not None:
            schema = to_gemini_schema(fn["parameters"], f"{at}.function.parameters")
            # A function without arguments: Gemini refuses an OBJECT schema with no properties.
            if schema.get("properties") or schema.get("type") != "OBJECT":
                declaration["parameters"] = schema
        out.append(declaration)  # `strict` asks for schema-true arguments, which is how Gemini calls anyway
    return out


def _function_calling_config(body: Mapping[str, Any], declarations: list[dict[str, Any]]) -> dict[str, Any]:
    if body.get("parallel_tool_calls") is False:
        raise ProviderInputError("parallel_tool_calls false cannot be expressed for Gemini models",
                                 "parallel_tool_calls")
    choice = body.get("tool_choice")
    if choice is None:
        return {}
    names = [d["name"] for d in declarations]
    if choice in ("none", "auto"):
        return {"mode": choice.upper()} if declarations else {}
    if not declarations:
        raise ProviderInputError("tool_choice needs tools", "tool_choice")
    if choice == "required":
        return {"mode": "ANY"}
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    if isinstance(fn, Mapping) and choice.get("type") == "function" and fn.get("name") in names:
        return {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}
    raise ProviderInputError("tool_choice must be none, auto, required or a function named in tools", "tool_choice")
