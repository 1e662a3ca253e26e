// Relaying a provider's server-sent-event stream that is already in the client's shape (OpenAI's
// chat stream, Anthropic's /v1/messages, the Responses API), one read at a time: the read is cut into
// complete events whatever its boundaries (an event ends at a blank line, "\n\n" or "\r\n\r\n"),
// each event's usage scanned (SseUsageScanner), the model renamed to the name the client asked for,
// the usage-only event dropped for a client that did not ask for it, the data events counted (the
// estimate when a stream never reports usage), and the reply's own id noted (the first data line
// that names one: `id`, `message.id` or `response.id`).
//
// Why in C++: the proxy did these steps per event in Python, a dozen calls an event, ~40 µs for an
// ordinary 12-event stream; here a read is one call.
//
// Failure: a malformed event is passed through unchanged (its usage is simply not read); so is an
// event longer than `max_event_bytes` (16 MiB), as it arrives and unread (no usage, no rename), so
// an upstream that never ends an event costs no memory. Nothing here throws on hostile input.
// Thread safety: one object per stream.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "llmbill/usage.hpp"

namespace llmbill {

class SseEventRelay {
 public:
  // `upstream_model` → `client_model` in every `"model":"…"` of the stream (nothing when equal).
  SseEventRelay(std::string_view upstream_model, std::string_view client_model, bool strip_usage_only,
                std::size_t max_event_bytes = kMaxSseLineBytes);

  // The complete events that `bytes` finishes, ready for the client; empty when none is complete yet.
  std::string feed(std::string_view bytes);
  // What is left when the stream ends (an unterminated last event), as it came; the buffer is emptied.
  std::string tail();

  const std::optional<Usage>& usage() const { return scanner_.usage(); }
  std::int64_t data_events() const { return data_events_; }
  const std::string& response_id() const { return response_id_; }

 private:
  void relay_event(std::string_view event, std::string& out);
  void scan(std::string_view bytes);  // the usage scanner, its errors dropped
  // In an over-long event: passes `bytes` up to its end; returns what follows that end.
  std::string_view pass_long_event(std::string_view bytes, std::string& out);
  void note_id(std::string_view event);

  SseUsageScanner scanner_;
  std::size_t max_event_bytes_;
  std::string buffer_;  // the start of an event not yet complete
  bool passing_ = false;  // inside an event over max_event_bytes_, passed on unread
  std::string pass_tail_;  // the last 3 bytes passed of it: its end may begin there
  std::string rename_from_, rename_to_;
  bool renames_;
  bool strip_usage_only_;
  std::int64_t data_events_ = 0;
  std::string response_id_;
};

// Index just past the first complete event of `buffer` (at its first "\n\n" or "\r\n\r\n", whichever
// ends first), or npos.
std::size_t sse_event_end(std::string_view buffer);

}  // namespace llmbill
