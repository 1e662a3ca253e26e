"""What translating a chat call to Anthropic's Messages API costs llmbill-proxy in CPU, step by step,
beside what the OpenAI pass-through does with the same call (issue 14; no sockets, no event loop).

    .venv/bin/python bench/translation_cost.py [--calls 2000] [--rounds 7] [--json F]

proxy_bench.py's Anthropic rows give the added latency end to end, but on a shared 2-core machine a
pair of points differs by more than the 0.05 ms target by chance. This program times the steps that
differ between the two paths, in-process, by the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID: time
spent waiting for a CPU is not in it), each round in shuffled order; per step the median over rounds
of the mean per call. The request bodies are proxy_bench.py's; the replies are bench/fake_openai's,
read from a running one, so both paths parse exactly the bytes the proxy gets in the proxy table.
The steps the two paths share (auth, guards, upper bound, settle, the server, the client's socket
work) are left out: the sums are what translation adds or saves, not a call's whole cost.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402

from llmbill._native import core  # noqa: E402
from llmbill.proxy import forward  # noqa: E402
from llmbill.proxy.config import load_config_dict  # noqa: E402
from llmbill.proxy.deployments import Deployment  # noqa: E402
from llmbill.proxy.httpclient import Target  # noqa: E402
from llmbill.proxy.providers.anthropic_reply import completion, parse_message  # noqa: E402
from llmbill.proxy.providers.anthropic_request import messages_body  # noqa: E402
from llmbill.proxy.routes import messages as messages_route  # noqa: E402


def fetch(port: int, path: str, body: dict[str, Any]) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        data: bytes = r.read()  # de-chunked: the bytes the proxy's client hands on
        return data


def deployments(port: int) -> dict[str, Deployment]:
    config = load_config_dict({"model_list": pb.model_list(port, anthropic=True)})
    return {d.model_name: d for d in config.deployments}


def steps(port: int) -> dict[str, tuple[str, Callable[[], object]]]:
    """name → (path it belongs to, one call of the step)."""
    ds = deployments(port)
    gpt, claude = ds[pb.MODEL], ds[pb.CLAUDE]
    assert claude.adapter is not None and claude.params is not None
    adapter, params = claude.adapter, claude.params
    chat_reply = fetch(port, "/v1/chat/completions", pb.BODIES["chat"])
    chat_stream = fetch(port, "/v1/chat/completions", pb.BODIES["stream"])
    msg_reply = fetch(port, "/v1/messages", pb.BODIES["messages"])
    msg_stream = fetch(port, "/v1/messages", pb.BODIES["messages-stream"])
    chat_body, msg_body = pb.BODIES["chat"], pb.BODIES["messages"]
    client_headers = {"content-type": "application/json", "authorization": "Bearer sk-x"}

    def upstream_body(d: Deployment) -> dict[str, Any]:  # routes/llm.py _forward, both paths
        body = dict(forward.provider_body(chat_body))
        body["model"] = d.upstream_model
        return body

    translated_body = upstream_body(claude)
    request = adapter.chat_request(params, translated_body, stream=False)
    native = messages_route.native_request(claude, msg_body, client_headers)

    def openai_reply() -> bytes:  # routes/llm.py _forward: parse, usage by C++, rename, serialise
        data = orjson.loads(chat_reply)
        core.Usage.from_response(chat_reply)
        data["model"] = pb.MODEL
        return orjson.dumps(data)

    def translated_reply() -> bytes:  # forward.chat: the adapter's reply, serialised
        data, _ = adapter.chat_reply(params, msg_reply, pb.CLAUDE)
        return orjson.dumps(data)

    def native_reply() -> bytes:  # routes/messages.py _native
        data = orjson.loads(msg_reply)
        core.Usage.from_response(msg_reply)
        data["model"] = pb.CLAUDE
        return orjson.dumps(data)

    def openai_stream() -> bytes:  # routes/llm.py _stream's relay (relay.EventRelay), one upstream read
        return core.SseEventRelay(gpt.upstream_model, "gpt-4o-mini", True).feed(chat_stream)

    def translated_stream() -> list[bytes]:  # forward.chat_stream: the adapter's stream translator
        translator = adapter.chat_stream(params, pb.CLAUDE, False)
        return translator.feed(msg_stream) + translator.finish()

    def native_stream() -> bytes:  # routes/messages.py _native_stream's relay (relay.EventRelay), one read
        return core.SseEventRelay(pb.CLAUDE, pb.CLAUDE, False).feed(msg_stream)

    parsed = parse_message(msg_reply)
    usage = core.Usage.from_response(msg_reply)
    return {
        # request side
        "openai: request body (orjson.dumps)": ("openai", lambda: orjson.dumps(upstream_body(gpt))),
        "translated: upstream body copy (_forward)": ("translated", lambda: upstream_body(claude)),
        "translated: chat_request (messages_body + dumps + url + headers)":
            ("translated", lambda: adapter.chat_request(params, translated_body, stream=False)),
        "  of which messages_body": ("part", lambda: messages_body(translated_body, params.model, False, None)),
        "translated: Target(url, headers) per request (upstream.send)":
            ("translated", lambda: Target(request.url, dict(request.headers))),
        "native: native_request": ("native", lambda: messages_route.native_request(claude, msg_body, client_headers)),
        "native: Target(url, headers) per request (upstream.send)":
            ("native", lambda: Target(native.url, dict(native.headers))),
        # reply side
        "openai: reply (loads + usage + dumps)": ("openai", openai_reply),
        "translated: reply (chat_reply + dumps)": ("translated", translated_reply),
        "  of which parse_message": ("part", lambda: parse_message(msg_reply)),
        "  of which Usage.from_response": ("part", lambda: core.Usage.from_response(msg_reply)),
        "  of which completion()": ("part", lambda: completion(parsed, usage, pb.CLAUDE, 1700000000)),
        "native: reply (loads + usage + dumps)": ("native", native_reply),
        # streams (8 content chunks each)
        "openai stream: relay (split + usage scan)": ("openai-stream", openai_stream),
        "translated stream: AnthropicChatStream feed + finish": ("translated-stream", translated_stream),
        "native stream: relay (split + usage scan)": ("native-stream", native_stream),
    }


def measure(fn: Callable[[], object], calls: int) -> float:
    """Mean CPU µs per call over `calls` calls."""
    t0 = time.thread_time_ns()
    for _ in range(calls):
        fn()
    return (time.thread_time_ns() - t0) / calls / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        table = steps(upstream.port)
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
    for _, fn in table.values():  # warm: first calls pay imports and caches
        measure(fn, 200)
    samples: dict[str, list[float]] = {name: [] for name in table}
    names = list(table)
    for _ in range(args.rounds):
        random.shuffle(names)
        for name in names:
            samples[name].append(measure(table[name][1], args.calls))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    sums: dict[str, float] = {}
    for name, (path, _) in table.items():
        if path != "part":
            sums[path] = sums.get(path, 0.0) + medians[name]
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"CPU µs per call (thread CPU clock), median of {args.rounds} shuffled rounds of {args.calls} calls; "
          f"load {load} on {len(__import__('os').sched_getaffinity(0))} cores")
    print("\n| step | path | µs/call |\n|---|---|---:|")
    for name, (path, _) in table.items():
        print(f"| {name} | {path if path != 'part' else ''} | {medians[name]:.1f} |")
    print("\n| comparison | µs/call |\n|---|---:|")
    added = {
        "translated − openai (chat, non-stream)": sums["translated"] - sums["openai"],
        "native − openai (chat, non-stream)": sums["native"] - sums["openai"],
        "translated − openai (stream, one 8-chunk read)": sums["translated-stream"] - sums["openai-stream"],
        "native − openai (stream, one 8-chunk read)": sums["native-stream"] - sums["openai-stream"],
    }
    for name, v in added.items():
        print(f"| {name} | {v:+.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians_us": medians, "samples_us": samples, "sums_us": sums,
                                               "added_us": added, "load1": float(load), "calls": args.calls,
                                               "rounds": args.rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
