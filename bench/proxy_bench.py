"""Scenarios 1 and 2 of ../shared/docs/benchmarks.md, side by side in one run: the direct path, llmbill-proxy
(SQLite and PostgreSQL) and LiteLLM's proxy, in front of the same fast fake upstream, driven by wrk.

    .venv/bin/python bench/proxy_bench.py --out R.json [--quick] [--duration S] [--concurrency 1,8,64,256]
        [--systems direct,llmbill-sqlite,llmbill-pg,litellm] [--modes chat,stream,anthropic-chat,...]
        (also on request: floor, llmbill-sqlite-nopoll — llmbill-sqlite with idle polling off, general_settings.idle_poll_us 0)
        [--anthropic-concurrency 1,64] [--rounds R] [--litellm EXE]

Everything runs on this machine as its own process: bench/fake_openai (C++, the upstream), one
bench/fake_lago (C++) per proxy (so each proxy's Lago events are counted apart), PostgreSQL (Debian's,
started by tests/python/pg.py), the proxies, and wrk (one thread, keep-alive, a POST script). For
each concurrency and mode, the direct path is measured first and every proxy right after it, each for
the same fixed time: the direct figure is the same-run baseline that "added latency" is read against.

Per point: requests/s, wrk's p50/p99, added p50/p99 over the direct path, CPU per request of the
proxy's process tree (utime+stime from /proc; PostgreSQL's own CPU is reported apart), peak RSS
(VmHWM, summed over the tree) and errors (connect/read/write/timeout/non-2xx). A point with any
error makes the run invalid (exit 1). After the ladder every proxy is stopped cleanly and its fake
Lago's event count is checked against the requests it served (billing really was on).

The Anthropic modes (MODES) put llmbill's `anthropic/claude-sonnet-4-5` deployment (the same fake, on
its /v1/messages) beside the OpenAI pass-through: `anthropic-chat` is the OpenAI chat body translated
to Messages and back, `messages` an Anthropic body on /v1/messages passed through natively (and their
stream twins). Each is measured right after the OpenAI mode of the same system and concurrency, and
report.py reads its added latency against that row. The direct path measures the fake's /v1/messages.
With --rounds R the whole ladder is repeated R times (report.py takes the median of the per-round
differences): on a shared machine one pair of 2 s points differs by more than 0.05 ms by chance.

What each system does per call:
  llmbill    a virtual key (max_budget) checked in memory, a customer with a budget (the `user`
             field), cost in C++, spend ledger flushed to the database every 0.5 s, a spend log row,
             a Lago event spooled (interval fsync) and sent in batches by the C++ sender.
  LiteLLM    its database-less mode: the master key (virtual keys and budgets need its database,
             which needs the Prisma CLI from npm: not reachable here), customer by `user`, its Lago
             callback on (one POST per call). It does less work than llmbill per call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "build" / "bench" / "bench"
sys.path.insert(0, str(ROOT / "tests" / "python"))

MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
CUSTOMER = "bench-customer"
MASTER = "sk-bench-master-" + os.urandom(8).hex()
CLK = os.sysconf("SC_CLK_TCK")
ALL: list[Child] = []
PROMPT = [{"role": "user", "content": "Say hello in five words."}]
# The translated modes send exactly the OpenAI body but for the model: what differs is the translation.
BODIES = {
    "chat": {"model": MODEL, "messages": PROMPT, "user": CUSTOMER},
    "stream": {"model": MODEL, "messages": PROMPT, "user": CUSTOMER, "stream": True},
    "anthropic-chat": {"model": CLAUDE, "messages": PROMPT, "user": CUSTOMER},
    "anthropic-stream": {"model": CLAUDE, "messages": PROMPT, "user": CUSTOMER, "stream": True},
    "messages": {"model": CLAUDE, "max_tokens": 256, "messages": PROMPT, "metadata": {"user_id": CUSTOMER}},
    "messages-stream": {"model": CLAUDE, "max_tokens": 256, "messages": PROMPT, "metadata": {"user_id": CUSTOMER},
                        "stream": True},
}


@dataclass(frozen=True)
class Mode:
    path: str  # on a proxy; the direct path's base URL already ends in /v1 (endpoint() drops it)
    direct: str  # the direct path's mode that "added" latency over direct is read against
    pass_through: str | None = None  # Anthropic modes: the OpenAI mode of the same system they are read against
    translated: bool = False  # the proxy translates OpenAI ↔ Messages (issue 14's target applies)


MODES = {
    "chat": Mode("/chat/completions", "chat"),
    "stream": Mode("/chat/completions", "stream"),
    "anthropic-chat": Mode("/chat/completions", "messages", "chat", translated=True),
    "anthropic-stream": Mode("/chat/completions", "messages-stream", "stream", translated=True),
    "messages": Mode("/v1/messages", "messages", "chat"),
    "messages-stream": Mode("/v1/messages", "messages-stream", "stream"),
}


def serves(system: str, mode: str) -> bool:
    """Direct measures only the upstream's own routes (an OpenAI body sent straight to /v1/messages
    means nothing); LiteLLM only the OpenAI modes (its slow points at high concurrency cost minutes,
    and the Anthropic rows compare llmbill with itself)."""
    m = MODES[mode]
    if system == "direct":
        return m.direct == mode
    return m.pass_through is None or system.startswith("llmbill")


def endpoint(s: System, mode: str) -> str:
    path = MODES[mode].path
    return path[len("/v1"):] if s.name == "direct" and path.startswith("/v1/") else path


def log(msg: str) -> None:
    print(f"[proxy_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """pid and all its descendants."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK


def status_kb(pids: list[int], name: str) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(name + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Child:
    """A process started by this run, killed (SIGTERM, then SIGKILL) when stopped; every one is
    stopped when the run ends (ALL), whatever happened."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 port_from_stdout: bool = False, log_path: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        out = subprocess.PIPE if port_from_stdout else (open(log_path, "wb") if log_path else subprocess.DEVNULL)
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        ALL.append(self)
        self.port = 0
        if port_from_stdout:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode().strip()
            if not line.isdigit():
                raise RuntimeError(f"{name} printed no port: {line!r}")
            self.port = int(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def http(method: str, url: str, body: Any = None, key: str | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read().decode(), e.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_healthy(url: str, child: Child, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if child.proc.poll() is not None:
            tail = child.log_path.read_text(errors="replace")[-3000:] if child.log_path else ""
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} not healthy after {timeout:.0f} s")


# ---- systems ---------------------------------------------------------------------------------------

@dataclass
class System:
    name: str
    url: str  # base URL; requests go to url + /chat/completions
    auth: str  # Authorization header value
    proc: Child | None = None
    lago: Child | None = None
    db_pids: Any = None  # callable → PostgreSQL's pids, for its CPU
    notes: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    idle_rss_mb: float | None = None  # right after start-up, before any call
    served: int = 0  # 2xx replies wrk counted over all points
    warm_rps: float = 0.0  # at c=8 during the warm-up: sizes the points of a slow system

    def pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []


def model_list(upstream: int, anthropic: bool = False) -> list[dict[str, Any]]:
    models = [{"model_name": MODEL, "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"http://127.0.0.1:{upstream}/v1",
                                                      "api_key": "sk-upstream-fake"}}]
    if anthropic:  # the same fake answers Messages on /v1/messages (and ignores the key)
        models.append({"model_name": CLAUDE, "litellm_params": {"model": f"anthropic/{CLAUDE}",
                                                               "api_base": f"http://127.0.0.1:{upstream}",
                                                               "api_key": "sk-ant-upstream-fake"}})
    return models


def lago_env(lago: Child) -> dict[str, str]:
    return {"LAGO_API_BASE": f"http://127.0.0.1:{lago.port}", "LAGO_API_KEY": "lago-bench-key",
            "LAGO_API_EVENT_CODE": "llm_usage", "LAGO_API_CHARGE_BY": "end_user_id"}


def start_llmbill(name: str, upstream: int, database_url: str, workdir: Path,
                  lago_args: list[str] | None = None, anthropic: bool = True, venv: Path | None = None,
                  general: dict[str, Any] | None = None, command: list[str] | None = None) -> System:
    """anthropic=False leaves the Anthropic deployment out (ab_proxy.py on a revision without it);
    venv: whose llmbill-proxy runs (another interpreter's, ab_proxy.py --venv-b), .venv by default;
    general: more general_settings (llmbill-sqlite-nopoll's idle_poll_us); command: what starts the
    proxy instead of llmbill-proxy, given the same arguments (request_steps.py's instrumented one)."""
    lago = Child(f"{name} fake_lago", [str(BIN / "fake_lago"), *(lago_args or [])], port_from_stdout=True)
    config = {"model_list": model_list(upstream, anthropic), "litellm_settings": {"callbacks": ["lago"]},
              "general_settings": {"master_key": MASTER, "database_url": database_url, **(general or {})}}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "LLMBILL_", "DATABASE_URL"))}
    env.update(lago_env(lago), LLMBILL_SPOOL_DIR=str(workdir / "spool"))
    exe = command or [str((venv or ROOT / ".venv") / "bin" / "llmbill-proxy")]
    proc = Child(name, [*exe, "--config", str(workdir / "config.yaml"), "--port", str(port), "--host", "127.0.0.1"],
                 env=env, cwd=workdir, log_path=workdir / "proxy.log")
    s = System(name, f"http://127.0.0.1:{port}", "", proc, lago)
    s.startup_s = wait_healthy(s.url, proc, 60)
    status, key = http("POST", s.url + "/key/generate", {"max_budget": 1_000_000, "key_alias": "bench"}, MASTER)
    if status != 200:
        raise RuntimeError(f"{name}: /key/generate → {status} {key}")
    status, body = http("POST", s.url + "/customer/new", {"user_id": CUSTOMER, "max_budget": 1_000_000}, MASTER)
    if status != 200:
        raise RuntimeError(f"{name}: /customer/new → {status} {body}")
    s.auth = f"Bearer {key['key']}"
    s.notes.append("virtual key with max_budget, customer with max_budget, spend to the database, Lago on"
                   + "".join(f"; general_settings.{k}: {v}" for k, v in (general or {}).items()))
    return s


def start_floor(upstream: int, workdir: Path) -> System:
    """bench/floor_proxy.py: llmbill-proxy's server and upstream client with none of its request path."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = Child("floor", [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "bench" / "floor_proxy.py"),
                           "--upstream", f"http://127.0.0.1:{upstream}/v1", "--port", str(port)],
                 cwd=workdir, log_path=workdir / "floor.log")
    s = System("floor", f"http://127.0.0.1:{port}/v1", "", proc)
    s.startup_s = wait_healthy(s.url, proc, 60)
    s.notes.append("the same server and upstream client as llmbill-proxy, no llmbill request path (bench/floor_proxy.py)")
    return s


def start_litellm(exe: str, upstream: int, workdir: Path) -> System:
    lago = Child("litellm fake_lago", [str(BIN / "fake_lago")], port_from_stdout=True)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"model_list": model_list(upstream), "litellm_settings": {"callbacks": ["lago"], "telemetry": False},
              "general_settings": {"master_key": MASTER}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # Quiet access log, as llmbill runs (access_log off): a log line per request is not what is compared.
    (workdir / "log.json").write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "loggers": {"uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
                    "uvicorn.error": {"level": "WARNING"}}}))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "LLMBILL_", "DATABASE_URL"))}
    env.update(lago_env(lago), LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true",
               LITELLM_LOG="ERROR", HOME=str(workdir))
    proc = Child("litellm", [exe, "--config", str(workdir / "config.yaml"), "--port", str(port), "--host", "127.0.0.1",
                             "--num_workers", "1", "--log_config", str(workdir / "log.json")],
                 env=env, cwd=workdir, log_path=workdir / "litellm.log")
    s = System("litellm", f"http://127.0.0.1:{port}", f"Bearer {MASTER}", proc, lago)
    s.startup_s = wait_healthy(s.url, proc, 240)
    s.notes.append("database-less: master key, customer by `user`, Lago callback on; no virtual key, no budgets")
    return s


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_pids(port: int) -> list[int]:
    """The postmaster listening on `port` (its command line has -p PORT) and its children."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and b"-p" in argv:
            i = argv.index(b"-p")
            if i + 1 < len(argv) and argv[i + 1] == str(port).encode():
                return children(int(entry))
    return []


TCP_COUNTERS = ("RetransSegs", "TCPTimeouts", "TCPSpuriousRtxHostQueues", "TCPLossProbes")


def tcp_counters() -> dict[str, int]:
    """The machine's TCP counters (/proc/net/snmp and netstat: pairs of name and value lines). A
    retransmission timeout on loopback is a call that waits 200 ms or more (the minimum RTO) whatever
    the proxy does; TCPSpuriousRtxHostQueues counts those whose first copy was still queued in this
    host when the timer fired (the kernel had not delivered it yet)."""
    found: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for names, values in zip(lines[::2], lines[1::2]):
            if names.split(":")[0] in ("Tcp", "TcpExt"):
                for name, value in zip(names.split()[1:], values.split()[1:]):
                    if name in TCP_COUNTERS:
                        found[name] = int(value)
    return found


# ---- one measured point ----------------------------------------------------------------------------

def wrk(url: str, auth: str, body_file: Path, conns: int, seconds: float, out: Path,
        path: str = "/chat/completions") -> dict[str, Any]:
    env = dict(os.environ, WRK_BODY_FILE=str(body_file), WRK_AUTH=auth, WRK_OUT=str(out))
    out.unlink(missing_ok=True)
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "120s", "-s",
            str(ROOT / "bench" / "wrk_post.lua"), url + path]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()} {done.stdout.strip()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def settle(s: System, limit: float = 60.0) -> float:
    """Waits until the system's processes are idle (under 5 % of a core over 0.25 s): a slow proxy keeps
    working through the requests still queued when wrk stopped, and must not do so during the next point."""
    if s.proc is None:
        return 0.0
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = cpu_seconds(s.pids())
        time.sleep(0.25)
        if cpu_seconds(s.pids()) - before < 0.0125:
            break
    return time.monotonic() - start


def point_seconds(s: System, conns: int, seconds: float) -> float:
    """The point's length: `seconds`, or longer for a system too slow to serve every connection twice in
    that time (its first replies would come after the point ended): 2 x connections / its warm-up rate."""
    if s.warm_rps <= 0:
        return seconds
    return min(60.0, max(seconds, 2 * conns / s.warm_rps))


def measure(s: System, mode: str, conns: int, seconds: float, tmp: Path, body_file: Path) -> dict[str, Any]:
    seconds = point_seconds(s, conns, seconds)
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    pids = s.pids() if s.proc else []
    db = s.db_pids() if s.db_pids else []
    cpu0, db0, tcp0, t0 = cpu_seconds(pids), cpu_seconds(db), tcp_counters(), time.monotonic()
    r = wrk(s.url, s.auth, body_file, conns, seconds, tmp / "wrk.json", endpoint(s, mode))
    wall = time.monotonic() - t0
    tcp1 = tcp_counters()
    pids = s.pids() if s.proc else []
    cpu = cpu_seconds(pids) - cpu0
    db_cpu = cpu_seconds(db) - db0 if db else None
    n = r["requests"]
    errors = sum(r["errors"].values())
    s.served += n - r["errors"]["status"]
    point = {
        "system": s.name, "mode": mode, "concurrency": conns, "requests": n,
        "rps": n / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        "p50_ms": r["latency_us"]["p50"] / 1000, "p90_ms": r["latency_us"]["p90"] / 1000,
        "p99_ms": r["latency_us"]["p99"] / 1000, "p99_9_ms": r["latency_us"]["p99_9"] / 1000,
        "max_ms": r["latency_us"]["max"] / 1000, "errors": errors, "error_detail": r["errors"],
        "cpu_s": cpu if s.proc else None, "cpu_ms_per_req": cpu * 1000 / n if s.proc and n else None,
        "wall_s": wall, "seconds": seconds,
        "db_cpu_ms_per_req": db_cpu * 1000 / n if db_cpu is not None and n else None,
        "rss_mb": status_kb(pids, "VmRSS") / 1024 if s.proc else None,
        "peak_rss_mb": status_kb(pids, "VmHWM") / 1024 if s.proc else None,
        "load1": load1,  # the machine's 1-minute load average as the point began (2 cores, shared)
        # the machine's TCP retransmissions during the point (any process's; see tcp_counters)
        "tcp": {k: tcp1[k] - tcp0.get(k, 0) for k in tcp1 if tcp1[k] != tcp0.get(k, 0)},
    }
    return point


# ---- the run ---------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="2 s per point instead of 10, chat mode only")
    ap.add_argument("--duration", type=float, help="seconds per point")
    ap.add_argument("--concurrency", default="1,8,64,256")
    ap.add_argument("--systems", default="direct,llmbill-sqlite,llmbill-pg,litellm")
    ap.add_argument("--modes", help="of " + ",".join(MODES) + " (default: all; with --quick those without a stream)")
    ap.add_argument("--anthropic-concurrency",
                    help="the concurrencies of the Anthropic modes (default: the whole ladder with --quick, else 1,64)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the ladder; the points carry their round")
    ap.add_argument("--litellm", default=str(ROOT / "build" / "bench-litellm-venv" / "bin" / "litellm"),
                    help="the litellm CLI of a venv with litellm[proxy]")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = ap.parse_args()
    seconds = args.duration or (2.0 if args.quick else 10.0)
    ladder = [int(c) for c in args.concurrency.split(",")]
    wanted = args.systems.split(",")
    modes = args.modes.split(",") if args.modes else [m for m in MODES if not (args.quick and "stream" in m)]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"proxy_bench: unknown modes {unknown} (of {', '.join(MODES)})")
    anthropic_ladder = ([int(c) for c in args.anthropic_concurrency.split(",")] if args.anthropic_concurrency
                        else ladder if args.quick else [1, 64])
    if shutil.which("wrk") is None:
        raise SystemExit("proxy_bench: wrk not found (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="llmbill-proxy-bench-"))
    systems: list[System] = []
    pg_stop = None
    result: dict[str, Any] = {"seconds_per_point": seconds, "concurrency": ladder, "modes": modes, "points": [],
                              "rounds": args.rounds, "anthropic_concurrency": anthropic_ladder, "cpus": os.cpu_count(),
                              "systems": {}, "errors": [], "load_generator": "wrk 4.1 -t1 --timeout 120s, keep-alive, POST"}
    try:
        upstream = Child("fake_openai", [str(BIN / "fake_openai")], port_from_stdout=True)
        result["upstream"] = ("bench/fake_openai.cpp (C++ epoll, one thread, fixed reply with usage; 8-chunk SSE stream; "
                              "the same on Anthropic's /v1/messages)")
        systems.append(System("direct", f"http://127.0.0.1:{upstream.port}/v1", ""))
        if "floor" in wanted:
            log("starting the floor pass-through")
            systems.append(start_floor(upstream.port, work / "floor"))
        if "llmbill-sqlite" in wanted:
            log("starting llmbill-proxy on SQLite")
            systems.append(start_llmbill("llmbill-sqlite", upstream.port, f"sqlite:///{work}/sqlite/llmbill.db",
                                         work / "sqlite"))
        if "llmbill-sqlite-nopoll" in wanted:  # not in the default set: what the default idle polling gains
            log("starting llmbill-proxy on SQLite with idle polling off")
            systems.append(start_llmbill("llmbill-sqlite-nopoll", upstream.port, f"sqlite:///{work}/nopoll/llmbill.db",
                                         work / "nopoll", general={"idle_poll_us": 0}))
        if "llmbill-pg" in wanted:
            from pg import create_database, start_postgres

            log("starting PostgreSQL and llmbill-proxy on it")
            url, pg_stop = start_postgres()
            db_url = create_database(url, "llmbill_bench")
            pg_port = int(url.rsplit(":", 1)[1].split("/")[0])
            s = start_llmbill("llmbill-pg", upstream.port, db_url, work / "pg")
            s.db_pids = lambda: postgres_pids(pg_port)
            systems.append(s)
        if "litellm" in wanted:
            if not os.access(args.litellm, os.X_OK):
                result["errors"].append(f"litellm: {args.litellm} not found (bench/run creates it)")
            else:
                log("starting LiteLLM's proxy (its import takes a while)")
                systems.append(start_litellm(os.path.abspath(args.litellm), upstream.port, work / "litellm"))
        for s in systems:
            if s.proc is not None:
                s.idle_rss_mb = status_kb(s.pids(), "VmRSS") / 1024
        bodies = {}
        for mode in modes:  # one request body file per shape
            bodies[mode] = work / f"{mode}.json"
            bodies[mode].write_text(json.dumps(BODIES[mode]))
        # Warm-up: the first calls of a process pay imports, caches, connection pools.
        for s in systems:
            for mode in modes:
                if not serves(s.name, mode):
                    continue
                w = wrk(s.url, s.auth, bodies[mode], 8, 2, work / "warm.json", endpoint(s, mode))
                if MODES[mode].pass_through and (w["requests"] == 0 or sum(w["errors"].values())):
                    # a deployment the proxy cannot reach or translate: say so now, not after the ladder
                    raise RuntimeError(f"{s.name} {mode}: warm-up failed: {w['requests']} requests, {w['errors']}")
                rate = w["requests"] / (w["duration_us"] / 1e6) if w["duration_us"] else 0.0
                # the OpenAI modes size a slow system's points (LiteLLM serves no other)
                if MODES[mode].pass_through is None:
                    s.warm_rps = rate if s.warm_rps == 0 else min(s.warm_rps, rate)
                settle(s)
        for rnd in range(args.rounds):
            for conns in ladder:
                for group in mode_groups(modes):
                    # direct's routes first, then each proxy: its OpenAI mode and right after it the
                    # Anthropic modes read against it
                    for s in systems:
                        for mode in group:
                            if not serves(s.name, mode) or (MODES[mode].pass_through and conns not in anthropic_ladder):
                                continue
                            p = measure(s, mode, conns, seconds, work, bodies[mode])
                            p["settle_s"] = settle(s)
                            p["round"] = rnd
                            result["points"].append(p)
                            log(f"{mode:16} c={conns:<3} {s.name:15} {p['rps']:9,.0f} req/s  p50 {p['p50_ms']:8.3f} ms  "
                                f"p99 {p['p99_ms']:8.2f} ms  errors {p['errors']}  load {p['load1']:.1f}"
                                + (f"  TCP timeouts {p['tcp']['TCPTimeouts']}" if p["tcp"].get("TCPTimeouts") else ""))
                            if p["errors"]:
                                result["errors"].append(f"{s.name} {mode} c={conns}: {p['error_detail']}")
                            if p["requests"] == 0:
                                result["errors"].append(f"{s.name} {mode} c={conns}: no request completed in "
                                                        f"{p['seconds']:.0f} s")
        for s in systems:
            info: dict[str, Any] = {"startup_s": round(s.startup_s, 2), "notes": s.notes, "served": s.served}
            if s.proc is not None:
                info["peak_rss_mb"] = status_kb(s.pids(), "VmHWM") / 1024
                info["idle_rss_mb"] = s.idle_rss_mb
            result["systems"][s.name] = info
        # Billing check: every served call produced one Lago event, once the proxy has stopped cleanly.
        for s in systems:
            if s.proc is None or s.lago is None:
                continue
            rc = s.proc.stop(60)
            time.sleep(0.5 if s.name.startswith("llmbill") else 2.0)
            _, stats = http("GET", f"http://127.0.0.1:{s.lago.port}/_fake/stats")
            events = int(stats.get("events", -1)) if isinstance(stats, dict) else -1
            warm = 8 * len(modes)  # lower bound of the warm-up's calls (not counted in `served`)
            info = result["systems"][s.name]
            info.update(lago_events=events, exit_code=rc)
            if events < s.served:
                note = f"{s.name}: {events} Lago events for {s.served}+ served calls"
                if s.name.startswith("llmbill"):
                    result["errors"].append(note)
                else:
                    info["notes"].append(note + " (LiteLLM's callback drops or lags events under load)")
            log(f"{s.name}: served {s.served} (+{warm}+ warm-up), Lago events {events}, exit {rc}")
    except Exception as exc:  # a system that cannot start or a wrk that fails: the run is invalid, say why
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        for c in reversed(ALL):
            c.stop(10)
        if pg_stop is not None:
            pg_stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work directory kept: {work}")
    add_baselines(result)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for e in result["errors"]:
        log(f"ERROR: {e}")
    return 1 if result["errors"] else 0


def mode_groups(modes: list[str]) -> list[list[str]]:
    """Each OpenAI mode with the Anthropic modes read against it, in the order given."""
    groups: dict[str, list[str]] = {}
    for m in modes:
        groups.setdefault(MODES[m].pass_through or m, []).append(m)
    return [sorted(g, key=lambda m: MODES[m].pass_through is not None) for g in groups.values()]


def add_baselines(result: dict[str, Any]) -> None:
    """Added latency over the direct path (its mode for this one: MODES[mode].direct) at the same
    concurrency and round, and throughput ratios."""
    def key(p: dict[str, Any], mode: str | None = None) -> tuple[str, int, int]:
        return (mode or p["mode"], p["concurrency"], p.get("round", 0))

    direct = {key(p): p for p in result["points"] if p["system"] == "direct"}
    lite = {key(p): p for p in result["points"] if p["system"] == "litellm"}
    for p in result["points"]:
        d = direct.get(key(p, MODES[p["mode"]].direct))
        if d is not None and p["system"] != "direct":
            p["added_p50_ms"] = p["p50_ms"] - d["p50_ms"]
            p["added_p99_ms"] = p["p99_ms"] - d["p99_ms"]
            p["rps_vs_direct"] = p["rps"] / d["rps"] if d["rps"] else None
        lt = lite.get(key(p))
        if lt is not None and p["system"] != "litellm" and p["system"] != "direct" and lt["rps"]:
            p["rps_vs_litellm"] = p["rps"] / lt["rps"]
            if p.get("cpu_ms_per_req") and lt.get("cpu_ms_per_req"):
                p["cpu_vs_litellm"] = lt["cpu_ms_per_req"] / p["cpu_ms_per_req"]


if __name__ == "__main__":
    sys.exit(main())
