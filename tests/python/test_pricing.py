"""The Python face of prices, cost, usage and ledger (the C++ rules are tested in tests/cpp)."""

import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest

import llmbill


def test_cost_of_gpt4o_from_an_openai_reply() -> None:
    reply = {
        "id": "chatcmpl-1",
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 200},
        },
    }
    c = llmbill.cost("openai/gpt-4o", reply)
    assert c.total == Decimal("0.00725")  # 800*2.5e-6 + 200*1.25e-6 + 500*1e-5
    assert c.cache_read == Decimal("0.00025")
    assert float(c) == 0.00725
    assert c.total_units == 725 * 10**14


def test_cost_of_claude_from_anthropic_bytes() -> None:
    body = json.dumps(
        {"usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 200}}
    ).encode()
    usage = llmbill.Usage.from_response(body)
    assert usage.prompt_tokens == 1300
    assert llmbill.cost("anthropic.claude-3-5-sonnet-20241022-v2:0", usage).total == Decimal("0.0021")


def test_unknown_model_is_a_typed_error_never_zero() -> None:
    with pytest.raises(llmbill.UnknownModelError, match="no-such-model"):
        llmbill.cost("no-such-model", llmbill.Usage(prompt_tokens=1))


def test_malformed_usage_is_a_typed_error() -> None:
    with pytest.raises(llmbill.UsageError):
        llmbill.Usage.from_response(b"{not json")
    with pytest.raises(llmbill.UsageError):
        llmbill.Usage(prompt_tokens=10, cached_tokens=11)
    with pytest.raises(llmbill.UsageError):
        llmbill.Usage.from_response({"usage": {"prompt_tokens": "ten"}})


def test_deployment_prices_override_and_price_unknown_models() -> None:
    table = llmbill.default_prices()
    price = table.resolve_with("openai/my-fine-tune", input_cost_per_token=1e-06, output_cost_per_token="0.000002")
    assert price.custom and price.input_cost_per_token == Decimal("0.000001")
    assert price.cost(llmbill.Usage(prompt_tokens=10, completion_tokens=20)).total == Decimal("0.00005")


def test_user_price_file_extends_the_bundled_table(tmp_path: Path) -> None:
    extra = tmp_path / "prices.json"
    extra.write_text(json.dumps({"acme-1": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6}}))
    bundled = Path(llmbill.__file__).parent / "data" / "model_prices.json"
    table = llmbill.PriceTable.load([bundled, extra])
    assert "acme-1" in table and "gpt-4o" in table
    assert table.cost("acme-1", llmbill.Usage(prompt_tokens=1, completion_tokens=1)).total == Decimal("0.000007")


def test_env_price_file_is_read_by_the_default_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "prices.json"
    extra.write_text(json.dumps({"gpt-4o": {"input_cost_per_token": 1e-6}}))
    monkeypatch.setenv("LLMBILL_PRICES", str(extra))
    try:
        table = llmbill.reload_default_prices()
        assert table.resolve("gpt-4o").input_cost_per_token == Decimal("0.000001")
    finally:
        monkeypatch.delenv("LLMBILL_PRICES")
        llmbill.reload_default_prices()
    assert llmbill.default_prices().resolve("gpt-4o").input_cost_per_token == Decimal("0.0000025")


def test_bad_user_price_file_names_model_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m": {"output_cost_per_token": "free"}}))
    with pytest.raises(llmbill.PriceTableError, match="'m': output_cost_per_token"):
        llmbill.PriceTable.load([bad])


def test_sse_usage_and_scanner() -> None:
    stream = (
        b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert llmbill.Usage.from_sse(stream) == llmbill.Usage(prompt_tokens=5, completion_tokens=2)
    scanner = llmbill.SseUsageScanner()
    for i in range(len(stream)):
        scanner.feed(stream[i : i + 1])
    assert scanner.usage == llmbill.Usage(prompt_tokens=5, completion_tokens=2)


def test_ledger_sums_exactly_across_threads() -> None:
    ledger = llmbill.Ledger()
    usage = llmbill.Usage(prompt_tokens=7, completion_tokens=3)
    c = llmbill.cost("gpt-4o-mini", usage)

    def work() -> None:
        for _ in range(2500):
            ledger.record(usage, c, model="gpt-4o-mini", key="k1", team="t1", customer="cust")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    team = ledger.get("team", "t1")
    assert team.requests == 10000
    assert team.spend == Decimal("0.0285")  # 10000 * (7*1.5e-7 + 3*6e-7)
    kinds = {(kind, ident) for kind, ident, _ in ledger.drain()}
    assert kinds == {("key", "k1"), ("team", "t1"), ("customer", "cust"), ("model", "gpt-4o-mini")}
    assert ledger.get("team", "t1").requests == 0


def test_ledger_spend_is_get_s_spend_without_the_totals() -> None:
    ledger = llmbill.Ledger()
    ledger.record(llmbill.Usage(prompt_tokens=7, completion_tokens=3), Decimal("0.00000008"), key="k1")
    assert ledger.spend("key", "k1") == ledger.get("key", "k1").spend == Decimal("0.00000008")
    assert ledger.spend("key", "nobody") == Decimal(0)
    with pytest.raises(ValueError):
        ledger.spend("planet", "k1")  # an unknown kind, refused as get() refuses it


def test_cost_takes_a_dict_in_llmbills_own_field_names() -> None:
    own = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 200}
    assert llmbill.cost("gpt-4o", own).total == Decimal("0.00725")  # the cached 200 at the cache price
