// Token usage of one call, normalised to one shape before pricing.
//
// Semantics (../shared/docs/usage-semantics.md): prompt_tokens counts ALL input tokens, cache reads
// and cache writes included; completion_tokens counts ALL output tokens, reasoning included. The
// detail counts are parts of those totals, never additions to them:
//   cached_tokens + cache_creation_tokens <= prompt_tokens, reasoning_tokens <= completion_tokens,
//   cache_creation_1h_tokens <= cache_creation_tokens.
// OpenAI replies already count this way; Anthropic's input_tokens excludes cache reads/writes, so its
// prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens. Anthropic splits
// cache writes by lifetime (`cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`);
// the 1-hour writes have their own, higher price, so they are kept as cache_creation_1h_tokens (the
// 5-minute writes are cache_creation_tokens - cache_creation_1h_tokens). Anthropic's
// `output_tokens_details.thinking_tokens` (a part of output_tokens) becomes reasoning_tokens.
//
// Failure: malformed JSON, negative or non-integer counts, or parts larger than their totals throw
// UsageError; nothing here crashes on hostile input.
// Thread safety: plain values and free functions; SseUsageScanner is one object per stream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace llmbill {

namespace detail {
// Anthropic's counts as reported, before they become a Usage: a stream reports them piecewise
// (message_start, then cumulative message_delta events), so the scanner keeps the raw fields.
struct AnthropicCounts {
  std::int64_t input = 0;
  std::int64_t cache_read = 0;
  std::optional<std::int64_t> cache_creation;  // cache_creation_input_tokens, when reported
  std::optional<std::int64_t> write_5m;        // cache_creation.ephemeral_5m_input_tokens
  std::optional<std::int64_t> write_1h;        // cache_creation.ephemeral_1h_input_tokens
  std::int64_t output = 0;
  std::int64_t thinking = 0;  // output_tokens_details.thinking_tokens
};
}  // namespace detail

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t cache_creation_tokens = 0;
  std::int64_t cache_creation_1h_tokens = 0;  // the 1-hour cache writes among cache_creation_tokens
  std::int64_t reasoning_tokens = 0;
  bool estimated = false;  // counted by llmbill, not reported by the provider

  std::int64_t total_tokens() const { return prompt_tokens + completion_tokens; }
  void validate() const;  // throws UsageError when the invariants above do not hold
  bool operator==(const Usage&) const = default;
};

// A usage object (OpenAI `usage` or Anthropic `usage`) or a whole response that holds one under
// "usage". Recognised shapes: OpenAI chat/completions/embeddings (prompt_tokens, completion_tokens,
// prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens), OpenAI Responses
// (input_tokens/output_tokens with *_details), Anthropic messages (input_tokens, output_tokens,
// cache_read_input_tokens, cache_creation_input_tokens, cache_creation.ephemeral_{5m,1h}_input_tokens,
// output_tokens_details.thinking_tokens). Throws UsageError for anything else.
Usage usage_from_json(const nlohmann::json& value);
Usage usage_from_response(std::string_view body);  // parses JSON text, then as above

// Reads the usage out of a whole server-sent-events body: OpenAI's final usage chunk
// (`choices: []`, `usage: {...}`) or Anthropic's message_start + message_delta events.
// Throws UsageError when the stream carries no usage.
Usage usage_from_sse(std::string_view stream);

// Incremental form for a proxy that passes a stream through: feed bytes as they arrive (any split,
// even mid-line); usage() is set once a usage-bearing event has been seen. Lines end in \n or \r\n;
// each `data:` line is one JSON event. Memory is bounded: at most one partial line (16 MiB) is held.
// Throws UsageError for a parsed data line (see below) that is not JSON or holds bad counts, and for
// a line over 16 MiB; the bad line is dropped, the rest of `bytes` is still read, and the scanner
// stays usable.
// Only data lines that could change the state are parsed, which are those that contain
//   - the text `"usage"` NOT followed by optional whitespace, `:`, optional whitespace and `null`
//     (usage is only read from a "usage" member that is an object, so a null one changes nothing), or
//   - the text `"message_start"` (a message_start without message.usage must still throw), or
//   - a \u escape of a character in U+0050..U+007F (an escaped key could spell "usage").
// Any other data line (most chunks of a stream) is not parsed and so NOT validated: it never throws,
// even when it is not JSON. Billing loses nothing: such a line could not have carried usage, and the
// callers pass a malformed event through either way. It still resets last_event_was_usage_only().
// The longest line of an event stream that any reader here holds in memory (the scanner, the relay,
// the translated stream: one bound, so a hostile upstream meets the same limit everywhere).
inline constexpr std::size_t kMaxSseLineBytes = std::size_t{16} << 20;  // 16 MiB

class SseUsageScanner {
 public:
  void feed(std::string_view bytes);
  const std::optional<Usage>& usage() const { return usage_; }
  // True when the chunk whose `data:` line was last completed carried usage and no choices: the
  // proxy strips such a chunk for clients that did not ask for usage.
  bool last_event_was_usage_only() const { return last_usage_only_; }

 private:
  void handle_line(std::string_view line);
  std::string pending_;
  std::optional<Usage> usage_;
  std::optional<detail::AnthropicCounts> anthropic_;  // accumulates message_start + message_delta
  bool last_usage_only_ = false;
  bool discarding_ = false;  // skipping the rest of an over-long line
};

}  // namespace llmbill
