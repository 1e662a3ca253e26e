// Reading provider usage into one Usage shape (see usage.hpp and docs/usage-semantics.md).
//
// Decisions:
// - Every nlohmann exception is turned into UsageError at the public entry points, and parsing uses
//   allow_exceptions=false, so hostile bodies only ever produce UsageError.
// - Error messages quote input through printable(): ASCII only, truncated, so a message can cross
//   into Python as str even when the body was not UTF-8. Arrays and objects are never dumped
//   (dump() recurses, and a deeply nested value would exhaust the stack).
// - Shape detection: prompt_tokens/completion_tokens is OpenAI chat/completions/embeddings;
//   input_tokens/output_tokens is the Responses API when input_tokens_details or
//   output_tokens_details.reasoning_tokens are present, Anthropic when cache_*_input_tokens,
//   cache_creation or output_tokens_details.thinking_tokens are; a body with both kinds of markers is
//   ambiguous and rejected. Plain input/output counts mean the same in both, so they need no marker.
// - SSE is read line by line; each `data:` line is one JSON document (what OpenAI and Anthropic
//   send). A data line that is not JSON is an error, but the scanner drops that line, reads the
//   rest of the bytes, and only then throws, so it stays usable.
// - A proxy feeds every event of every stream through the scanner, and only a few events per stream
//   carry usage; parsing the others into a DOM was most of the scanner's cost. may_change_state()
//   skips them by text search alone. Those lines are then not validated: a malformed one that could
//   not have carried usage is passed over silently, and the relay passes it through either way.
#include "llmbill/usage.hpp"

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

using json = nlohmann::json;


// ASCII-safe, bounded quotation of untrusted text for error messages.
std::string printable(std::string_view text, std::size_t max = 60) {
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::string: return "string \"" + printable(v.get_ref<const std::string&>()) + "\"";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return printable(v.dump());
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a non-JSON value";
  }
}

std::int64_t count_of(const json& v, const std::string& path) {
  auto bad = [&](const char* why) {
    return UsageError(path + " must be a non-negative integer" + why + ", got " + describe(v));
  };
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) throw bad(" below 2^63");
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) {
    auto i = v.get<std::int64_t>();
    if (i < 0) throw bad("");
    return i;
  }
  if (v.is_number_float()) {
    // Some servers write counts as 12.0; accept a float only when it is exactly an integer.
    double d = v.get<double>();
    if (!std::isfinite(d) || d < 0 || d != std::floor(d)) throw bad("");
    if (d >= 9223372036854775808.0) throw bad(" below 2^63");
    return static_cast<std::int64_t>(d);
  }
  throw bad("");
}

const json* field(const json& obj, const char* name) {  // absent or null -> nullptr
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::int64_t required_count(const json& obj, const char* name, const std::string& prefix) {
  const json* v = field(obj, name);
  if (v == nullptr) throw UsageError(prefix + "." + name + " is missing");
  return count_of(*v, prefix + "." + name);
}

std::int64_t optional_count(const json& obj, const char* name, const std::string& prefix) {
  const json* v = field(obj, name);
  return v == nullptr ? 0 : count_of(*v, prefix + "." + name);
}

// A details object: absent or null is allowed (no parts reported).
const json* details(const json& obj, const char* name, const std::string& prefix) {
  const json* v = field(obj, name);
  if (v != nullptr && !v->is_object()) {
    throw UsageError(prefix + "." + name + " must be an object or null, got " + describe(*v));
  }
  return v;
}

std::int64_t checked_sum(std::int64_t a, std::int64_t b, const std::string& what) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw UsageError(what + " overflows a 64-bit count");
  return r;
}

Usage openai_usage(const json& u, const std::string& prefix) {
  Usage out;
  out.prompt_tokens = required_count(u, "prompt_tokens", prefix);
  out.completion_tokens = optional_count(u, "completion_tokens", prefix);  // absent for embeddings
  if (const json* d = details(u, "prompt_tokens_details", prefix)) {
    out.cached_tokens = optional_count(*d, "cached_tokens", prefix + ".prompt_tokens_details");
  }
  if (const json* d = details(u, "completion_tokens_details", prefix)) {
    out.reasoning_tokens = optional_count(*d, "reasoning_tokens", prefix + ".completion_tokens_details");
  }
  return out;
}

Usage responses_usage(const json& u, const std::string& prefix) {
  Usage out;
  out.prompt_tokens = required_count(u, "input_tokens", prefix);
  out.completion_tokens = optional_count(u, "output_tokens", prefix);
  if (const json* d = details(u, "input_tokens_details", prefix)) {
    out.cached_tokens = optional_count(*d, "cached_tokens", prefix + ".input_tokens_details");
  }
  if (const json* d = details(u, "output_tokens_details", prefix)) {
    out.reasoning_tokens = optional_count(*d, "reasoning_tokens", prefix + ".output_tokens_details");
  }
  return out;
}

bool has(const json& obj, const char* name) { return field(obj, name) != nullptr; }

// True when obj[outer] is an object holding a non-null `inner`.
bool has_inside(const json& obj, const char* outer, const char* inner) {
  const json* v = field(obj, outer);
  return v != nullptr && v->is_object() && has(*v, inner);
}

// Reads the Anthropic fields present in `u` over `c`: a stream's message_delta updates only the
// counts it names (they are cumulative), a whole reply names them all.
void read_anthropic(const json& u, const std::string& prefix, detail::AnthropicCounts& c) {
  if (has(u, "input_tokens")) c.input = required_count(u, "input_tokens", prefix);
  if (has(u, "cache_read_input_tokens")) c.cache_read = required_count(u, "cache_read_input_tokens", prefix);
  if (has(u, "cache_creation_input_tokens")) {
    c.cache_creation = required_count(u, "cache_creation_input_tokens", prefix);
  }
  if (const json* d = details(u, "cache_creation", prefix)) {
    c.write_5m = optional_count(*d, "ephemeral_5m_input_tokens", prefix + ".cache_creation");
    c.write_1h = optional_count(*d, "ephemeral_1h_input_tokens", prefix + ".cache_creation");
  }
  if (has(u, "output_tokens")) c.output = required_count(u, "output_tokens", prefix);
  if (const json* d = details(u, "output_tokens_details", prefix)) {
    c.thinking = optional_count(*d, "thinking_tokens", prefix + ".output_tokens_details");
  }
}

// Anthropic's input_tokens excludes cache reads and writes; both are added to the prompt. The write
// total (cache_creation_input_tokens) is authoritative when reported, and its TTL breakdown must fit
// in it; a breakdown without a total is summed. One function for replies and streams, so the same
// tokens give the same Usage either way.
Usage anthropic_counts_usage(const detail::AnthropicCounts& c, const std::string& prefix) {
  Usage out;
  const bool split = c.write_5m.has_value() || c.write_1h.has_value();
  const std::int64_t parts = checked_sum(c.write_5m.value_or(0), c.write_1h.value_or(0), prefix + ".cache_creation");
  out.cache_creation_tokens = c.cache_creation.value_or(parts);
  if (split && parts > out.cache_creation_tokens) {
    throw UsageError(prefix + ".cache_creation: ephemeral_5m_input_tokens + ephemeral_1h_input_tokens (" +
                     std::to_string(parts) + ") exceed cache_creation_input_tokens (" +
                     std::to_string(out.cache_creation_tokens) + ")");
  }
  out.cache_creation_1h_tokens = c.write_1h.value_or(0);
  out.cached_tokens = c.cache_read;
  out.completion_tokens = c.output;
  out.reasoning_tokens = c.thinking;
  out.prompt_tokens = checked_sum(checked_sum(c.input, c.cache_read, prefix + " prompt"), out.cache_creation_tokens,
                                  prefix + " prompt");
  out.validate();
  return out;
}

Usage anthropic_usage(const json& u, const std::string& prefix) {
  detail::AnthropicCounts c;
  c.input = required_count(u, "input_tokens", prefix);
  read_anthropic(u, prefix, c);
  return anthropic_counts_usage(c, prefix);
}

Usage usage_object(const json& u, const std::string& prefix) {
  if (!u.is_object()) throw UsageError(prefix + " must be an object, got " + describe(u));
  bool openai = u.contains("prompt_tokens") || u.contains("completion_tokens");
  bool input_output = u.contains("input_tokens") || u.contains("output_tokens");
  if (openai && input_output) {
    throw UsageError(prefix + " is ambiguous: it has both prompt_tokens/completion_tokens and "
                     "input_tokens/output_tokens");
  }
  Usage out;
  if (openai) {
    out = openai_usage(u, prefix);
  } else if (input_output) {
    // output_tokens_details is both APIs' name: reasoning_tokens inside marks the Responses API,
    // thinking_tokens marks Anthropic (whose replies may carry it next to cache counts).
    bool responses = has(u, "input_tokens_details") || has_inside(u, "output_tokens_details", "reasoning_tokens");
    bool anthropic = has(u, "cache_read_input_tokens") || has(u, "cache_creation_input_tokens") ||
                     has(u, "cache_creation") || has_inside(u, "output_tokens_details", "thinking_tokens");
    if (responses && anthropic) {
      throw UsageError(prefix + " is ambiguous: it has both *_tokens_details (OpenAI Responses) and "
                       "cache_*_input_tokens (Anthropic)");
    }
    out = responses ? responses_usage(u, prefix) : anthropic_usage(u, prefix);
  } else {
    throw UsageError(prefix + " has no token counts (prompt_tokens or input_tokens)");
  }
  out.validate();
  return out;
}

Usage usage_of_value(const json& value) {
  if (!value.is_object()) throw UsageError("usage: expected a JSON object, got " + describe(value));
  auto it = value.find("usage");
  if (it != value.end()) {
    if (it->is_null()) throw UsageError("response has \"usage\": null (no usage reported)");
    return usage_object(*it, "usage");
  }
  if (value.contains("prompt_tokens") || value.contains("completion_tokens") ||
      value.contains("input_tokens") || value.contains("output_tokens")) {
    return usage_object(value, "usage");
  }
  throw UsageError("response has no usage");
}

constexpr bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// True when `text` continues, after optional JSON whitespace, a colon and optional whitespace, with
// the literal null: the key just before it is present but null, which handle_line ignores.
bool starts_with_colon_null(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && is_json_space(text[i])) ++i;
  if (i == text.size() || text[i] != ':') return false;
  ++i;
  while (i < text.size() && is_json_space(text[i])) ++i;
  return text.substr(i).starts_with("null");
}

// The first `needle` in `text` at or after `from`. memmem, not string_view::find: find looks for the
// needle's first byte, and `"` is the commonest byte of JSON; memmem was ~2x faster per chunk here.
std::size_t find_text(std::string_view text, std::string_view needle, std::size_t from) {
  if (from > text.size()) return std::string_view::npos;
  const void* hit = ::memmem(text.data() + from, text.size() - from, needle.data(), needle.size());
  if (hit == nullptr) return std::string_view::npos;
  return static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
}

// The pre-check that spares a DOM parse for the data lines that cannot change a scanner's state
// (usage.hpp states the rule). Only plain text searches, no tokenising. It errs towards parsing:
// - `"usage"` anywhere, even inside a string value, forces a parse unless `: null` follows it. An
//   escaped quote cannot forge a match: a content string holding the text "usage" reads \"usage\"
//   on the wire, and whatever string ends in `usage"` followed by `: null` is a key that is null.
// - `"message_start"` forces a parse, so that a message_start without usage still throws.
// - nlohmann decodes \uXXXX escapes in keys and values, so `"\u0075sage"` IS the key usage. Every
//   character of "usage" and "message_start" lies in U+0050..U+007F, so a line with an escape
//   `\u005`, `\u006` or `\u007` is parsed; the escapes encoders do emit (control characters,
//   non-ASCII, Go's \u003c \u003e \u0026) stay on the cheap path.
bool may_change_state(std::string_view line) {
  constexpr std::string_view kUsage = "\"usage\"";
  for (std::size_t at = find_text(line, kUsage, 0); at != std::string_view::npos;
       at = find_text(line, kUsage, at + 1)) {
    if (!starts_with_colon_null(line.substr(at + kUsage.size()))) return true;
  }
  if (find_text(line, "\"message_start\"", 0) != std::string_view::npos) return true;
  for (std::size_t at = line.find('\\'); at != std::string_view::npos; at = line.find('\\', at + 1)) {
    std::string_view escape = line.substr(at);  // backslashes are rare, so memchr (find) is quick here
    if (escape.size() > 4 && escape.starts_with("\\u00") && escape[4] >= '5' && escape[4] <= '7') return true;
  }
  return false;
}

// OpenAI streams: a chunk that carries usage and no choices is the include_usage chunk.
bool no_choices(const json& event) {
  auto it = event.find("choices");
  return it == event.end() || it->is_null() || (it->is_array() && it->empty());
}

}  // namespace

void Usage::validate() const {
  auto negative = [](const char* name, std::int64_t v) {
    if (v < 0) throw UsageError(std::string("usage ") + name + " is negative: " + std::to_string(v));
  };
  negative("prompt_tokens", prompt_tokens);
  negative("completion_tokens", completion_tokens);
  negative("cached_tokens", cached_tokens);
  negative("cache_creation_tokens", cache_creation_tokens);
  negative("cache_creation_1h_tokens", cache_creation_1h_tokens);
  negative("reasoning_tokens", reasoning_tokens);
  // Written without a sum so that huge parts cannot overflow the check itself.
  if (cache_creation_tokens > prompt_tokens || cached_tokens > prompt_tokens - cache_creation_tokens) {
    throw UsageError("usage cached_tokens (" + std::to_string(cached_tokens) + ") + cache_creation_tokens (" +
                     std::to_string(cache_creation_tokens) + ") exceed prompt_tokens (" +
                     std::to_string(prompt_tokens) + ")");
  }
  if (cache_creation_1h_tokens > cache_creation_tokens) {
    throw UsageError("usage cache_creation_1h_tokens (" + std::to_string(cache_creation_1h_tokens) +
                     ") exceed cache_creation_tokens (" + std::to_string(cache_creation_tokens) + ")");
  }
  if (reasoning_tokens > completion_tokens) {
    throw UsageError("usage reasoning_tokens (" + std::to_string(reasoning_tokens) +
                     ") exceed completion_tokens (" + std::to_string(completion_tokens) + ")");
  }
  if (completion_tokens > std::numeric_limits<std::int64_t>::max() - prompt_tokens) {
    throw UsageError("usage prompt_tokens + completion_tokens overflows a 64-bit count");
  }
}

Usage usage_from_json(const nlohmann::json& value) {
  try {
    return usage_of_value(value);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(std::string("usage: unreadable JSON value: ") + printable(e.what(), 200));
  }
}

Usage usage_from_response(std::string_view body) {
  json value;
  try {
    value = json::parse(body, nullptr, /*allow_exceptions=*/false);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(std::string("response is not JSON: ") + printable(e.what(), 200));
  }
  if (value.is_discarded()) throw UsageError("response is not JSON: " + printable(body));
  return usage_from_json(value);
}

Usage usage_from_sse(std::string_view stream) {
  SseUsageScanner scanner;
  scanner.feed(stream);
  if (!stream.empty() && stream.back() != '\n') scanner.feed("\n");  // the last line may be unterminated
  if (!scanner.usage()) throw UsageError("event stream carries no usage");
  return *scanner.usage();
}

void SseUsageScanner::feed(std::string_view bytes) {
  std::optional<UsageError> first_error;
  auto run = [&](std::string_view line) {
    try {
      handle_line(line);
    } catch (const UsageError& e) {
      if (!first_error) first_error = e;
    }
  };
  auto too_long = [&]() {
    if (!first_error) first_error = UsageError("event stream line longer than 16 MiB");
  };
  while (!bytes.empty()) {
    std::size_t nl = bytes.find('\n');
    if (discarding_) {  // the rest of an over-long line
      if (nl == std::string_view::npos) break;
      bytes.remove_prefix(nl + 1);
      discarding_ = false;
      continue;
    }
    if (nl == std::string_view::npos) {
      if (pending_.size() + bytes.size() > kMaxSseLineBytes) {
        std::string().swap(pending_);
        discarding_ = true;
        too_long();
      } else {
        pending_.append(bytes);
      }
      break;
    }
    std::string_view head = bytes.substr(0, nl);
    bytes.remove_prefix(nl + 1);
    if (pending_.size() + head.size() > kMaxSseLineBytes) {
      std::string().swap(pending_);
      too_long();
    } else if (pending_.empty()) {
      run(head);
    } else {
      pending_.append(head);
      std::string line;
      line.swap(pending_);  // pending_ is left empty, its memory released with `line`
      run(line);
    }
  }
  if (first_error) throw *first_error;
}

void SseUsageScanner::handle_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  constexpr std::string_view kData = "data:";
  if (!line.starts_with(kData)) return;  // event:, id:, retry:, comments and blank lines
  line.remove_prefix(kData.size());
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  last_usage_only_ = false;
  if (line == "[DONE]") return;
  if (!may_change_state(line)) return;  // most chunks of a stream: not parsed, hence not validated

  try {
    json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded()) throw UsageError("event stream data line is not JSON: " + printable(line));
    if (!event.is_object()) return;

    std::string type;
    if (auto it = event.find("type"); it != event.end() && it->is_string()) type = it->get<std::string>();

    if (type == "message_start") {  // Anthropic: input and cache counts (output so far)
      auto msg = event.find("message");
      if (msg == event.end() || !msg->is_object()) {
        throw UsageError("Anthropic message_start has no message object");
      }
      const json* u = field(*msg, "usage");
      if (u == nullptr) throw UsageError("Anthropic message_start has no message.usage");
      if (!u->is_object()) throw UsageError("message.usage must be an object, got " + describe(*u));
      detail::AnthropicCounts start;
      start.input = required_count(*u, "input_tokens", "message.usage");
      read_anthropic(*u, "message.usage", start);
      usage_ = anthropic_counts_usage(start, "message.usage");
      anthropic_ = start;
      return;
    }
    if (type == "message_delta") {  // Anthropic: cumulative counts, the last one wins
      const json* u = field(event, "usage");
      if (u == nullptr) return;
      if (!u->is_object()) throw UsageError("message_delta usage must be an object, got " + describe(*u));
      if (!anthropic_ && !has(*u, "input_tokens")) {
        throw UsageError("Anthropic message_delta usage without a message_start: input tokens unknown");
      }
      detail::AnthropicCounts next = anthropic_.value_or(detail::AnthropicCounts{});
      read_anthropic(*u, "usage", next);
      usage_ = anthropic_counts_usage(next, "usage");  // throws before anything changes
      anthropic_ = next;
      return;
    }
    if (type == "response.completed" || type == "response.incomplete" || type == "response.failed") {
      // OpenAI Responses API stream: the final event holds the whole response with its usage.
      auto resp = event.find("response");
      if (resp != event.end() && resp->is_object()) {
        if (const json* u = field(*resp, "usage")) usage_ = usage_object(*u, "response.usage");
      }
      return;
    }
    // OpenAI chat/completions chunk: usage is null except in the include_usage chunk.
    if (const json* u = field(event, "usage")) {
      usage_ = usage_object(*u, "usage");
      last_usage_only_ = no_choices(event);
    }
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(std::string("event stream: unreadable JSON value: ") + printable(e.what(), 200));
  }
}

}  // namespace llmbill
