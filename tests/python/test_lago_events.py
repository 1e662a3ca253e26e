"""The Lago event as the fake Lago received it, field by field (docs/lago-api.md, "Event fields" and
"llmbill's event properties"), and LAGO_API_CHARGE_BY for each of the three ids."""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any, Callable

import pytest

import llmbill
from llmbill._core import Pipeline
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import CODE, KEY, MODEL, OPENAI_USAGE, ingestion_requests

MakePipeline = Callable[..., Pipeline]

SECONDS_MMM = re.compile(r"\d{10}\.\d{3}\Z")
PLAIN_DECIMAL = re.compile(r"\d+(\.\d*[1-9])?\Z")  # no exponent, no trailing zeros, no sign
IDS = {"end_user_id": "cust-e", "user_id": "user-u", "team_id": "team-t"}


def response(call_id: str = "chatcmpl-fields-1", model: str = MODEL) -> dict[str, Any]:
    return {"id": call_id, "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": OPENAI_USAGE}


def only_event(lago: FakeLago) -> dict[str, Any]:
    (raw,) = lago.raw_events
    return raw


def test_event_fields_as_lago_receives_them(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    before = time.time()
    call = llmbill.BilledCall.priced(MODEL, response(), key_alias="alias-k", **IDS)
    llmbill.LagoLogger(pipeline).bill(call)
    assert pipeline.flush(5)

    event = only_event(fake_lago)
    (request,) = ingestion_requests(fake_lago)
    assert request.path == "/api/v1/events/batch" and request.json == {"events": [event]}
    assert set(event) == {"transaction_id", "external_subscription_id", "external_customer_id", "code",
                          "timestamp", "properties"}
    assert event["transaction_id"] == "chatcmpl-fields-1"  # the provider's reply id
    assert event["external_subscription_id"] == "cust-e"  # charged by end_user_id by default
    assert event["external_customer_id"] == "cust-e"  # for older self-hosted Lago
    assert event["code"] == CODE

    stamp = event["timestamp"]
    assert isinstance(stamp, str) and SECONDS_MMM.match(stamp), stamp
    assert abs(Decimal(stamp) - Decimal(repr(before))) < 1
    assert stamp == f"{call.timestamp_ms // 1000}.{call.timestamp_ms % 1000:03d}"

    properties = event["properties"]
    cost = properties.pop("response_cost")
    assert properties == {
        "model": MODEL,
        "input_tokens": 1200, "output_tokens": 300,
        "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
        "cached_tokens": 200, "cache_creation_tokens": 0, "reasoning_tokens": 100,
        "key_alias": "alias-k", "end_user_id": "cust-e", "user_id": "user-u", "team_id": "team-t",
    }
    for value in properties.values():  # flat: strings and integers only (a bool is not a number here)
        assert type(value) in (str, int), value
    # 1000 input at $2.50/M + 200 cached at $1.25/M + 300 output at $10/M, to the last digit.
    assert isinstance(cost, str) and PLAIN_DECIMAL.match(cost), cost
    assert cost == "0.00575"
    assert Decimal(cost) == llmbill.cost(MODEL, llmbill.Usage.from_response(response())).total == call.cost

    (stored,) = fake_lago.events
    assert stored["timestamp"] == Decimal(stamp)
    assert stored["external_subscription_id"] == "cust-e"


def test_unpriced_model_is_billed_by_tokens_and_flagged(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    call = llmbill.BilledCall.priced("my-private-model", response(model="my-private-model"), end_user_id="c")
    llmbill.LagoLogger(pipeline).bill(call)
    assert pipeline.flush(5)
    properties = only_event(fake_lago)["properties"]
    assert properties["response_cost"] == "0"
    assert properties["unpriced"] == "true"
    assert properties["input_tokens"] == 1200 and properties["output_tokens"] == 300


def test_one_event_per_code_with_its_own_transaction_id(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, event_codes=["input", "output"])
    ids = pipeline.submit(call_id="multi-1", timestamp_ms=1786000000123, model=MODEL,
                          usage=llmbill.Usage(prompt_tokens=10, completion_tokens=5), end_user_id="cust-1")
    assert ids == ["multi-1:input", "multi-1:output"]
    assert pipeline.flush(5)
    events = fake_lago.raw_events
    assert [(e["transaction_id"], e["code"]) for e in events] == [("multi-1:input", "input"),
                                                                  ("multi-1:output", "output")]
    assert {e["timestamp"] for e in events} == {"1786000000.123"}
    assert {e["external_subscription_id"] for e in events} == {"cust-1"}
    assert sorted(fake_lago.transaction_ids()) == ids


@pytest.mark.parametrize("charge_by", ["end_user_id", "user_id", "team_id"])
def test_charge_by_bills_the_chosen_id(fake_lago: FakeLago, make_pipeline: MakePipeline, charge_by: str) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, charge_by=charge_by)
    billed = pipeline.submit(call_id="charged-1", timestamp_ms=1786000000000, model=MODEL,
                             usage=llmbill.Usage(prompt_tokens=10, completion_tokens=5), key_alias="k", **IDS)
    assert billed == ["charged-1"]

    without = {name: value for name, value in IDS.items() if name != charge_by}
    unbilled = pipeline.submit(call_id="uncharged-1", timestamp_ms=1786000000000, model=MODEL,
                               usage=llmbill.Usage(prompt_tokens=10, completion_tokens=5), **without)
    assert unbilled == []
    assert pipeline.flush(5)

    event = only_event(fake_lago)  # the call without the id was never sent
    assert event["transaction_id"] == "charged-1"
    assert event["external_subscription_id"] == IDS[charge_by]
    assert event["external_customer_id"] == IDS[charge_by]
    assert {name: event["properties"][name] for name in IDS} == IDS
    assert all(b"uncharged-1" not in r.body for r in fake_lago.requests)

    (letter,) = pipeline.dead_letters()
    assert letter["id"] == "uncharged-1"
    assert charge_by in letter["reason"] and "LAGO_API_CHARGE_BY" in letter["reason"]
    kept = json.loads(letter["event"])
    assert kept["transaction_id"] == "uncharged-1" and "external_subscription_id" not in kept
    stats = pipeline.stats()
    assert (stats["no_charge_id"], stats["dead_lettered"], stats["delivered"], stats["enqueued"]) == (1, 1, 1, 1)


def test_unknown_charge_by_is_refused_naming_the_setting(make_pipeline: MakePipeline) -> None:
    with pytest.raises(llmbill.Error, match="LAGO_API_CHARGE_BY"):
        make_pipeline(api_base="http://127.0.0.1:9", api_key=KEY, charge_by="customer_id")
