// A timed streaming upstream for scenario 4 (bench/stream_bench.py): an OpenAI-compatible
// /chat/completions that streams its reply the way a model does, one content chunk every interval,
// so that a thousand streams can be held open at once by one thread. Each request says how it wants
// to be streamed in its own body (the proxy forwards fields it does not know, so the same body works
// on the direct path and through the proxy):
//
//   "bench_chunks": N         content chunks (default --chunks, 40)
//   "bench_interval_ms": MS   between two content chunks (default --interval-ms, 100)
//
// Chunk k is sent at start + k * interval (an absolute schedule: a late send does not push the next
// one back), chunk 0 together with the response head and the role event, the last one together with
// the finish event, the usage event (12 prompt tokens, N completion tokens) and [DONE]. Keep-alive:
// a connection serves its next request once its stream has ended.
//
// How late the fake itself sends is measured and reported, so a run can show the upstream was not
// the limit: GET /_fake/stats → {"requests","streams","open","late_p50_us","late_p99_us","late_max_us"}
// (lateness = when a chunk was written − when it was due); POST /_fake/reset zeroes them.
//
//   fake_stream [--port N] [--chunks N] [--interval-ms MS]   (prints the port it listens on first)
//
// One epoll thread, a timerfd armed at the earliest due chunk (TFD_TIMER_ABSTIME, so no millisecond
// rounding of epoll_wait's timeout), TCP_NODELAY, one send() per chunk.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http_responder.hpp"

namespace {

namespace http = llmbill::bench::http;

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Lateness of every chunk written, in 10 µs buckets up to 1 s (the last bucket holds the rest).
struct Lateness {
  std::array<std::uint64_t, 100'001> buckets{};
  std::uint64_t count = 0;
  std::int64_t max_ns = 0;

  void add(std::int64_t ns) {
    ns = std::max<std::int64_t>(ns, 0);
    ++buckets[static_cast<std::size_t>(std::min<std::int64_t>(ns / 10'000, 100'000))];
    ++count;
    max_ns = std::max(max_ns, ns);
  }
  double percentile_us(double p) const {
    if (count == 0) return 0;
    const auto want = static_cast<std::uint64_t>(p * static_cast<double>(count - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      seen += buckets[i];
      if (seen >= want) return static_cast<double>(i) * 10.0;
    }
    return static_cast<double>(max_ns) / 1000.0;
  }
};

struct Stream {
  int chunks = 0;
  int next = 0;  // the next chunk to write
  std::int64_t start_ns = 0;
  std::int64_t interval_ns = 0;
};

struct Connection {
  std::string in;
  std::string out;
  bool streaming = false;
  bool close_after = false;  // the client sent Connection: close
  bool watching_out = false;
  std::uint64_t generation = 0;  // tells a due entry of a closed (and reused) fd from a live one
  Stream stream;
};

struct Due {
  std::int64_t at_ns;
  int fd;
  std::uint64_t generation;
  bool operator>(const Due& o) const { return at_ns > o.at_ns; }
};

int g_default_chunks = 40;
int g_default_interval_ms = 100;
std::uint64_t g_requests = 0, g_streams = 0, g_generation = 0;
std::int64_t g_open = 0;
Lateness g_late;
std::unordered_map<int, Connection> g_conns;
std::priority_queue<Due, std::vector<Due>, std::greater<>> g_due;

constexpr std::string_view kHead =
    R"({"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",)"
    R"("system_fingerprint":"fp_bench","choices":)";

void put_event(std::string& out, std::string_view json) {
  const std::string event = "data: " + std::string(json) + "\n\n";
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", event.size());
  out += size;
  out += event;
  out += "\r\n";
}

void put_content(std::string& out, int k) {
  put_event(out, std::string(kHead) + R"([{"index":0,"delta":{"content":"tok)" + std::to_string(k) +
                     R"( "},"finish_reason":null}]})");
}

void put_end(std::string& out, int chunks) {
  put_event(out, std::string(kHead) + R"([{"index":0,"delta":{},"finish_reason":"stop"}]})");
  put_event(out, std::string(kHead) + R"([],"usage":{"prompt_tokens":12,"completion_tokens":)" +
                     std::to_string(chunks) + R"(,"total_tokens":)" + std::to_string(12 + chunks) + "}}");
  put_event(out, "[DONE]");
  out += "0\r\n\r\n";
}

// The integer after "name": in a JSON body, or `fallback`.
int int_field(std::string_view body, std::string_view name, int fallback) {
  std::string key(1, '"');  // appended, not "\"" + name: GCC 12 -O3 warns falsely (-Wrestrict) on that
  key += name;
  key += '"';
  std::size_t at = body.find(key);
  if (at == std::string_view::npos) return fallback;
  at += key.size();
  while (at < body.size() && (body[at] == ' ' || body[at] == ':')) ++at;
  int value = fallback;
  const auto [ptr, ec] = std::from_chars(body.data() + at, body.data() + body.size(), value);
  return ec == std::errc() && value >= 0 ? value : fallback;
}

bool wants_stream(std::string_view body) {
  for (std::size_t at = body.find("\"stream\""); at != std::string_view::npos; at = body.find("\"stream\"", at + 8)) {
    std::size_t v = at + 8;
    while (v < body.size() && (body[v] == ' ' || body[v] == ':')) ++v;
    if (body.substr(v, 4) == "true") return true;
  }
  return false;
}

std::string stats_json() {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                R"({"requests":%llu,"streams":%llu,"open":%lld,"chunks":%llu,"late_p50_us":%.0f,"late_p99_us":%.0f,"late_max_us":%.0f})",
                static_cast<unsigned long long>(g_requests), static_cast<unsigned long long>(g_streams),
                static_cast<long long>(g_open), static_cast<unsigned long long>(g_late.count),
                g_late.percentile_us(0.5), g_late.percentile_us(0.99), static_cast<double>(g_late.max_ns) / 1000.0);
  return buf;
}

// Writes the chunk that is due on `c` (and schedules the next one).
void write_chunk(int fd, Connection& c, std::int64_t now) {
  Stream& s = c.stream;
  if (s.next > 0) g_late.add(now - (s.start_ns + s.next * s.interval_ns));  // chunk 0 is written on arrival
  if (s.next == 0) {
    c.out += "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n";
    c.out += c.close_after ? "Connection: close\r\n" : "";
    c.out += "Transfer-Encoding: chunked\r\n\r\n";
    put_event(c.out, std::string(kHead) + R"([{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})");
  }
  if (s.next < s.chunks) put_content(c.out, s.next);
  ++s.next;
  if (s.next >= s.chunks) {
    put_end(c.out, s.chunks);
    c.streaming = false;
    --g_open;
    return;
  }
  g_due.push({s.start_ns + s.next * s.interval_ns, fd, c.generation});
}

// Handles the complete requests at the front of c.in until one starts a stream; false: close.
bool serve(int fd, Connection& c) {
  while (!c.streaming) {
    const std::size_t head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return c.in.size() < (1u << 20);
    const std::string_view head(c.in.data(), head_end);
    std::size_t line_end = head.find("\r\n");
    const std::string_view request_line = head.substr(0, line_end);
    const std::size_t sp1 = request_line.find(' ');
    const std::size_t sp2 = request_line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return false;
    const std::string method(request_line.substr(0, sp1));
    std::string target(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
    std::size_t length = 0;
    bool close = false;
    while (line_end != std::string_view::npos && line_end < head.size()) {
      const std::size_t next = head.find("\r\n", line_end + 2);
      const std::string_view line =
          head.substr(line_end + 2, (next == std::string_view::npos ? head.size() : next) - line_end - 2);
      if (http::detail::iequals_prefix(line, "content-length:")) {
        length = std::strtoull(std::string(http::detail::trim(line.substr(15))).c_str(), nullptr, 10);
      }
      if (http::detail::iequals_prefix(line, "connection:") && http::detail::trim(line.substr(11)) == "close") close = true;
      line_end = next;
    }
    const std::size_t total = head_end + 4 + length;
    if (c.in.size() < total) return true;  // body still arriving
    const std::string body = c.in.substr(head_end + 4, length);
    c.in.erase(0, total);
    ++g_requests;
    c.close_after = close;
    if (const std::size_t q = target.find('?'); q != std::string::npos) target.resize(q);
    if (method == "GET" && target == "/_fake/stats") {
      c.out += http::response(200, "OK", stats_json(), close);
    } else if (method == "POST" && target == "/_fake/reset") {
      g_requests = g_streams = 0;
      g_late = Lateness{};
      c.out += http::response(200, "OK", "{}", close);
    } else if (method == "POST" && target.ends_with("/chat/completions") && wants_stream(body)) {
      ++g_streams;
      ++g_open;
      c.streaming = true;
      c.stream = Stream{std::max(1, int_field(body, "bench_chunks", g_default_chunks)), 0, now_ns(),
                        static_cast<std::int64_t>(int_field(body, "bench_interval_ms", g_default_interval_ms)) * 1'000'000};
      write_chunk(fd, c, c.stream.start_ns);
    } else if (method == "POST" && target.ends_with("/chat/completions")) {
      c.out += http::response(200, "OK",
                              R"({"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",)"
                              R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],)"
                              R"("usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}})",
                              close);
    } else {
      c.out += http::response(404, "Not Found", R"({"error":{"message":"not found","type":"invalid_request_error"}})", close);
    }
    if (close) return false;
  }
  return true;
}

void drop(int ep, int fd) {
  auto it = g_conns.find(fd);
  if (it != g_conns.end() && it->second.streaming) --g_open;
  ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  g_conns.erase(fd);
}

// Writes what it can of c.out and keeps EPOLLOUT registered only while some is left; false: drop it.
bool flush(int ep, int fd, Connection& c) {
  std::size_t sent = 0;
  while (sent < c.out.size()) {
    const ssize_t n = ::send(fd, c.out.data() + sent, c.out.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  c.out.erase(0, sent);
  if (c.watching_out != !c.out.empty()) {
    c.watching_out = !c.out.empty();
    epoll_event ev{};
    ev.events = EPOLLIN | (c.watching_out ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  }
  return true;
}

void arm(int timer) {
  itimerspec when{};
  if (!g_due.empty()) {
    const std::int64_t at = std::max<std::int64_t>(g_due.top().at_ns, 1);
    when.it_value.tv_sec = static_cast<time_t>(at / 1'000'000'000);
    when.it_value.tv_nsec = static_cast<long>(at % 1'000'000'000);
  }
  ::timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, nullptr);  // all zero: disarmed
}

// Reads what the client sent and serves it; false when the connection is to be dropped.
bool on_readable(int ep, int fd, Connection& c) {
  static char buf[1 << 16];
  bool keep = true;
  while (true) {
    const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r > 0) {
      c.in.append(buf, static_cast<std::size_t>(r));
      continue;
    }
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) keep = false;
    break;
  }
  if (!serve(fd, c)) c.close_after = true;
  if (!flush(ep, fd, c)) return false;
  // A client gone mid-stream is dropped at once; a Connection: close one once its reply is out.
  if (!keep) return false;
  return !(c.close_after && !c.streaming && c.out.empty());
}

void on_timer(int ep, int timer) {
  std::uint64_t expirations = 0;
  [[maybe_unused]] const ssize_t r = ::read(timer, &expirations, sizeof expirations);
  const std::int64_t now = now_ns();
  while (!g_due.empty() && g_due.top().at_ns <= now) {
    const Due d = g_due.top();
    g_due.pop();
    auto it = g_conns.find(d.fd);
    if (it == g_conns.end() || it->second.generation != d.generation || !it->second.streaming) continue;
    Connection& c = it->second;
    write_chunk(d.fd, c, now);
    bool keep = true;
    if (!c.streaming) {  // stream ended: serve a request that may have arrived meanwhile
      if (!serve(d.fd, c)) c.close_after = true;
      keep = !(c.close_after && !c.streaming);
    }
    if (!flush(ep, d.fd, c) || (!keep && c.out.empty())) drop(ep, d.fd);
  }
  arm(timer);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--chunks") == 0) g_default_chunks = std::max(1, std::atoi(argv[i + 1]));
    else if (std::strcmp(argv[i], "--interval-ms") == 0) g_default_interval_ms = std::max(0, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: fake_stream [--port N] [--chunks N] [--interval-ms MS]\n");
      return 2;
    }
  }
  const int listener = http::listen_on(port);
  if (listener < 0) return 1;
  std::printf("%d\n", http::port_of(listener));
  std::fflush(stdout);

  const int ep = ::epoll_create1(0);
  const int timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  for (const int fd : {listener, timer}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  int one = 1;
  epoll_event events[256];
  while (true) {
    const int n = ::epoll_wait(ep, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    bool rearm = false;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == timer) {
        on_timer(ep, timer);
        continue;
      }
      if (fd == listener) {
        int c;
        while ((c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK)) >= 0) {
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          Connection& conn = g_conns[c];
          conn = Connection{};
          conn.generation = ++g_generation;
        }
        continue;
      }
      auto it = g_conns.find(fd);
      if (it == g_conns.end()) continue;
      Connection& c = it->second;
      const bool was_streaming = c.streaming;
      bool keep = true;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) keep = on_readable(ep, fd, c);
      else keep = flush(ep, fd, c) && !(c.close_after && !c.streaming && c.out.empty());
      if (!was_streaming && c.streaming) rearm = true;  // a new stream's next chunk is now due
      if (!keep) drop(ep, fd);
    }
    if (rearm) arm(timer);
  }
}
