"""Management routes, model listing, the other OpenAI routes and the proxy's edge cases, end to end."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env


@pytest.fixture
def proxy(upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    with Proxy(config(upstream, None), lago_env(lago, "end_user_id")) as p:
        yield p


def chat(model: str = "custom-model", user: str = "c") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "user": user}


def test_key_lifecycle(proxy: Proxy) -> None:
    s, k, _ = proxy.request("POST", "/key/generate", {"key_alias": "alice-key", "team_id": "t1", "user_id": "alice",
                                                      "models": ["custom-model"], "max_budget": "10",
                                                      "budget_duration": "30d", "duration": "1h",
                                                      "metadata": {"env": "prod"}, "tpm_limit": 1000,
                                                      "rpm_limit": 10}, MASTER)
    assert s == 200, k
    assert k["key_alias"] == "alice-key" and k["team_id"] == "t1" and k["max_budget"] == 10
    assert k["expires"] and k["budget_reset_at"] and k["metadata"] == {"env": "prod"}
    raw = k["key"]
    # The raw key is shown once: info and list carry only the hash.
    s, info, _ = proxy.request("GET", f"/key/info?key={raw}", None, MASTER)
    assert s == 200 and raw not in json.dumps(info) and info["info"]["key_alias"] == "alice-key"
    s, own, _ = proxy.request("GET", "/key/info", None, raw)  # a key reads its own info
    assert s == 200 and own["key"] == info["key"]
    s, lst, _ = proxy.request("GET", "/key/list?team_id=t1", None, MASTER)
    assert s == 200 and [x["key_alias"] for x in lst["keys"]] == ["alice-key"] and raw not in json.dumps(lst)
    s, upd, _ = proxy.request("POST", "/key/update", {"key": raw, "models": ["custom-model", "gpt-4o"],
                                                      "max_budget": None}, MASTER)
    assert s == 200 and upd["models"] == ["custom-model", "gpt-4o"] and upd["max_budget"] is None
    s, b, _ = proxy.request("POST", "/chat/completions", chat("gpt-4o"), raw)
    assert s == 200, b
    s, b, _ = proxy.request("POST", "/key/update", {"key": "sk-nope-nope"}, MASTER)
    assert s == 404 and b["error"]["type"] == "not_found_error"
    s, b, _ = proxy.request("POST", "/key/delete", {"keys": [raw]}, MASTER)
    assert s == 200 and b["deleted_keys"] == [info["key"]]
    s, b, _ = proxy.request("POST", "/chat/completions", chat(), raw)
    assert s == 401
    s, b, _ = proxy.request("POST", "/key/delete", {"keys": []}, MASTER)
    assert s == 400


def test_expired_and_blocked_keys_are_refused(proxy: Proxy) -> None:
    s, k, _ = proxy.request("POST", "/key/generate", {"duration": "1s"}, MASTER)
    time.sleep(1.2)
    s, b, _ = proxy.request("POST", "/chat/completions", chat(), k["key"])
    assert s == 401 and "expired" in b["error"]["message"]
    s, k, _ = proxy.request("POST", "/key/generate", {"blocked": True}, MASTER)
    s, b, _ = proxy.request("POST", "/chat/completions", chat(), k["key"])
    assert s == 401 and "blocked" in b["error"]["message"]


def test_teams_users_and_model_listing(proxy: Proxy) -> None:
    s, t, _ = proxy.request("POST", "/team/new", {"team_id": "core", "team_alias": "Core", "models": ["custom-model"],
                                                  "max_budget": 5}, MASTER)
    assert s == 200 and t["team_id"] == "core" and t["spend"] == 0
    s, b, _ = proxy.request("POST", "/team/new", {"team_id": "core"}, MASTER)
    assert s == 400 and b["error"]["param"] == "team_id"
    s, u, _ = proxy.request("POST", "/user/new", {"user_id": "bob", "user_email": "bob@example.com",
                                                  "teams": ["core"]}, MASTER)
    assert s == 200 and u["key"].startswith("sk-")  # auto_create_key defaults to true
    s, k, _ = proxy.request("POST", "/key/generate", {"team_id": "core", "user_id": "bob"}, MASTER)
    client = openai.OpenAI(api_key=k["key"], base_url=proxy.url + "/v1", max_retries=0)
    assert [m.id for m in client.models.list()] == ["custom-model"]  # team ∩ key
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    client.chat.completions.create(model="custom-model", messages=[{"role": "user", "content": "x"}])
    client.close()
    s, info, _ = proxy.request("GET", "/team/info?team_id=core", None, MASTER)
    assert Decimal(str(info["team_info"]["spend"])) == CUSTOM_COST and len(info["keys"]) == 1
    s, info, _ = proxy.request("GET", "/user/info?user_id=bob", None, MASTER)
    assert info["user_info"]["user_email"] == "bob@example.com" and len(info["keys"]) == 2
    assert [t["team_id"] for t in info["teams"]] == ["core"]
    s, b, _ = proxy.request("GET", "/team/info?team_id=nope", None, MASTER)
    assert s == 404
    s, b, _ = proxy.request("POST", "/user/new", {"user_role": "emperor"}, MASTER)
    assert s == 400 and b["error"]["param"] == "user_role"


def test_completions_and_embeddings_are_billed(proxy: Proxy, lago: FakeLago) -> None:
    client = openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0)
    r = client.completions.create(model="custom-model", prompt="say hi", user="c")
    assert r.choices[0].text
    e = client.embeddings.create(model="custom-model", input=["a", "b"], user="c")
    assert len(e.data) == 2
    client.close()
    events = lago.wait_for(2, timeout=10)
    costs = sorted(Decimal(ev["properties"]["response_cost"]) for ev in events)
    assert costs == [Decimal("0.000012"), CUSTOM_COST]  # embeddings: 12 prompt tokens only


def test_reply_without_usage_is_estimated_and_flagged(proxy: Proxy, upstream: FakeOpenAI, lago: FakeLago) -> None:
    upstream.omit_usage = True
    s, b, h = proxy.request("POST", "/chat/completions", chat(), MASTER)
    assert s == 200 and Decimal(h["x-litellm-response-cost"]) > 0
    event = lago.wait_for(1, timeout=10)[0]
    assert event["properties"]["estimated"] == "true"
    s, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
    assert logs[0]["metadata"] == {"estimated": True}


def test_client_that_disconnects_mid_stream_is_billed(proxy: Proxy, upstream: FakeOpenAI, lago: FakeLago) -> None:
    upstream.chunk_delay = 0.05
    body = json.dumps({**chat(), "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"POST /chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + MASTER.encode() + b"\r\n"
                     b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert sock.recv(200).startswith(b"HTTP/1.1 200")
    event = lago.wait_for(1, timeout=10)[0]  # the upstream finished; its usage is billed
    assert Decimal(event["properties"]["response_cost"]) == CUSTOM_COST


def test_stream_cut_by_the_upstream_is_billed_as_estimated(proxy: Proxy, upstream: FakeOpenAI,
                                                           lago: FakeLago) -> None:
    upstream.cut_stream_after = 3
    client = openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0)
    try:
        list(client.chat.completions.create(model="custom-model", messages=[{"role": "user", "content": "x"}],
                                            stream=True, user="c"))
    except openai.APIError:
        pass
    client.close()
    event = lago.wait_for(1, timeout=10)[0]
    assert event["properties"]["estimated"] == "true"
    assert event["properties"]["output_tokens"] == 2


def test_several_workers_share_keys_and_spend(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream, None), lago_env(lago, "team_id"), workers=2) as proxy:
        s, k, _ = proxy.request("POST", "/key/generate", {"team_id": "t"}, MASTER)
        for _ in range(6):  # spread over both workers by the kernel
            s, b, _ = proxy.request("POST", "/chat/completions", chat(), k["key"])
            assert s == 200, b
        lago.wait_for(6, timeout=15)
        time.sleep(1.5)  # every worker flushes its spend and reloads the others'
        s, info, _ = proxy.request("GET", "/team/info?team_id=t", None, MASTER)
        assert Decimal(str(info["team_info"]["spend"])) == 6 * CUSTOM_COST
    assert len(set(lago.transaction_ids())) == 6
