"""Passwords and other secrets stay out of what the proxy and `llmbill` print, log or answer: the
start-up banner, config errors, readiness's billing sink, the operator commands' errors, log lines,
and the 502s and upstream errors clients see."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmbill import redact
from llmbill.proxy import cli as proxy_cli
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.logs import JsonFormatter, TextFormatter

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize("url, shown", [
    (f"postgresql://llm:{SECRET}@db.internal:5432/llmbill", "postgresql://llm:***@db.internal:5432/llmbill"),
    (f"postgres://:{SECRET}@db/x", "postgres://:***@db/x"),
    (f"https://u:p@ss:{SECRET}@lago.example/api/v1", "https://u:***@lago.example/api/v1"),  # '@' in a password
    (f"postgresql://db/x?user=llm&password={SECRET}&sslmode=require",
     "postgresql://db/x?user=llm&password=***&sslmode=require"),
    (f"https://gen.example/v1?key={SECRET}", "https://gen.example/v1?key=***"),
    ("postgresql://llm@db/x", "postgresql://llm@db/x"),  # no password: unchanged
    ("sqlite:////var/lib/llmbill/llmbill.db", "sqlite:////var/lib/llmbill/llmbill.db"),
    (f"postgresql://u:{SECRET}@[::1", "postgresql://u:***@[::1"),  # not even a valid URL
])
def test_url_passwords_are_masked(url: str, shown: str) -> None:
    assert redact.url(url) == shown
    assert redact.text(f"cannot connect to {url!r}: refused") == f"cannot connect to {shown!r}: refused"


def test_text_without_urls_is_returned_as_is() -> None:
    line = "GET /key/info 200 user:alice@example.com key_alias=a=b"
    assert redact.text(line) is line


def test_an_origin_keeps_only_scheme_host_and_port() -> None:
    assert redact.origin(f"https://hooks.example/services/T0/B0/{SECRET}?x=1") == "https://hooks.example"
    assert redact.origin(f"http://u:{SECRET}@hook.internal:8080/p") == "http://hook.internal:8080"
    assert redact.origin("not a url") == "(unparsable URL)"


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """llmbill-proxy's main() sets the root logger up; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_config_error_prints_no_database_password(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     keep_logging: None) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"general_settings": {"database_url": f"mysql://llm:{SECRET}@db/x"}}))
    assert proxy_cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "mysql://llm:***@db/x" in err and SECRET not in err


@pytest.mark.parametrize("general", [{"master_key": 12345678901234567890},
                                     {"master_key": "sk-master-0123456789abcdef", "database_url": 9876543210}])
def test_a_config_error_does_not_echo_a_secret_of_the_wrong_type(general: dict[str, Any]) -> None:
    from llmbill.billing import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_config_dict({"general_settings": general})
    assert "12345678901234567890" not in str(caught.value) and "9876543210" not in str(caught.value)
    assert "expected a string, got int" in str(caught.value)


def test_a_deployment_api_key_of_the_wrong_type_is_not_echoed() -> None:
    from llmbill.billing import ConfigError

    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_key": 987654321987}}]}
    with pytest.raises(ConfigError) as caught:
        load_config_dict(config)
    assert "987654321987" not in str(caught.value) and "api_key" in str(caught.value)


def test_the_banner_prints_no_database_or_lago_password(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, keep_logging: None) -> None:
    from llmbill.proxy import server

    served: list[Any] = []
    monkeypatch.setattr(server, "serve", lambda app, **kw: served.append(app) or True)  # the banner, then no server
    for name, value in {"LAGO_API_BASE": f"https://billing:{SECRET}@lago.internal", "LAGO_API_KEY": "lago-key",
                        "LAGO_API_EVENT_CODE": "tokens", "LLMBILL_SPOOL_DIR": str(tmp_path / "spool")}.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "litellm_settings": {"callbacks": ["lago"]},
        "general_settings": {"master_key": "sk-master-0123456789abcdef",
                             "database_url": f"postgresql://llm:{SECRET}@db.internal:5432/llmbill"}}))
    assert proxy_cli.main(["--config", str(path), "--port", "1"]) == 0 and served
    out = capsys.readouterr().out
    assert "postgresql://llm:***@db.internal:5432/llmbill" in out
    assert "https://billing:***@lago.internal" in out
    assert SECRET not in out


def test_readiness_names_the_lago_sink_without_its_password(make_pipeline: Any) -> None:
    pipeline = make_pipeline(api_base=f"http://billing:{SECRET}@127.0.0.1:9/", api_key="lago-key")
    assert pipeline.describe() == "lago http://billing:***@127.0.0.1:9/api/v1/events/batch"


def test_llmbill_commands_print_no_lago_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbill import cli

    monkeypatch.setenv("LAGO_API_BASE", f"http://billing:{SECRET}@127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("LAGO_API_EVENT_CODE", "tokens")
    monkeypatch.delenv("LLMBILL_PROXY_CONFIG", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"general_settings": {"database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}}))
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["reconcile", "--from=-1h", "--to=now", "--config", str(path)], out, err)
    assert status == 2 and "unreachable" in err.getvalue()
    assert "billing:***@127.0.0.1:9" in err.getvalue() and SECRET not in err.getvalue() + out.getvalue()


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("llmbill.proxy", logging.ERROR, "", 0, message, args, None)


def test_log_lines_carry_no_url_password() -> None:
    record = _record("cannot connect to PostgreSQL %s: %s", f"postgresql://llm:{SECRET}@db/x", "refused")
    for line in (TextFormatter().format(record), json.loads(JsonFormatter().format(record))["message"]):
        assert "postgresql://llm:***@db/x" in line and SECRET not in line
    try:
        raise ConnectionError(f"to https://u:{SECRET}@lago.internal failed")
    except ConnectionError:
        import sys

        record = logging.LogRecord("llmbill.proxy", logging.ERROR, "", 0, "boom", None, sys.exc_info())
    assert SECRET not in TextFormatter().format(record)
    assert SECRET not in json.loads(JsonFormatter().format(record))["exception"]


def _deployment(**changes: Any) -> Any:
    import dataclasses

    config = load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": "http://127.0.0.1:9/v1", "api_key": f"sk-upstream-{SECRET}"}}]})
    return dataclasses.replace(config.deployments[0], **changes)


def test_a_502_names_the_upstream_without_its_password() -> None:
    from llmbill.proxy.upstream import Upstream, _unreachable

    d = _deployment(api_base=f"http://llm:{SECRET}@127.0.0.1:9/v1")
    message = _unreachable(d, ConnectionRefusedError("refused")).message
    assert "http://llm:***@127.0.0.1:9/v1" in message and SECRET not in message
    with pytest.raises(Exception) as caught:
        Upstream()._target(_deployment(api_base=f"ftp://llm:{SECRET}@host/v1"), "chat")
    assert SECRET not in str(caught.value) and "ftp://llm:***@host/v1" in str(caught.value)


def test_an_upstream_error_does_not_echo_the_deployment_key_to_the_client() -> None:
    from llmbill.proxy.upstream import upstream_error

    d = _deployment()
    body = json.dumps({"error": {"message": f"Incorrect API key provided: sk-upstream-{SECRET}.",
                                 "type": "invalid_request_error"}}).encode()
    error = upstream_error(d, 401, body)
    assert error.status == 502 and SECRET not in error.message and "Incorrect API key provided: ***" in error.message
    raw = f"<html>bad key sk-upstream-{SECRET}</html>".encode()
    assert SECRET not in upstream_error(d, 401, raw).message


def test_an_undelivered_webhook_is_logged_by_its_origin_only(caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from llmbill.proxy import webhook
    from tests.python.proxy_harness import free_port

    monkeypatch.setattr(webhook, "ATTEMPTS", 1)  # one refused attempt is enough to give up
    hook = webhook.Webhook(f"http://127.0.0.1:{free_port()}/services/T0/B0/{SECRET}")

    async def deliver() -> None:
        await hook.start()
        hook.emit({"event": "budget_crossed"})
        await hook.stop()

    with caplog.at_level(logging.WARNING, "llmbill.proxy"):
        asyncio.run(deliver())
    assert hook.failed == 1 and "not delivered to http://127.0.0.1:" in caplog.text and SECRET not in caplog.text


def test_a_running_proxy_shows_its_lago_url_without_the_password(tmp_path: Path, lago: Any) -> None:
    """Banner, logs, readiness and the reconcile route of a proxy whose LAGO_API_BASE holds a password
    (urllib cannot read through such a URL: its reads fail, and their errors name the URL)."""
    from tests.python.proxy_harness import Proxy

    master = "sk-master-0123456789abcdef"
    base = lago.url.replace("http://", f"http://billing:{SECRET}@")
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "litellm_settings": {"callbacks": ["lago"]}, "general_settings": {"master_key": master}}
    env = {"LAGO_API_BASE": base, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": "openai_tokens"}
    with Proxy(config, env, workdir=tmp_path) as proxy:
        status, ready, _ = proxy.request("GET", "/health/readiness", None, master)
        assert status == 200 and "billing:***@" in json.dumps(ready)
        status, body, _ = proxy.request("POST", "/billing/reconcile", {"from": "-1h", "to": "now"}, master)
        assert status == 502 and "billing:***@" in body["error"]["message"]
        assert SECRET not in json.dumps(ready) + json.dumps(body)
    assert "billing:***@" in proxy.output and SECRET not in proxy.output


def test_secrets_stay_out_of_the_settings_reprs(tmp_path: Path) -> None:
    from llmbill.billing import LagoSettings
    from llmbill.ops.context import OpsContext

    config = load_config_dict({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_key": f"sk-up-{SECRET}"}}],
        "general_settings": {"master_key": f"sk-master-{SECRET}", "database_url": f"postgresql://u:{SECRET}@db/x"}})
    settings = LagoSettings.from_env({"LAGO_API_BASE": "http://lago", "LAGO_API_KEY": f"lago-{SECRET}",
                                      "LAGO_API_EVENT_CODE": "tokens"})
    context = OpsContext(config.database_url, settings, tmp_path)
    for value in (config, config.deployments[0], settings, context):
        assert SECRET not in repr(value), type(value).__name__
