"""What Google's generateContent accepts, as plain checks the fakes run on every request body.

Each check returns the problems found (an empty list: accepted), worded like Google's own
INVALID_ARGUMENT messages where the rule is Google's. The rules come from the generateContent
reference (Content, Part, GenerationConfig, Schema, Tool, ToolConfig) and from errors Google answers:
roles `user` and `model` only, alternating; one data field a part; `functionCall` only from the model
and `functionResponse` only from the user, the responses naming exactly the calls of the model turn
before them; Schema types in upper case, and only the formats AI Studio knows; an OBJECT parameter
schema needs properties.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from typing import Any

TOP_KEYS = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings",
            "cachedContent"}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
PART_META = {"thought", "thoughtSignature"}
SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
               "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
               "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


GENERATION_CONFIG = {
    "maxOutputTokens": lambda v: _integer(v) and v > 0, "temperature": _number, "topP": _number,
    "topK": _integer, "candidateCount": lambda v: _integer(v) and v > 0,
    "stopSequences": lambda v: isinstance(v, list) and len(v) <= 5 and all(isinstance(s, str) for s in v),
    "responseMimeType": lambda v: v in ("text/plain", "application/json", "text/x.enum"),
    "responseSchema": lambda v: isinstance(v, dict), "presencePenalty": _number, "frequencyPenalty": _number,
    "seed": _integer, "responseLogprobs": lambda v: isinstance(v, bool), "logprobs": _integer,
    "thinkingConfig": lambda v: isinstance(v, dict),
}


def check_generate_content(body: Any, *, vertex: bool = False) -> list[str]:
    if not isinstance(body, dict):
        return ["Invalid JSON payload received. Expected an object."]
    problems: list[str] = []
    allowed = TOP_KEYS | ({"labels"} if vertex else set())
    problems += [f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.' for k in body
                 if k not in allowed]
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        problems.append("* GenerateContentRequest.contents: contents is not specified")
        contents = []
    for i, content in enumerate(contents):
        problems += _check_content(content, f"contents[{i}]", vertex)
    problems += _check_turns([c for c in contents if isinstance(c, dict)])
    system = body.get("systemInstruction")
    if system is not None:
        parts = system.get("parts") if isinstance(system, dict) else None
        if not isinstance(parts, list) or not parts or not all(
                isinstance(p, dict) and set(p) == {"text"} and isinstance(p["text"], str) for p in parts):
            problems.append("systemInstruction must hold text parts only")
    config = body.get("generationConfig")
    if config is not None:
        problems += _check_config(config)
    declared = set()
    for j, tool in enumerate(body.get("tools") or []):
        for k, fn in enumerate(tool.get("functionDeclarations") or [] if isinstance(tool, dict) else []):
            problems += _check_declaration(fn, f"tools[{j}].function_declarations[{k}]")
            if isinstance(fn, dict):
                declared.add(fn.get("name"))
        if not isinstance(tool, dict) or set(tool) - {"functionDeclarations"}:
            problems.append(f"tools[{j}]: only functionDeclarations are served by this fake")
    if "toolConfig" in body:
        config_ = body["toolConfig"]
        if not isinstance(config_, dict) or set(config_) != {"functionCallingConfig"}:
            problems.append("toolConfig holds functionCallingConfig only here")
        else:
            problems += _check_calling(config_["functionCallingConfig"], declared)
    return problems


def _check_content(content: Any, where: str, vertex: bool) -> list[str]:
    if not isinstance(content, dict) or set(content) - {"role", "parts"}:
        return [f"{where}: a Content has role and parts only"]
    role, parts = content.get("role"), content.get("parts")
    problems = []
    if role not in ("user", "model"):
        problems.append(f"* GenerateContentRequest.{where}.role: Please use a valid role: user, model.")
    if not isinstance(parts, list) or not parts:
        return problems + [f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."]
    for k, part in enumerate(parts):
        problems += _check_part(part, role, f"{where}.parts[{k}]", vertex)
    return problems


def _check_part(part: Any, role: Any, where: str, vertex: bool) -> list[str]:
    if not isinstance(part, dict):
        return [f"{where}: a Part is an object"]
    data = [k for k in part if k in PART_DATA]
    unknown = [k for k in part if k not in PART_DATA | PART_META]
    if unknown:
        return [f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'{where}\': Cannot find field.']
    if len(data) != 1:
        return [f"{where}: a Part holds exactly one of {sorted(PART_DATA)}"]
    kind, value = data[0], part[data[0]]
    if kind == "text":
        return [] if isinstance(value, str) else [f"{where}.text must be a string"]
    if kind == "inlineData":
        if not isinstance(value, dict) or set(value) != {"mimeType", "data"} or "/" not in str(value["mimeType"]):
            return [f"{where}.inlineData needs mimeType and data"]
        try:
            base64.b64decode(value["data"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            return [f"{where}.inlineData.data: Invalid value (bytes): base64 decoding failed"]
        return []
    if kind == "fileData":
        if not isinstance(value, dict) or set(value) != {"mimeType", "fileUri"}:
            return [f"{where}.fileData needs mimeType and fileUri"]
        schemes = ("http://", "https://", "gs://") if vertex else ("http://", "https://")
        return [] if str(value["fileUri"]).startswith(schemes) else [f"{where}.fileData.fileUri: unsupported URI"]
    if kind == "functionCall":
        if role != "model":
            return [f"{where}: functionCall parts come from the model role only"]
        ok = isinstance(value, dict) and isinstance(value.get("name"), str) and isinstance(value.get("args", {}), dict)
        return [] if ok and not set(value) - {"name", "args", "id"} else [f"{where}.functionCall: name and args"]
    if role != "user":
        return [f"{where}: functionResponse parts come from the user role only"]
    ok = isinstance(value, dict) and isinstance(value.get("name"), str) and isinstance(value.get("response"), dict)
    return [] if ok and not set(value) - {"name", "response", "id"} else [f"{where}.functionResponse: name, response"]


def _check_turns(contents: list[dict[str, Any]]) -> list[str]:
    problems = []
    for i in range(1, len(contents)):
        if contents[i].get("role") == contents[i - 1].get("role"):
            problems.append("Please ensure that multiturn requests alternate between user and model.")
    for i, content in enumerate(contents):
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
        answers = Counter(p["functionResponse"].get("name") for p in parts
                          if isinstance(p.get("functionResponse"), dict))
        calls_before: Counter[Any] = Counter()
        if i > 0:
            calls_before = Counter(p["functionCall"].get("name") for p in contents[i - 1].get("parts") or []
                                   if isinstance(p, dict) and isinstance(p.get("functionCall"), dict))
        if (answers or calls_before) and answers != calls_before:
            problems.append("Please ensure that the number of function response parts is equal to the number of "
                            "function call parts of the function call turn, with the same names.")
    return problems


def _check_config(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return ["generationConfig must be an object"]
    problems = []
    for key, value in config.items():
        check = GENERATION_CONFIG.get(key)
        if check is None:
            problems.append(f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config\'')
        elif not check(value):
            problems.append(f"generationConfig.{key}: invalid value {value!r}")
    if "responseSchema" in config:
        if config.get("responseMimeType") != "application/json":
            problems.append("generationConfig.responseSchema needs responseMimeType application/json")
        problems += check_schema(config["responseSchema"], "generation_config.response_schema")
    return problems


def check_schema(schema: Any, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where}: a Schema is an object"]
    problems = [f'Invalid JSON payload received. Unknown name "{k}" at \'{where}\'' for k in schema
                if k not in SCHEMA_KEYS]
    if "type" in schema and schema["type"] not in SCHEMA_TYPES:
        problems.append(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage."
                        f"v1beta.Type), \"{schema['type']}\"")
    for name, sub in (schema.get("properties") or {}).items():
        problems += check_schema(sub, f"{where}.properties[{name}]")
    if "items" in schema:
        problems += check_schema(schema["items"], f"{where}.items")
    for k, sub in enumerate(schema.get("anyOf") or []):
        problems += check_schema(sub, f"{where}.any_of[{k}]")
    formats = {"STRING": ("enum", "date-time"), "NUMBER": ("float", "double"), "INTEGER": ("int32", "int64")}
    if "format" in schema and schema["format"] not in formats.get(schema.get("type"), ()):
        problems.append(f"* GenerateContentRequest.{where}.format: only 'enum' and 'date-time' are supported for "
                        "STRING type")
    if "enum" in schema and not all(isinstance(v, str) for v in schema["enum"]):
        problems.append(f"{where}.enum: strings only")
    missing = [r for r in schema.get("required") or [] if r not in (schema.get("properties") or {})]
    if missing:
        problems.append(f"{where}.required[{missing[0]}]: property is not defined")
    return problems


def _check_declaration(fn: Any, where: str) -> list[str]:
    if not isinstance(fn, dict) or not FUNCTION_NAME.match(str(fn.get("name", ""))):
        return [f"* GenerateContentRequest.{where}.name: Invalid function name."]
    problems = [f"{where}: unknown field {k}" for k in fn if k not in ("name", "description", "parameters")]
    params = fn.get("parameters")
    if params is not None:
        problems += check_schema(params, f"{where}.parameters")
        if isinstance(params, dict) and params.get("type") == "OBJECT" and not params.get("properties"):
            problems.append(f"* GenerateContentRequest.{where}.parameters.properties: should be non-empty for "
                            "OBJECT type")
    return problems


def _check_calling(calling: Any, declared: set[Any]) -> list[str]:
    if not isinstance(calling, dict) or calling.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return ["toolConfig.functionCallingConfig.mode must be AUTO, ANY, NONE or VALIDATED"]
    names = calling.get("allowedFunctionNames")
    if names is None:
        return []
    if calling["mode"] not in ("ANY", "VALIDATED"):
        return ["allowedFunctionNames may be set only when the mode is ANY"]
    return [f"allowedFunctionNames: {n!r} is not declared" for n in names if n not in declared]
