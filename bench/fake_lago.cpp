// A minimal stand-in for Lago's batch endpoint, for pipeline_bench: one thread, epoll, HTTP/1.1
// keep-alive, TCP_NODELAY on every connection, each reply written with one send().
//
//   POST /api/v1/events/batch   200 {"events_received":N}; 401 on a wrong Bearer key (when --api-key is
//                               given); 422 no_events / too_many_events (> 100) as Lago does
//   GET  /_fake/stats           {"requests":R,"events":E}: what it has accepted, for cross-checks
//   GET  /_fake/wait?...        {"events":E} at once (the Python fake's form waits for a count)
//   POST /_fake/reset           zeroes both counters
//                               (both routes as in the test suite's fake, tests/python/fakes/lago.py)
//   anything else               404
//
// Events are counted by their "transaction_id" keys, not parsed: this fake measures the sender, it
// does not validate events (the strict fake Lago of the test suite does that). Prints the port it
// listens on as the first line of stdout.
//
//   fake_lago [--port N] [--api-key K]      (port 0, the default, picks a free one)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

struct Connection {
  std::string in;
  std::string out;
  bool watching_out = false;  // EPOLLOUT registered (only while a reply is partly unsent)
};

std::uint64_t g_requests = 0;
std::uint64_t g_events = 0;
std::string g_api_key;

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string response(int status, std::string_view reason, std::string_view body, bool close) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                  "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                  (close ? "\r\nConnection: close" : "") + "\r\n\r\n";
  r += body;
  return r;
}

std::size_t count_events(std::string_view body) {
  std::size_t n = 0;
  for (std::size_t at = body.find("\"transaction_id\""); at != std::string_view::npos;
       at = body.find("\"transaction_id\"", at + 16)) {
    ++n;
  }
  return n;
}

std::string handle(std::string_view method, std::string_view target, std::string_view auth, std::string_view body,
                   bool close) {
  ++g_requests;
  if (method == "GET" && target == "/_fake/stats") {
    return response(200, "OK",
                    "{\"requests\":" + std::to_string(g_requests) + ",\"events\":" + std::to_string(g_events) + "}",
                    close);
  }
  if (method == "GET" && target.starts_with("/_fake/wait")) {  // never waits: counts only
    return response(200, "OK", "{\"events\":" + std::to_string(g_events) + "}", close);
  }
  if (method == "POST" && target == "/_fake/reset") {
    g_requests = g_events = 0;
    return response(200, "OK", "{}", close);
  }
  if (method != "POST" || target != "/api/v1/events/batch") {
    return response(404, "Not Found", R"({"status":404,"error":"Not Found","code":"resource_not_found"})", close);
  }
  if (!g_api_key.empty() && auth != "Bearer " + g_api_key) {
    return response(401, "Unauthorized", R"({"status":401,"error":"Unauthorized"})", close);
  }
  const std::size_t n = count_events(body);
  if (n == 0 || n > 100) {
    return response(422, "Unprocessable Entity",
                    std::string(R"({"status":422,"error":"Unprocessable Entity","code":"validation_errors",)") +
                        R"("error_details":{"events":[")" + (n == 0 ? "no_events" : "too_many_events") + "\"]}}",
                    close);
  }
  g_events += n;
  return response(200, "OK", "{\"events_received\":" + std::to_string(n) + "}", close);
}

// Handles every complete request in c.in; returns false when the connection should close.
bool serve(Connection& c) {
  while (true) {
    const std::size_t head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return c.in.size() < (1u << 20);
    std::string_view head(c.in.data(), head_end);
    std::size_t line_end = head.find("\r\n");
    std::string_view request_line = head.substr(0, line_end);
    std::size_t sp1 = request_line.find(' ');
    std::size_t sp2 = request_line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return false;
    std::string_view method = request_line.substr(0, sp1);
    std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);

    std::size_t length = 0;
    bool close = false;
    std::string_view auth;
    while (line_end != std::string_view::npos && line_end < head.size()) {
      std::size_t next = head.find("\r\n", line_end + 2);
      std::string_view line = head.substr(line_end + 2, (next == std::string_view::npos ? head.size() : next) - line_end - 2);
      if (iequals_prefix(line, "content-length:")) length = std::strtoull(std::string(trim(line.substr(15))).c_str(), nullptr, 10);
      if (iequals_prefix(line, "authorization:")) auth = trim(line.substr(14));
      if (iequals_prefix(line, "connection:") && trim(line.substr(11)) == "close") close = true;
      if (iequals_prefix(line, "transfer-encoding:")) {
        c.out += response(411, "Length Required", "{}", true);
        return false;
      }
      line_end = next;
    }
    const std::size_t total = head_end + 4 + length;
    if (c.in.size() < total) return true;  // body still arriving
    c.out += handle(method, target, auth, std::string_view(c.in).substr(head_end + 4, length), close);
    c.in.erase(0, total);
    if (close) return false;
  }
}

// Writes what it can of c.out; false on a broken connection.
bool drain(int fd, Connection& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c.out.erase(0, static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--api-key") == 0) g_api_key = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: fake_lago [--port N] [--api-key K]\n");
      return 2;
    }
  }
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 1024) != 0) {
    std::perror("fake_lago: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  int ep = ::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  std::unordered_map<int, Connection> conns;
  char buf[1 << 16];
  epoll_event events[64];
  while (true) {
    int n = ::epoll_wait(ep, events, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listener) {
        int c;
        while ((c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK)) >= 0) {
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns[c];
        }
        continue;
      }
      Connection& c = conns[fd];
      bool keep = true;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        while (true) {
          ssize_t r = ::recv(fd, buf, sizeof buf, 0);
          if (r > 0) {
            c.in.append(buf, static_cast<std::size_t>(r));
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) keep = false;
          break;
        }
        if (!serve(c)) keep = false;
      }
      const bool sent = drain(fd, c);
      if (!sent || (!keep && c.out.empty())) {
        ::close(fd);  // also leaves the epoll set
        conns.erase(fd);
        continue;
      }
      if (c.watching_out != !c.out.empty()) {
        c.watching_out = !c.out.empty();
        epoll_event cev{};
        cev.events = EPOLLIN | (c.watching_out ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
        cev.data.fd = fd;
        ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
      }
    }
  }
}
