"""The load generator of scenario 4 (bench/stream_bench.py runs it once per path and round): N streamed
chat calls arriving evenly over a ramp, each on its own connection, every read timestamped.

    .venv/bin/python bench/stream_load.py --url http://127.0.0.1:P/v1/chat/completions --out F.json
        [--auth 'Bearer K'] [--streams 1000] [--ramp 2] [--chunks 40] [--interval-ms 100]

Lean on purpose, because its own delays land in what it measures: asyncio on uvloop, a raw
`asyncio.Protocol` per stream whose `data_received` only appends (perf_counter_ns, bytes), no
parsing while streams run. Everything is read apart afterwards: the response head (status, the
proxy's x-litellm-call-id), the chunked framing, the SSE events, and for each content event the time
of the read that completed it (and, for the late ones, over 1.2 x interval, when they came, by 50 ms
window). A probe callback every 10 ms records how late the loop ran it (the generator's own lag), and
the process's CPU time and run-queue wait are reported, so a run shows whether the generator could
keep up.

Per stream: time to first byte (from the moment it was due to start, connect included, to the first
byte of the reply), time to the first content event, and the gaps between consecutive content events
(chunks - 1 of them). A stream is an error unless it got a 200, every content chunk, [DONE] and the
end of the chunked body. The output JSON holds every sample (the caller pools rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import uvloop

MODEL = "gpt-4o-mini"
CUSTOMER = "bench-customer"
_now = time.perf_counter_ns


class StreamProtocol(asyncio.Protocol):
    __slots__ = ("request", "reads", "t_connected", "t_end", "error", "done")

    def __init__(self, request: bytes, done: asyncio.Future[None]) -> None:
        self.request = request
        self.reads: list[tuple[int, bytes]] = []
        self.t_connected = 0
        self.t_end = 0
        self.error = ""
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t_connected = _now()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.reads.append((_now(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.t_end = _now()
        if exc is not None:
            self.error = f"{type(exc).__name__}: {exc}"
        if not self.done.done():
            self.done.set_result(None)


def request_bytes(url: str, auth: str, chunks: int, interval_ms: int) -> bytes:
    parts = urlsplit(url)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello in five words."}],
                       "user": CUSTOMER, "stream": True, "bench_chunks": chunks, "bench_interval_ms": interval_ms},
                      separators=(",", ":")).encode()
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n")
    if auth:
        head += f"Authorization: {auth}\r\n"
    return (head + "\r\n").encode() + body


def analyse(p: StreamProtocol, t_due: int, chunks: int, interval_ms: int) -> dict[str, Any]:
    """One stream's figures from its timestamped reads (ms), or its error."""
    out: dict[str, Any] = {"error": p.error, "call_id": "", "gaps": []}
    if not p.reads:
        out["error"] = out["error"] or "no reply"
        return out
    raw = b"".join(d for _, d in p.reads)
    ends = []  # raw offset just past each read
    total = 0
    for _, d in p.reads:
        total += len(d)
        ends.append(total)
    head_end = raw.find(b"\r\n\r\n")
    head = raw[:head_end].decode("latin-1") if head_end >= 0 else ""
    if not head.startswith("HTTP/1.1 200"):
        out["error"] = f"status: {head.splitlines()[0] if head else raw[:60]!r}"
        return out
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-litellm-call-id":
            out["call_id"] = value.strip()
    # De-chunk, remembering where each piece of the body sits in the raw bytes.
    body, pieces, pos, complete = bytearray(), [], head_end + 4, False
    while pos < len(raw):
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            break
        size = int(raw[pos:line_end].split(b";")[0], 16)
        if size == 0:
            complete = True
            break
        pieces.append((len(body), line_end + 2))
        body += raw[line_end + 2:line_end + 2 + size]
        pos = line_end + 2 + size + 2
    starts = [b for b, _ in pieces]
    times, done_seen, at = [], False, 0
    while True:
        end = body.find(b"\n\n", at)
        if end < 0:
            break
        event = bytes(body[at:end])
        last = end + 1  # the event's last byte, in the body
        if b'"content":"tok' in event:
            i = bisect.bisect_right(starts, last) - 1
            raw_at = pieces[i][1] + (last - pieces[i][0])
            times.append(p.reads[bisect.bisect_right(ends, raw_at)][0])
        elif event.startswith(b"data: [DONE]"):
            done_seen = True
        at = end + 2
    ms = 1e-6
    out["ttfb_ms"] = (p.reads[0][0] - t_due) * ms
    out["connect_ms"] = (p.t_connected - t_due) * ms if p.t_connected else None
    out["first_event_ms"] = (times[0] - t_due) * ms if times else None
    out["gaps"] = [(b - a) * ms for a, b in zip(times, times[1:])]
    # When the late chunks arrived (ns): stalls that hit every open stream at once are the server's.
    late = (interval_ms * 1.2) / ms
    out["late_at"] = [b for a, b in zip(times, times[1:]) if b - a > late]
    out["start_ns"], out["end_ns"] = t_due, p.t_end
    if len(times) != chunks or not done_seen or not complete:
        out["error"] = out["error"] or f"incomplete: {len(times)}/{chunks} chunks, [DONE] {done_seen}, end {complete}"
    return out


def schedstat(pid: int | str = "self", main_only: bool = False) -> tuple[int, int]:
    """(ns on a CPU, ns waiting on a run queue) summed over the process's threads (/proc/PID/task/*/schedstat),
    or of its main thread alone."""
    run = wait = 0
    try:
        tasks = [str(pid) if pid != "self" else str(os.getpid())] if main_only else os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
        except (OSError, IndexError, ValueError):
            pass
    return run, wait


def late_windows(late_at: list[int], t0: int, width_ms: int = 50) -> list[list[float]]:
    """Chunks more than 20 % late, counted by 50 ms window of their arrival: [window start s, count],
    the busiest windows first (at most 10)."""
    counts: dict[int, int] = {}
    for t in late_at:
        w = (t - t0) // (width_ms * 1_000_000)
        counts[w] = counts.get(w, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
    return [[w * width_ms / 1000, n] for w, n in top]


async def run(url: str, auth: str, streams: int, ramp: float, chunks: int, interval_ms: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(url, auth, chunks, interval_ms)
    protos: list[StreamProtocol] = []
    due: list[int] = []
    failures: list[str] = []
    lags: list[float] = []

    async def one(i: int, proto: StreamProtocol) -> None:
        try:
            await loop.create_connection(lambda: proto, host, port)
        except OSError as exc:
            proto.error = f"connect: {exc}"
            proto.done.set_result(None)

    def start(i: int) -> None:
        due[i] = _now()
        loop.create_task(one(i, protos[i]))

    stop = False

    def probe(expected: int) -> None:  # the generator's own loop lag, every 10 ms
        lags.append((_now() - expected) * 1e-6)
        if not stop:
            loop.call_later(0.01, probe, _now() + 10_000_000)

    cpu0, wall0, sched0 = time.process_time(), time.perf_counter(), schedstat()
    t0 = loop.time() + 0.05
    for i in range(streams):
        protos.append(StreamProtocol(request, loop.create_future()))
        due.append(0)
        loop.call_at(t0 + i * ramp / streams, start, i)
    loop.call_later(0.01, probe, _now() + 10_000_000)
    deadline = ramp + chunks * interval_ms / 1000 + 60
    try:
        await asyncio.wait_for(asyncio.gather(*(p.done for p in protos)), deadline)
    except asyncio.TimeoutError:
        failures.append(f"not finished after {deadline:.0f} s")
    stop = True
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sched1 = schedstat()
    waited = (sched1[1] - sched0[1]) * 1e-9  # on a run queue, ready but not running: the machine's doing
    timed_out: dict[str, Any] = {"error": "timeout", "gaps": [], "call_id": ""}
    results = [analyse(p, due[i], chunks, interval_ms) if p.done.done() else timed_out for i, p in enumerate(protos)]
    first = min((t for t in due if t), default=_now())
    # Streams open at once: a sweep over their start and end.
    marks = sorted([(r["start_ns"], 1) for r in results if "start_ns" in r] +
                   [(r["end_ns"], -1) for r in results if "end_ns" in r])
    open_now = peak = 0
    for _, step in marks:
        open_now += step
        peak = max(peak, open_now)
    errors = [r["error"] for r in results if r["error"]] + failures
    return {
        "streams": streams, "ramp_s": ramp, "chunks": chunks, "interval_ms": interval_ms,
        "errors": len(errors), "error_samples": sorted(set(errors))[:10],
        "ttfb_ms": [r["ttfb_ms"] for r in results if "ttfb_ms" in r],
        "first_event_ms": [r["first_event_ms"] for r in results if r.get("first_event_ms") is not None],
        "connect_ms": [r["connect_ms"] for r in results if r.get("connect_ms") is not None],
        "gaps_ms": [g for r in results for g in r["gaps"]],
        "call_ids": [r["call_id"] for r in results if r["call_id"]],
        "peak_open": peak, "wall_s": wall, "loadgen_cpu_s": cpu, "loadgen_runqueue_wait_s": waited, "loop_lag_ms": lags,
        "late_windows": late_windows([t for r in results for t in r.get("late_at", [])], first),
        "t0_wall": time.time() - (_now() - first) * 1e-9,  # the first stream's start, on the wall clock
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--auth", default="")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams arrive")
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.streams + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.streams + 1000), hard))
    result = uvloop.run(run(args.url, args.auth, args.streams, args.ramp, args.chunks, args.interval_ms))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
