"""The OpenAPI document (GET /openapi.json) and its page (GET /docs): a valid OpenAPI 3.1 document
describing every route of the table, with each management route's request schema the very
declaration its handler validates with; and a schema-driven fuzz of the real proxy from the served
document (schemathesis): whatever it sends, no 5xx."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from llmbill.proxy.app import route_table
from llmbill.proxy.fields import REFUSED, read
from llmbill.proxy.fields.registry import body_of
from llmbill.proxy.openapi import body_schema, build
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config, lago_env


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build(route_table())


def test_the_document_is_valid_openapi_3_1_and_lists_every_route(document: dict[str, Any]) -> None:
    validate(document)
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert described == set(route_table())


def test_management_request_schemas_are_the_declarations_the_handlers_validate(document: dict[str, Any]) -> None:
    declared = 0
    for (method, path), (handler, _) in route_table().items():
        body = body_of(handler)
        if body is None or method != "POST":
            continue
        declared += 1
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema == body_schema(body)
        assert schema["additionalProperties"] is False
        for field in body.fields:  # every property says what llmbill does with it
            assert schema["properties"][field.name]["x-llmbill-use"] == field.use
    assert declared == 31  # keys 6, teams 8, users 3, customers 5 (twice), budgets 4


def test_every_management_post_route_declares_its_body() -> None:
    management = re.compile(r"^/(key|team|user|customer|end_user|budget)/")
    missing = [path for (method, path), (handler, _) in route_table().items()
               if method == "POST" and management.match(path) and body_of(handler) is None]
    assert not missing


def test_a_refused_field_is_named_and_an_unknown_one_too() -> None:
    from llmbill.proxy.errors import ProxyError
    from llmbill.proxy.fields.keys import KEY_GENERATE

    refused = next(f for f in KEY_GENERATE.fields if f.use == REFUSED)
    assert read(KEY_GENERATE, {refused.name: None}).body == {refused.name: None}  # null is the default
    with pytest.raises(ProxyError) as bad:
        read(KEY_GENERATE, {"budget_limits": [{"max_budget": 1, "budget_duration": "1d"}]})
    assert bad.value.param == "budget_limits" and "budget_limits" in bad.value.message
    with pytest.raises(ProxyError) as unknown:
        read(KEY_GENERATE, {"no_such_field": 1})
    assert unknown.value.param == "no_such_field"


@pytest.fixture(scope="module")
def served() -> Iterator[Proxy]:
    with FakeOpenAI() as upstream, FakeLago() as lago:
        with Proxy(config(upstream, None), lago_env(lago, "team_id")) as p:
            yield p


def test_the_proxy_serves_the_document_and_a_self_contained_page(served: Proxy, document: dict[str, Any]) -> None:
    status, served_doc, headers = served.request("GET", "/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    validate(served_doc)
    assert set(served_doc["paths"]) == set(document["paths"])
    status, page, headers = served.request("GET", "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loaded from elsewhere


# Not fuzzed: reconciling waits for Lago up to the `wait` it is sent (up to 300 s per request).
NOT_FUZZED = {"/billing/reconcile"}


def test_schema_driven_fuzz_of_every_route_never_answers_5xx(served: Proxy) -> None:
    status, doc, _ = served.request("GET", "/openapi.json")
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in NOT_FUZZED:
            continue
        checked += 1

        @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
        @hypothesis.given(case=operation.as_strategy())
        def run(case: Any) -> None:
            reply = case.call(base_url=served.url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
            if reply.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r:.300} → {reply.status_code} {reply.text:.300}")

        run()
    assert checked == len(route_table()) - len(NOT_FUZZED)  # every operation of the table
    assert not failures, "\n".join(failures[:20])
    assert served.request("GET", "/health/liveliness")[0] == 200  # still up


def test_fuzzed_bodies_of_a_fresh_proxy_on_postgres_never_answer_5xx(postgres_url: str) -> None:
    """The management routes again, on PostgreSQL (values SQLite stores and PostgreSQL refuses)."""
    from tests.python.pg import create_database

    db = create_database(postgres_url, f"fuzz_{uuid.uuid4().hex[:10]}")
    with FakeOpenAI() as upstream, FakeLago() as lago, Proxy(config(upstream, db), lago_env(lago, "team_id")) as p:
        doc = p.request("GET", "/openapi.json")[1]
        schema = schemathesis.openapi.from_dict(doc)
        failures: list[str] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.method.upper() != "POST" or not re.match(r"^/(key|team|user|customer|budget)/",
                                                                  operation.path):
                continue

            @settings(max_examples=8, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
            @hypothesis.given(case=operation.as_strategy())
            def run(case: Any) -> None:
                reply = case.call(base_url=p.url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
                if reply.status_code >= 500:
                    failures.append(f"{case.method} {case.path} {case.body!r:.300} → {reply.status_code} "
                                    f"{reply.text:.300}")

            run()
        assert not failures, "\n".join(failures[:20])
