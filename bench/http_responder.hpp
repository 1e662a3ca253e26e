// The HTTP/1.1 server loop shared by the benchmarks' fake servers (fake_lago, fake_openai): epoll,
// keep-alive, TCP_NODELAY on every connection, each reply written with one send() when the socket
// takes it. Requests need a Content-Length body (a chunked request gets 411 and a close).
//
// A Handler turns one parsed request into a complete HTTP response (status line, headers, body).
// serve_forever() runs the loop on the calling thread; with SO_REUSEPORT several threads can each
// run one on the same port (fake_openai --threads N).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace llmbill::bench::http {

struct Request {
  std::string_view method;
  std::string_view target;
  std::string_view authorization;
  std::string_view body;
  bool close = false;  // the client sent Connection: close
};

using Handler = std::function<std::string(const Request&)>;

inline std::string response(int status, std::string_view reason, std::string_view body, bool close,
                            std::string_view content_type = "application/json") {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\nContent-Type: " +
                  std::string(content_type) + "\r\nContent-Length: " + std::to_string(body.size()) +
                  (close ? "\r\nConnection: close" : "") + "\r\n\r\n";
  r += body;
  return r;
}

namespace detail {

struct Connection {
  std::string in;
  std::string out;
  bool watching_out = false;  // EPOLLOUT registered (only while a reply is partly unsent)
};

inline bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  return true;
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Handles every complete request in c.in; returns false when the connection should close.
inline bool serve(Connection& c, const Handler& handler) {
  while (true) {
    const std::size_t head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return c.in.size() < (1u << 20);
    std::string_view head(c.in.data(), head_end);
    std::size_t line_end = head.find("\r\n");
    std::string_view request_line = head.substr(0, line_end);
    std::size_t sp1 = request_line.find(' ');
    std::size_t sp2 = request_line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return false;
    Request req;
    req.method = request_line.substr(0, sp1);
    req.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::size_t length = 0;
    while (line_end != std::string_view::npos && line_end < head.size()) {
      std::size_t next = head.find("\r\n", line_end + 2);
      std::string_view line =
          head.substr(line_end + 2, (next == std::string_view::npos ? head.size() : next) - line_end - 2);
      if (iequals_prefix(line, "content-length:")) {
        length = std::strtoull(std::string(trim(line.substr(15))).c_str(), nullptr, 10);
      }
      if (iequals_prefix(line, "authorization:")) req.authorization = trim(line.substr(14));
      if (iequals_prefix(line, "connection:") && trim(line.substr(11)) == "close") req.close = true;
      if (iequals_prefix(line, "transfer-encoding:")) {
        c.out += response(411, "Length Required", "{}", true);
        return false;
      }
      line_end = next;
    }
    const std::size_t total = head_end + 4 + length;
    if (c.in.size() < total) return true;  // body still arriving
    req.body = std::string_view(c.in).substr(head_end + 4, length);
    c.out += handler(req);
    const bool close = req.close;
    c.in.erase(0, total);
    if (close) return false;
  }
}

// Writes what it can of c.out; false on a broken connection.
inline bool drain(int fd, Connection& c) {
  std::size_t sent = 0;
  while (sent < c.out.size()) {
    ssize_t n = ::send(fd, c.out.data() + sent, c.out.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      c.out.erase(0, sent);
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    sent += static_cast<std::size_t>(n);
  }
  c.out.clear();
  return true;
}

}  // namespace detail

// A non-blocking listener on 127.0.0.1:port (0 picks a free port); -1 on failure (perror'd).
inline int listen_on(int port, bool reuse_port = false) {
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) ::setsockopt(listener, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 4096) != 0) {
    std::perror("bind/listen");
    ::close(listener);
    return -1;
  }
  return listener;
}

inline int port_of(int listener) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// Serves connections accepted on `listener` until the process ends.
[[noreturn]] inline void serve_forever(int listener, const Handler& handler) {
  int one = 1;
  int ep = ::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  std::unordered_map<int, detail::Connection> conns;
  static thread_local char buf[1 << 16];
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
      detail::Connection& c = conns[fd];
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
        if (!detail::serve(c, handler)) keep = false;
      }
      const bool sent = detail::drain(fd, c);
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

}  // namespace llmbill::bench::http
