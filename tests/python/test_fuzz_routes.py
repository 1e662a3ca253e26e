"""Thousands of malformed requests across every route of the proxy's route table (app.route_table),
with the master key, a virtual key, a garbage key and none: wrong types, huge and deep values,
control characters, bad UTF-8, missing and extra fields, odd query strings and headers.

Asserted: no reply is a 5xx (every failure a client can cause is its 4xx in the API's error shape),
every request is answered and the proxy is alive at the end, and billing is exactly the calls that
were accepted — a refused call leaves no spend log and no Lago event.

Reproducible: each request is generated from random.Random(f"{SEED}:{index}"); a failure names the
seed and the index. LLMBILL_FUZZ_SEED and LLMBILL_FUZZ_COUNT change them.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from llmbill.proxy.app import route_table
from tests.python.fakes.lago import FakeLago
from tests.python.http_load import Reply, http_request, send_all
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, lago_env

SEED = int(os.environ.get("LLMBILL_FUZZ_SEED", "1313"))
COUNT = int(os.environ.get("LLMBILL_FUZZ_COUNT", "4000"))
ROUTES = sorted(route_table())
LLM_PATHS = {path for method, path in ROUTES if path.endswith(("/completions", "/embeddings"))}
LLM_ROUTES = [(method, path) for method, path in ROUTES if path in LLM_PATHS and method == "POST"]
BODY_ROUTES = [(method, path) for method, path in ROUTES if method == "POST" and path not in LLM_PATHS]

CONFIG: dict[str, Any] = {
    "model_list": [
        {"model_name": "mock-gpt", "litellm_params": {"model": "mock/mock-gpt", "input_cost_per_token": 1e-06,
                                                      "output_cost_per_token": 2e-06}},
        {"model_name": "text-embedding-3-small", "litellm_params": {"model": "mock/text-embedding-3-small"}},
        {"model_name": "*", "litellm_params": {"model": "mock/*"}},
    ],
    "litellm_settings": {"callbacks": ["lago"]},
    "general_settings": {"master_key": MASTER, "max_request_size_mb": 1},
}

# A plausible body per route, which the fuzzer then breaks. Ids are "fuzz-*" names, never the
# virtual key the test calls with, so that most requests keep finding their caller.
TEMPLATES: dict[str, dict[str, Any]] = {
    "chat": {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], "user": "fuzz-c",
             "max_tokens": 16, "max_completion_tokens": 16, "n": 1, "stream": False,
             "stream_options": {"include_usage": True}, "metadata": {"user_id": "fuzz-m"}},
    "completions": {"model": "mock-gpt", "prompt": "hi", "user": "fuzz-c", "n": 1, "max_tokens": 8, "stream": True},
    "embeddings": {"model": "text-embedding-3-small", "input": ["hi", "there"], "user": "fuzz-c"},
    "/key/generate": {"key_alias": "fuzz-alias", "models": ["mock-gpt"], "max_budget": 1, "duration": "1h",
                      "metadata": {"a": [1, {"b": "c"}]}, "tpm_limit": 100, "team_id": "fuzz-team"},
    "/key/update": {"key": "sk-fuzz-none", "max_budget": "2", "metadata": {}},
    "/key/delete": {"keys": ["sk-fuzz-none"], "key_aliases": ["fuzz-none"]},
    "/key/regenerate": {"key": "sk-fuzz-none", "new_key": "sk-fuzz-new-key"},
    "/key/block": {"key": "sk-fuzz-none"},
    "/key/unblock": {"key": "sk-fuzz-none"},
    "/team/new": {"team_id": "fuzz-t", "team_alias": "Fuzz", "models": ["mock-gpt"], "max_budget": 3,
                  "members_with_roles": [{"user_id": "fuzz-u", "role": "user"}], "metadata": {"x": 1}},
    "/team/update": {"team_id": "fuzz-t", "team_alias": "F", "budget_duration": "30d"},
    "/team/delete": {"team_ids": ["fuzz-none"]},
    "/team/block": {"team_id": "fuzz-none"},
    "/team/unblock": {"team_id": "fuzz-none"},
    "/team/member_add": {"team_id": "fuzz-t", "member": {"user_id": "fuzz-u2", "role": "user"}},
    "/team/member_delete": {"team_id": "fuzz-t", "user_id": "fuzz-u2"},
    "/team/member_update": {"team_id": "fuzz-t", "user_id": "fuzz-u", "role": "admin", "max_budget_in_team": 1},
    "/user/new": {"user_id": "fuzz-u3", "user_email": "f@example.com", "user_role": "internal_user",
                  "teams": ["fuzz-none"], "metadata": {}},
    "/user/update": {"user_id": "fuzz-u3", "max_budget": 5, "models": ["mock-gpt"]},
    "/user/delete": {"user_ids": ["fuzz-none"]},
    "/budget/new": {"budget_id": "fuzz-b", "max_budget": 1, "soft_budget": 0.5, "budget_duration": "1d"},
    "/budget/info": {"budgets": ["fuzz-b"]},
    "/budget/update": {"budget_id": "fuzz-b", "tpm_limit": 10},
    "/budget/delete": {"id": "fuzz-none"},
    "/customer/new": {"user_id": "fuzz-cust", "alias": "a", "max_budget": 1, "metadata": {"k": "v"}},
    "/customer/update": {"user_id": "fuzz-cust", "blocked": False, "allowed_model_region": "eu"},
    "/customer/delete": {"user_ids": ["fuzz-none"]},
    "/customer/block": {"user_ids": ["fuzz-none"]},
    "/customer/unblock": {"user_ids": ["fuzz-none"]},
    "/billing/reconcile": {"from": "-1h", "to": "now", "fix": False, "wait": 0},
    "/ui/login": {"master_key": "wrong"},
}
QUERY_NAMES = ["key", "team_id", "user_id", "end_user_id", "budget_id", "page", "size", "limit", "start_date",
               "end_date", "api_key", "end_user", "request_id", "key_alias", "user_email", "signed_in", "group_by"]


def template(path: str) -> dict[str, Any]:
    if path in LLM_PATHS:
        kind = "chat" if path.endswith("chat/completions") else "embeddings" if "embeddings" in path else "completions"
        return orjson.loads(orjson.dumps(TEMPLATES[kind]))
    path = path.replace("/end_user/", "/customer/")
    return orjson.loads(orjson.dumps(TEMPLATES.get(path, {})))


# -- values -------------------------------------------------------------------------------------


def deep(rng: random.Random, levels: int) -> Any:
    value: Any = rng.choice([1, "x", None, [], {}])
    for _ in range(levels):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def text(rng: random.Random) -> str:
    return rng.choice([
        "", " ", "a\x00b", "\n\r\t", "\x7f\x85\x9f", "é名😀", "\u2028\ufeff", "sk-" + "x" * rng.randint(1, 40),
        "x" * rng.choice([255, 256, 257, 3000, 70_000]), "../../etc/passwd", "%00%ff", "' OR 1=1 --",
        "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 40))).replace("\ud800", ""),
        "-1h", "now", "2025-13-45", "30d", "0s", "mock-gpt", "*", "fuzz-t", "all-team-models"])


def junk(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(14)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63) - 1, 10**30])
    if pick == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-308, 3.14, 1e-30])
    if pick in (4, 5, 6):
        return text(rng)
    if pick == 7:
        return deep(rng, rng.choice([3, 15, 16, 17, 40, 63, 64, 65, 200, 260, 900]))
    if pick == 8:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 4))] if depth < 3 else []
    if pick == 9:
        return {text(rng)[:20]: junk(rng, depth + 1) for _ in range(rng.randint(0, 4))} if depth < 3 else {}
    if pick == 10:
        return ["x"] * rng.choice([1001, 20_000])
    if pick == 11:
        return {f"k{i}": i for i in range(rng.choice([10, 5000]))}
    if pick == 12:
        return [{"role": text(rng), "content": junk(rng, depth + 1)}]
    return {"include_usage": junk(rng, depth + 1)} if depth < 3 else "x"


# -- requests -----------------------------------------------------------------------------------


def places(value: Any, depth: int = 0) -> list[tuple[Any, Any]]:
    """The (container, key) pairs of a body down to 3 levels: fields, and fields of its objects and lists."""
    out: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in list(items)[:20]:
        out.append((value, key))
        if depth < 3:
            out += places(item, depth + 1)
    return out


def body_bytes(rng: random.Random, path: str) -> bytes | None:
    body = template(path)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(10)
        spots = places(body)
        if action == 0 and spots:
            container, key = rng.choice(spots)
            del container[key]
        elif action == 1:
            body[rng.choice(["extra", "unknown_field", "tools", "temperature", "\x00", "é"])] = junk(rng)
        elif spots:
            container, key = rng.choice(spots)
            container[key] = junk(rng)
    if path == "/billing/reconcile" and isinstance(body.get("wait"), (int, float)) and body["wait"] > 1:
        body["wait"] = 0  # a valid long wait would only make the fuzzer slow
    # The standard library writes what orjson will not (ints past 64 bits, 900 levels deep).
    raw = json.dumps(body, ensure_ascii=False).encode()
    whole = rng.randrange(25)
    if whole == 0:
        return rng.choice([b"", b" ", b"null", b"[]", b"[1,2]", b'"text"', b"42", b"true", b"{", b"{}}",
                           b'{"a":}', b"\xff\xfe", b'{"a": NaN}', b'{"a": 1e999}', b"{" * 3000, b"[" * 5000])
    if whole == 1:
        return raw.replace(b'"', b'"\xff', 1)  # bad UTF-8 inside a string
    if whole == 2:
        return raw.replace(b'"hi"', b'"\\ud800"').replace(b'"fuzz-c"', b'"\\udfff"')  # lone surrogates
    if whole == 3:
        return raw[: rng.randint(0, max(0, len(raw) - 1))]  # truncated
    if whole == 4:
        return b'{"model": "mock-gpt", "pad": "' + b"x" * (1024 * 1024) + b'"}'  # over max_request_size_mb
    if whole == 5:
        return None  # no body at all
    return raw


def query(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return ""
    parts = []
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(QUERY_NAMES + ["%00", "x" * 2000])
        value = rng.choice(["1", "-1", "0", "99999999999999999999", "%00", "%ff%fe", "a%0Ab", "x" * 1500,
                            "fuzz-t", "sk-fuzz-none", "2025-01-01", "2025-99-99", "%E2%82%AC", "", "t%26u=v"])
        parts.append(f"{name}={value}")
    return "?" + "&".join(parts)


def build(index: int, keys: dict[str, str]) -> tuple[str, str, bytes]:
    rng = random.Random(f"{SEED}:{index}")
    pick = rng.random()  # most requests where a body is parsed, stored or billed
    method, path = rng.choice(LLM_ROUTES if pick < 0.4 else BODY_ROUTES if pick < 0.8 else ROUTES)
    if rng.random() < 0.05:
        method = rng.choice(["GET", "POST", "PUT", "DELETE"])  # some on the wrong method
    headers: list[tuple[bytes, bytes]] = []
    who = rng.random()
    if who < 0.45:
        headers.append((b"authorization", f"Bearer {keys['master']}".encode()))
    elif who < 0.85:
        headers.append((b"authorization", f"Bearer {keys['virtual']}".encode()))
    elif who < 0.93:
        headers.append((b"authorization", rng.choice([b"Bearer sk-garbage-" + str(index).encode(), b"Basic xx",
                                                       b"Bearer", b"bearer  ", b"Bearer \xff\xfe"])))
    if rng.random() < 0.15:
        headers.append((rng.choice([b"x-litellm-customer-id", b"x-litellm-end-user-id"]),
                        rng.choice([b"ok-customer", b"\xff\xfe", b"caf\xc3\xa9", b"x" * 5000, b"\xc3", b" "])))
    if rng.random() < 0.05:
        headers.append((b"cookie", rng.choice([b"llmbill_ui=garbage", b"llmbill_ui=", b"\xff=\xfe"])))
    body = body_bytes(rng, path) if method == "POST" or rng.random() < 0.1 else None
    if body is not None:
        headers.append((b"content-type", rng.choice([b"application/json"] * 4 + [b"text/plain", b"\xff"])))
    target = path.rstrip("/") + query(rng) if rng.random() < 0.97 else path + "/"
    return method, target, http_request(method, target, body, headers)


# -- the test -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, lago: FakeLago) -> Iterator[Proxy]:
    config = orjson.loads(orjson.dumps(CONFIG))
    if request.param == "postgres":
        from tests.python.pg import create_database

        server = str(request.getfixturevalue("postgres_url"))
        config["general_settings"]["database_url"] = create_database(server, f"z_{uuid.uuid4().hex[:12]}")
    with Proxy(config, lago_env(lago, "end_user_id")) as p:
        yield p


def test_malformed_requests_on_every_route_never_5xx_and_bill_only_accepted_calls(
        proxy: Proxy, lago: FakeLago) -> None:
    status, key, _ = proxy.request("POST", "/key/generate", {"user_id": "fuzz-owner", "team_id": "fuzz-team",
                                                             "key_alias": "fuzz-caller"}, MASTER)
    assert status == 200, key
    keys = {"master": MASTER, "virtual": key["key"]}
    built = [build(i, keys) for i in range(COUNT)]
    assert {(m, p.split("?")[0].rstrip("/") or "/") for m, p, _ in built} >= set(ROUTES)  # every route met

    replies = send_all(proxy.port, [raw for _, _, raw in built])

    def where(r: Reply) -> str:
        method, target, raw = built[r.index]
        return (f"seed {SEED} index {r.index}: {method} {target[:120]} -> {r.status} {r.body[:300]!r}\n"
                f"  request: {raw[:400]!r}")

    unanswered = [where(r) for r in replies if r.status == 0]
    server_errors = [where(r) for r in replies if r.status >= 500]
    assert not server_errors, f"{len(server_errors)} 5xx replies:\n" + "\n".join(server_errors[:10])
    assert not unanswered, f"{len(unanswered)} requests unanswered:\n" + "\n".join(unanswered[:10])
    for r in replies:  # every refusal in the API's error shape (the UI's own pages answer HTML)
        if r.status >= 400 and not built[r.index][1].startswith("/ui") and r.headers.get(
                "content-type") == "application/json":
            body = orjson.loads(r.body)
            error = body["error"]
            if "/v1/messages" in built[r.index][1]:  # Anthropic's shape on Anthropic's routes
                assert body["type"] == "error" and error["type"] and error["message"], where(r)
            else:
                assert error["code"] == str(r.status) and error["type"], where(r)
    statuses = sorted({r.status for r in replies})
    assert any(s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses), statuses

    assert proxy.proc is not None and proxy.proc.poll() is None
    assert proxy.request("GET", "/health/liveliness")[0] == 200
    # Billing is exactly the accepted LLM calls: each one's id in the spend logs, and in Lago when
    # it names a customer (events are charged by end_user_id); a refused call left nothing.
    accepted = {r.headers["x-litellm-call-id"] for r in replies
                if r.status == 200 and "x-litellm-call-id" in r.headers}
    assert accepted, "the fuzzer should let some calls through"
    status, logs, _ = proxy.request("GET", "/spend/logs?limit=100000", None, MASTER)
    assert status == 200
    assert {row["request_id"] for row in logs} == accepted
    charged = {row["request_id"] for row in logs if row["end_user"]}
    events = lago.wait_for(len(charged), timeout=30)
    assert {e["transaction_id"] for e in events} == charged
    for path in ("/key/list", "/team/list", "/user/list", "/customer/list", "/budget/list", "/global/spend/report"):
        status, body, _ = proxy.request("GET", path, None, MASTER)
        assert status < 500, (path, body)


def test_the_generator_is_reproducible() -> None:
    keys = {"master": "m", "virtual": "v"}
    assert [build(i, keys) for i in range(50)] == [build(i, keys) for i in range(50)]
