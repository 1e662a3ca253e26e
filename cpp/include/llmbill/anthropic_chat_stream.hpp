// Translating Anthropic's Messages stream into OpenAI chat.completion.chunk events, one read at a
// time, for a client that called /chat/completions on an Anthropic deployment.
//
// Anthropic's events: message_start (the message id; input usage), content_block_start /
// content_block_delta / content_block_stop per block (text_delta, thinking_delta, input_json_delta
// for tool arguments), message_delta (stop_reason, cumulative usage), message_stop, ping, error.
// What the client gets, in OpenAI's order: a first chunk with the role, content / reasoning_content /
// tool_calls deltas, a chunk with the finish_reason (at message_stop); then from finish() the usage
// chunk (`choices: []`) when the client asked for it, and `data: [DONE]`. Bytes may be split
// anywhere: only complete lines are read (LF or CRLF).
//
// Usage comes from an SseUsageScanner fed the very same bytes, the reader a whole reply's usage
// shares its rules with, so a streamed and an unstreamed call of the same tokens bill the same.
//
// Failures end the stream for the client: an `error` event, an event that is not a JSON object (or
// nests deeper than 64 levels), a line or an event over 16 MiB, a stream that ends before
// message_stop. This class only says which
// (`failure()`, and the error event's data); the caller maps it to the client's error (the mapping
// of Anthropic's error types is shared with unstreamed replies, in Python). After a failure, and
// after message_stop, events are no longer translated (usage is still scanned).
//
// Why in C++: the same steps in Python cost ~37 µs a stream for the benchmark's ordinary stream
// (line split, a JSON parse and a JSON write per event); here a read is one call.
//
// Thread safety: one object per stream. Nothing here throws on hostile input.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "llmbill/usage.hpp"

namespace llmbill {

enum class StreamFailure {
  none,
  error_event,       // Anthropic sent an `error` event: failed_event() is its data
  unreadable_event,  // an event whose data is not a JSON object
  line_too_long,     // a line over 16 MiB (dropped: memory stays bounded)
  event_too_long,    // an event's data lines over 16 MiB together
  ended_early,       // finish() before message_stop
};

class AnthropicChatStream {
 public:
  // `model`: the name the client asked for; `created`: the chunks' Unix time; `json_tool`: the name
  // of the forced tool that carries response_format JSON (its input is the reply's content).
  AnthropicChatStream(std::string_view model, bool include_usage, std::int64_t created, std::string_view json_tool);

  // The OpenAI events (`data: {...}\n\n`) that `bytes` completes, appended to `out`.
  void feed(std::string_view bytes, std::vector<std::string>& out);
  // The upstream ended: its unterminated last line and event, then the usage chunk (when asked for)
  // and `data: [DONE]` — or nothing more when the stream failed or ended before message_stop.
  // Once only: a second call adds nothing.
  void finish(std::vector<std::string>& out);

  const std::optional<Usage>& usage() const { return scanner_.usage(); }
  // The first usage the scanner could not read (usage then stops at the last good one).
  const std::optional<std::string>& usage_error() const { return usage_error_; }
  bool complete() const { return stopped_ && failure_ == StreamFailure::none; }
  StreamFailure failure() const { return failure_; }
  const std::string& failed_event() const { return failed_event_; }

 private:
  void scan(std::string_view bytes);
  void line(std::string_view line, std::vector<std::string>& out);
  void event(std::vector<std::string>& out);
  void fail(StreamFailure why);
  void stop(std::vector<std::string>& out);  // message_stop: the finish_reason chunk
  void chunk(std::string_view delta, std::string_view finish_reason, std::vector<std::string>& out) const;
  // A chunk whose delta is {field: text}.
  void text_chunk(std::string_view field, std::string_view text, std::vector<std::string>& out) const;

  SseUsageScanner scanner_;
  std::optional<std::string> usage_error_;
  std::string pending_;  // an incomplete line
  std::string data_;     // the data lines of the event being read, joined by "\n"
  bool has_data_ = false;
  std::string id_;       // the message's id, from message_start
  std::string head_;     // what follows the id in every chunk: object, created, model, up to "choices":
  bool include_usage_;
  std::string json_tool_;
  std::map<std::string, std::int64_t> tools_;  // Anthropic block index → OpenAI tool_calls index
  std::set<std::string> json_blocks_;          // blocks of the response_format tool: their JSON is content
  std::optional<std::string> stop_reason_;     // a string stop_reason; "" for any other non-null value
  bool stopped_ = false;
  bool finished_ = false;
  StreamFailure failure_ = StreamFailure::none;
  std::string failed_event_;
};

// OpenAI's finish_reason for Anthropic's stop_reason (nullopt: none was sent; "" any non-string);
// `tool_use` that carried only the response_format JSON (no tool call reached the client) is "stop".
std::string anthropic_finish_reason(const std::optional<std::string>& stop_reason, bool tool_calls);

}  // namespace llmbill
