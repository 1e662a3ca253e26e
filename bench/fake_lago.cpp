// A minimal stand-in for Lago's event endpoints, for pipeline_bench and the proxy benchmark: one
// thread, the epoll loop of http_responder.hpp (keep-alive, TCP_NODELAY, one send() per reply).
//
//   POST /api/v1/events/batch   200 {"events_received":N}; 401 on a wrong Bearer key (when --api-key is
//                               given); 422 no_events / too_many_events (> 100) as Lago does
//   POST /api/v1/events         one event (what LiteLLM's Lago callback sends): 200, counted as 1
//   GET  /api/v1/billable_metrics/CODE   200 with that code (llmbill-proxy checks its event codes at start)
//   GET  /_fake/stats           {"requests":R,"events":E}: what it has accepted, for cross-checks
//   GET  /_fake/wait?...        {"events":E} at once (the Python fake's form waits for a count)
//   POST /_fake/reset           zeroes both counters
//                               (both routes as in the test suite's fake, tests/python/fakes/lago.py)
//   anything else               404
//
// Events are counted by their "transaction_id" keys, not parsed: this fake measures the sender, it
// does not validate events (the strict fake Lago of the test suite does that). With --ids FILE it
// also appends every accepted event's transaction_id to FILE, one a line, flushed per request
// (stream_bench.py checks each stream was billed exactly once). Prints the port it listens on as the
// first line of stdout.
//
//   fake_lago [--port N] [--api-key K] [--ids FILE]      (port 0, the default, picks a free one)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "http_responder.hpp"

namespace {

using llmbill::bench::http::Request;
using llmbill::bench::http::response;

std::uint64_t g_requests = 0;
std::uint64_t g_events = 0;
std::string g_api_key;
std::FILE* g_ids = nullptr;

std::size_t count_events(std::string_view body) {
  std::size_t n = 0;
  for (std::size_t at = body.find("\"transaction_id\""); at != std::string_view::npos;
       at = body.find("\"transaction_id\"", at + 16)) {
    ++n;
  }
  return n;
}

// Appends the value of every "transaction_id" in the body to g_ids, one a line.
void write_ids(std::string_view body) {
  constexpr std::string_view key = "\"transaction_id\":\"";
  for (std::size_t at = body.find(key); at != std::string_view::npos; at = body.find(key, at)) {
    at += key.size();
    const std::size_t end = body.find('"', at);
    if (end == std::string_view::npos) break;
    std::fwrite(body.data() + at, 1, end - at, g_ids);
    std::fputc('\n', g_ids);
  }
  std::fflush(g_ids);
}

std::string handle(const Request& r) {
  ++g_requests;
  const bool close = r.close;
  if (r.method == "GET" && r.target == "/_fake/stats") {
    return response(200, "OK",
                    "{\"requests\":" + std::to_string(g_requests) + ",\"events\":" + std::to_string(g_events) + "}",
                    close);
  }
  if (r.method == "GET" && r.target.starts_with("/_fake/wait")) {  // never waits: counts only
    return response(200, "OK", "{\"events\":" + std::to_string(g_events) + "}", close);
  }
  if (r.method == "POST" && r.target == "/_fake/reset") {
    g_requests = g_events = 0;
    return response(200, "OK", "{}", close);
  }
  if (r.method == "GET" && r.target.starts_with("/api/v1/billable_metrics/")) {
    const std::string_view code = r.target.substr(25);
    return response(200, "OK",
                    "{\"billable_metric\":{\"code\":\"" + std::string(code) +
                        "\",\"name\":\"bench\",\"aggregation_type\":\"sum_agg\",\"field_name\":\"total_tokens\"}}",
                    close);
  }
  const bool batch = r.target == "/api/v1/events/batch";
  if (r.method != "POST" || !(batch || r.target == "/api/v1/events")) {
    return response(404, "Not Found", R"({"status":404,"error":"Not Found","code":"resource_not_found"})", close);
  }
  if (!g_api_key.empty() && r.authorization != "Bearer " + g_api_key) {
    return response(401, "Unauthorized", R"({"status":401,"error":"Unauthorized"})", close);
  }
  const std::size_t n = count_events(r.body);
  if (n == 0 || n > (batch ? 100u : 1u)) {
    return response(422, "Unprocessable Entity",
                    std::string(R"({"status":422,"error":"Unprocessable Entity","code":"validation_errors",)") +
                        R"("error_details":{"events":[")" + (n == 0 ? "no_events" : "too_many_events") + "\"]}}",
                    close);
  }
  g_events += n;
  if (g_ids != nullptr) write_ids(r.body);
  if (!batch) return response(200, "OK", "{\"event\":{}}", close);
  return response(200, "OK", "{\"events_received\":" + std::to_string(n) + "}", close);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--api-key") == 0) g_api_key = argv[i + 1];
    else if (std::strcmp(argv[i], "--ids") == 0) {
      g_ids = std::fopen(argv[i + 1], "a");
      if (g_ids == nullptr) {
        std::perror(argv[i + 1]);
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: fake_lago [--port N] [--api-key K] [--ids FILE]\n");
      return 2;
    }
  }
  const int listener = llmbill::bench::http::listen_on(port);
  if (listener < 0) return 1;
  std::printf("%d\n", llmbill::bench::http::port_of(listener));
  std::fflush(stdout);
  llmbill::bench::http::serve_forever(listener, handle);
}
