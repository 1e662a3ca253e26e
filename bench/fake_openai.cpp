// A fast OpenAI-compatible (and Anthropic Messages) upstream for the proxy benchmark
// (bench/proxy_bench.py): it answers every call at once with a fixed reply that carries usage, so what
// a run measures is the proxy in front of it. The epoll loop of http_responder.hpp (keep-alive,
// TCP_NODELAY, one send() per reply); every reply is built once at start.
//
//   POST .../chat/completions   a chat.completion (12 prompt + 7 completion tokens); with "stream":true
//                               in the body, an SSE stream (chunked): a role chunk, --chunks content
//                               chunks, a finish chunk, a usage chunk, [DONE] (usage always sent)
//   POST .../completions        a text_completion;  POST .../embeddings  one 8-float embedding
//   POST .../v1/messages        Anthropic's Messages reply (claude-sonnet-4-5, 12 input + 7 output tokens,
//                               with the cache fields); with "stream":true, Anthropic's SSE sequence
//                               (chunked): message_start, ping, content_block_start, --chunks
//                               content_block_delta, content_block_stop, message_delta (stop_reason and
//                               the cumulative usage), message_stop. Auth headers are not checked
//   POST .../v1/messages/count_tokens   {"input_tokens":12}
//   GET  .../models             one model;  GET /_fake/stats  {"requests":R}
//   anything else               404
//
//   fake_openai [--port N] [--threads T] [--chunks C]   (port 0 picks a free one; prints it first)
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http_responder.hpp"

namespace {

using llmbill::bench::http::Request;
using llmbill::bench::http::response;

constexpr std::string_view kModel = "gpt-4o-mini";
constexpr std::string_view kUsage = R"({"prompt_tokens":12,"completion_tokens":7,"total_tokens":19})";
constexpr std::string_view kClaude = "claude-sonnet-4-5";
// Anthropic's usage object as its replies carry it (cache fields present and zero: no prompt caching).
constexpr std::string_view kClaudeUsage =
    R"({"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,)"
    R"("cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":7,)"
    R"("service_tier":"standard"})";

struct Replies {
  std::string chat, chat_close, stream, stream_close, completion, embedding, models;
  std::string messages, messages_close, messages_stream, messages_stream_close, count_tokens;
};
Replies g;
std::atomic<std::uint64_t> g_requests{0};

std::string chat_body() {
  return std::string(R"({"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":")") +
         std::string(kModel) +
         R"(","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant",)"
         R"("content":"Hello from the fast fake upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":)" +
         std::string(kUsage) + "}";
}

std::string sse_chunk(std::string_view json) {
  std::string event = "data: " + std::string(json) + "\n\n";
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", event.size());
  return size + event + "\r\n";
}

std::string stream_reply(int chunks, bool close) {
  const std::string head = std::string(R"({"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,)") +
                           R"("model":")" + std::string(kModel) + R"(","system_fingerprint":"fp_bench","choices":)";
  std::string r = std::string("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n") +
                  (close ? "Connection: close\r\n" : "") + "Transfer-Encoding: chunked\r\n\r\n";
  r += sse_chunk(head + R"([{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})");
  for (int i = 0; i < chunks; ++i) {
    r += sse_chunk(head + R"([{"index":0,"delta":{"content":"tok)" + std::to_string(i) +
                   R"( "},"finish_reason":null}]})");
  }
  r += sse_chunk(head + R"([{"index":0,"delta":{},"finish_reason":"stop"}]})");
  r += sse_chunk(head + R"([],"usage":)" + std::string(kUsage) + "}");
  r += sse_chunk("[DONE]");
  r += "0\r\n\r\n";
  return r;
}

std::string messages_body() {
  return std::string(R"({"id":"msg_bench","type":"message","role":"assistant","model":")") + std::string(kClaude) +
         R"(","content":[{"type":"text","text":"Hello from the fast fake upstream."}],"stop_reason":"end_turn",)"
         R"("stop_sequence":null,"usage":)" + std::string(kClaudeUsage) + "}";
}

// One SSE event of Anthropic's stream (named by its type), framed as one HTTP chunk.
std::string sse_event(std::string_view type, std::string_view json) {
  std::string event = "event: " + std::string(type) + "\ndata: " + std::string(json) + "\n\n";
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", event.size());
  return size + event + "\r\n";
}

std::string messages_stream_reply(int chunks, bool close) {
  std::string r = std::string("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n") +
                  (close ? "Connection: close\r\n" : "") + "Transfer-Encoding: chunked\r\n\r\n";
  // message_start carries the input side of usage (output_tokens 1 so far), message_delta the totals.
  r += sse_event("message_start",
                 std::string(R"({"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant",)"
                             R"("model":")") + std::string(kClaude) +
                     R"(","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,)"
                     R"("cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":)"
                     R"({"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,)"
                     R"("service_tier":"standard"}}})");
  r += sse_event("ping", R"({"type":"ping"})");
  r += sse_event("content_block_start",
                 R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})");
  for (int i = 0; i < chunks; ++i) {
    r += sse_event("content_block_delta",
                   R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok)" +
                       std::to_string(i) + R"( "}})");
  }
  r += sse_event("content_block_stop", R"({"type":"content_block_stop","index":0})");
  r += sse_event("message_delta",
                 R"({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},)"
                 R"("usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,)"
                 R"("output_tokens":7}})");
  r += sse_event("message_stop", R"({"type":"message_stop"})");
  r += "0\r\n\r\n";
  return r;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  const std::size_t q = s.find('?');
  if (q != std::string_view::npos) s = s.substr(0, q);
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool wants_stream(std::string_view body) {
  for (std::size_t at = body.find("\"stream\""); at != std::string_view::npos; at = body.find("\"stream\"", at + 8)) {
    std::size_t v = at + 8;
    while (v < body.size() && (body[v] == ' ' || body[v] == ':')) ++v;
    if (body.substr(v, 4) == "true") return true;
  }
  return false;
}

std::string handle(const Request& r) {
  g_requests.fetch_add(1, std::memory_order_relaxed);
  if (r.method == "POST" && ends_with(r.target, "/v1/messages")) {
    if (wants_stream(r.body)) return r.close ? g.messages_stream_close : g.messages_stream;
    return r.close ? g.messages_close : g.messages;
  }
  if (r.method == "POST" && ends_with(r.target, "/v1/messages/count_tokens")) return g.count_tokens;
  if (r.method == "POST" && ends_with(r.target, "/chat/completions")) {
    if (wants_stream(r.body)) return r.close ? g.stream_close : g.stream;
    return r.close ? g.chat_close : g.chat;
  }
  if (r.method == "POST" && ends_with(r.target, "/completions")) return g.completion;
  if (r.method == "POST" && ends_with(r.target, "/embeddings")) return g.embedding;
  if (r.method == "GET" && ends_with(r.target, "/models")) return g.models;
  if (r.method == "GET" && r.target == "/_fake/stats") {
    return response(200, "OK", "{\"requests\":" + std::to_string(g_requests.load()) + "}", r.close);
  }
  return response(404, "Not Found", R"({"error":{"message":"not found","type":"invalid_request_error"}})", r.close);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, threads = 1, chunks = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--threads") == 0) threads = std::max(1, std::atoi(argv[i + 1]));
    else if (std::strcmp(argv[i], "--chunks") == 0) chunks = std::max(0, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: fake_openai [--port N] [--threads T] [--chunks C]\n");
      return 2;
    }
  }
  const std::string body = chat_body();
  g.chat = response(200, "OK", body, false);
  g.chat_close = response(200, "OK", body, true);
  g.stream = stream_reply(chunks, false);
  g.stream_close = stream_reply(chunks, true);
  const std::string messages = messages_body();
  g.messages = response(200, "OK", messages, false);
  g.messages_close = response(200, "OK", messages, true);
  g.messages_stream = messages_stream_reply(chunks, false);
  g.messages_stream_close = messages_stream_reply(chunks, true);
  g.count_tokens = response(200, "OK", R"({"input_tokens":12})", false);
  g.completion = response(200, "OK",
                          std::string(R"({"id":"cmpl-bench","object":"text_completion","created":1700000000,"model":")") +
                              std::string(kModel) + R"(","choices":[{"index":0,"text":"Hello.","finish_reason":"stop"}],"usage":)" +
                              std::string(kUsage) + "}",
                          false);
  g.embedding = response(200, "OK",
                         R"({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]}],)"
                         R"("model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}})",
                         false);
  g.models = response(200, "OK", std::string(R"({"object":"list","data":[{"id":")") + std::string(kModel) +
                                     R"(","object":"model","created":1700000000,"owned_by":"bench"}]})",
                      false);

  std::vector<int> listeners;
  const int first = llmbill::bench::http::listen_on(port, threads > 1);
  if (first < 0) return 1;
  port = llmbill::bench::http::port_of(first);
  listeners.push_back(first);
  for (int t = 1; t < threads; ++t) {
    const int l = llmbill::bench::http::listen_on(port, true);
    if (l < 0) return 1;
    listeners.push_back(l);
  }
  std::printf("%d\n", port);
  std::fflush(stdout);
  for (std::size_t t = 1; t < listeners.size(); ++t) {
    std::thread([l = listeners[t]] { llmbill::bench::http::serve_forever(l, handle); }).detach();
  }
  llmbill::bench::http::serve_forever(listeners[0], handle);
}
