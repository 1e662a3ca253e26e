#include "llmbill/anthropic_chat_stream.hpp"

#include <nlohmann/json.hpp>
#include <utility>

#include "llmbill/errors.hpp"
#include "llmbill/json_text.hpp"

namespace llmbill {
namespace {

// Ordered: a tool's `input` given whole at its block's start is passed on with its keys in the order
// Anthropic sent them.
using json = nlohmann::ordered_json;

constexpr int kMaxDumpDepth = 64;  // dump() recurses: a value nested deeper is not written out

const json* member(const json& obj, const char* name) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(name);
  return it == obj.end() ? nullptr : &*it;
}

// A non-empty string member, or nullptr.
const std::string* text_of(const json& obj, const char* name) {
  const json* value = member(obj, name);
  if (value == nullptr || !value->is_string()) return nullptr;
  const auto& text = value->get_ref<const std::string&>();
  return text.empty() ? nullptr : &text;
}

bool is(const json* value, std::string_view text) {
  return value != nullptr && value->is_string() && value->get_ref<const std::string&>() == text;
}

// A text or thinking block (or delta) with something in it: the chunk's field and the text, else
// {"", nullptr}.
std::pair<const char*, const std::string*> written_text(const json& obj, std::string_view text_type,
                                                        std::string_view thinking_type) {
  const json* type = member(obj, "type");
  if (is(type, text_type)) return {"content", text_of(obj, "text")};
  if (is(type, thinking_type)) return {"reasoning_content", text_of(obj, "thinking")};
  return {"", nullptr};
}

bool nests_within(const json& value, int depth) {
  if (!value.is_structured()) return true;
  if (depth == 0) return value.empty();
  for (const auto& child : value) {
    if (!nests_within(child, depth - 1)) return false;
  }
  return true;
}

// JSON's falsy values as Python reads them: null, false, 0, "", [] and {}.
bool truthy(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return value.get<bool>();
    case json::value_t::number_integer: return value.get<std::int64_t>() != 0;
    case json::value_t::number_unsigned: return value.get<std::uint64_t>() != 0;
    case json::value_t::number_float: return value.get<double>() != 0.0;
    case json::value_t::string: return !value.get_ref<const std::string&>().empty();  // empty() is false for every string
    default: return !value.empty();  // arrays and objects
  }
}

// A block's index as the key of the maps: its JSON text (a missing index is null, as Python's .get
// reads it). The event's nesting was bounded first (bounded_index).
std::string index_key(const json* index) { return index == nullptr ? std::string("null") : index->dump(); }

bool bounded_index(const json& event) {
  const json* index = member(event, "index");
  return index == nullptr || nests_within(*index, kMaxDumpDepth);
}

void append_value(const json* value, std::string& out);

// Digits of a JSON integer that is not negative (no leading zero): how many, or 0 when none.
std::size_t plain_index(std::string_view text) {
  std::size_t n = 0;
  while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n;
  return n > 1 && text[0] == '0' ? 0 : n;
}

// Anthropic's most frequent events, written as Anthropic writes them (compact, in this key order),
// are recognised by their bytes alone: a DOM parse of each was most of a stream's cost. Anything
// else — other spacing, key order or escapes — takes the general path, which reads it the same way.
enum class Known { other, text_delta, ping, block_stop, message_stop };

Known known_event(std::string_view data, std::string_view& text) {
  constexpr std::string_view kDelta = R"({"type":"content_block_delta","index":)";
  constexpr std::string_view kText = R"(,"delta":{"type":"text_delta","text":)";
  constexpr std::string_view kStop = R"({"type":"content_block_stop","index":)";
  if (data.starts_with(kDelta)) {
    data.remove_prefix(kDelta.size());
    const std::size_t digits = plain_index(data);
    if (digits == 0 || !data.substr(digits).starts_with(kText)) return Known::other;
    data.remove_prefix(digits + kText.size());
    const std::size_t literal = canonical_json_string(data);
    if (literal == 0 || data.substr(literal) != "}}") return Known::other;
    text = data.substr(0, literal);
    return Known::text_delta;
  }
  if (data == R"({"type":"ping"})") return Known::ping;
  if (data == R"({"type":"message_stop"})") return Known::message_stop;
  if (data.starts_with(kStop)) {
    data.remove_prefix(kStop.size());
    const std::size_t digits = plain_index(data);
    return digits != 0 && data.substr(digits) == "}" ? Known::block_stop : Known::other;
  }
  return Known::other;
}

}  // namespace

namespace {

// A member as it was sent (null when missing); callers bound its nesting first.
void append_value(const json* value, std::string& out) {
  if (value == nullptr) {
    out += "null";
  } else if (value->is_string()) {
    append_json_string(value->get_ref<const std::string&>(), out);
  } else {
    out += value->dump();
  }
}

}  // namespace

std::string anthropic_finish_reason(const std::optional<std::string>& stop_reason, bool tool_calls) {
  std::string reason = "stop";
  if (stop_reason) {
    const std::string& s = *stop_reason;
    if (s == "max_tokens" || s == "model_context_window_exceeded") reason = "length";
    else if (s == "tool_use") reason = "tool_calls";
    else if (s == "refusal") reason = "content_filter";
  }
  // tool_use that only carried the response_format JSON is a plain stop.
  return reason == "tool_calls" && !tool_calls ? "stop" : reason;
}

AnthropicChatStream::AnthropicChatStream(std::string_view model, bool include_usage, std::int64_t created,
                                         std::string_view json_tool)
    : include_usage_(include_usage), json_tool_(json_tool) {
  head_ = ",\"object\":\"chat.completion.chunk\",\"created\":" + std::to_string(created) + ",\"model\":";
  append_json_string(model, head_);
  head_ += ",\"system_fingerprint\":null,\"choices\":";
}

void AnthropicChatStream::scan(std::string_view bytes) {
  try {
    scanner_.feed(bytes);
  } catch (const UsageError& e) {
    if (!usage_error_) usage_error_ = e.what();
  }
}

void AnthropicChatStream::fail(StreamFailure why) {
  if (failure_ == StreamFailure::none) failure_ = why;
}

void AnthropicChatStream::feed(std::string_view bytes, std::vector<std::string>& out) {
  scan(bytes);
  auto strip_cr = [](std::string_view l) { return l.ends_with('\r') ? l.substr(0, l.size() - 1) : l; };
  std::size_t nl = bytes.find('\n');
  if (!pending_.empty() && nl != std::string_view::npos) {  // the read ends the line a previous one began
    pending_.append(bytes.substr(0, nl));
    bytes.remove_prefix(nl + 1);
    std::string joined;
    joined.swap(pending_);
    line(strip_cr(joined), out);
    nl = bytes.find('\n');
  }
  while (nl != std::string_view::npos) {
    line(strip_cr(bytes.substr(0, nl)), out);
    bytes.remove_prefix(nl + 1);
    nl = bytes.find('\n');
  }
  pending_.append(bytes);
  if (pending_.size() > kMaxSseLineBytes) {
    std::string().swap(pending_);
    fail(StreamFailure::line_too_long);
  }
}

void AnthropicChatStream::finish(std::vector<std::string>& out) {
  if (finished_) return;
  finished_ = true;
  if (!pending_.empty()) {  // a last line without its newline
    scan("\n");
    std::string last;
    last.swap(pending_);
    std::string_view l = last;
    while (l.ends_with('\r')) l.remove_suffix(1);
    line(l, out);
  }
  line("", out);  // a last event without its blank line
  if (failure_ != StreamFailure::none) return;
  if (!stopped_) {
    fail(StreamFailure::ended_early);
    return;
  }
  const auto& u = usage();
  if (include_usage_ && u) {
    std::string chunk = "data: {\"id\":";
    append_json_string(id_, chunk);
    chunk += head_;
    chunk += "[],\"usage\":{\"prompt_tokens\":" + std::to_string(u->prompt_tokens) +
             ",\"completion_tokens\":" + std::to_string(u->completion_tokens) +
             ",\"total_tokens\":" + std::to_string(u->total_tokens()) +
             ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(u->cached_tokens) +
             "},\"completion_tokens_details\":{\"reasoning_tokens\":" + std::to_string(u->reasoning_tokens) +
             "},\"cache_read_input_tokens\":" + std::to_string(u->cached_tokens) +
             ",\"cache_creation_input_tokens\":" + std::to_string(u->cache_creation_tokens) + "}}\n\n";
    out.push_back(std::move(chunk));
  }
  out.emplace_back("data: [DONE]\n\n");
}

void AnthropicChatStream::line(std::string_view l, std::vector<std::string>& out) {
  if (l.starts_with("data:")) {
    if (failure_ != StreamFailure::none || stopped_) return;  // no later event reaches the client
    std::string_view value = l.substr(5);
    if (value.starts_with(' ')) value.remove_prefix(1);
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
    if (data_.size() > kMaxSseLineBytes) {
      std::string().swap(data_);
      has_data_ = false;
      fail(StreamFailure::event_too_long);
    }
  } else if (l.empty() && has_data_) {  // a blank line ends the event
    event(out);
    data_.clear();
    has_data_ = false;
  }
  // `event:` names repeat the data's `type`; comments and id:/retry: say nothing here.
}

void AnthropicChatStream::event(std::vector<std::string>& out) {
  if (failure_ != StreamFailure::none || stopped_) return;
  std::string_view text;
  switch (known_event(data_, text)) {
    case Known::text_delta:
      if (text.size() > 2) chunk(std::string("{\"content\":").append(text).append("}"), "", out);  // "" says nothing
      return;
    case Known::ping:
    case Known::block_stop:
      return;
    case Known::message_stop:
      stop(out);
      return;
    case Known::other:
      break;
  }
  const json e = json::parse(data_, nullptr, /*allow_exceptions=*/false);
  if (!e.is_object()) {  // unparsable (discarded) or not an object
    fail(StreamFailure::unreadable_event);
    return;
  }
  if (!bounded_index(e)) {  // too deep to write as a key
    fail(StreamFailure::unreadable_event);
    return;
  }
  const json* type = member(e, "type");
  if (type == nullptr || !type->is_string()) return;
  const std::string& kind = type->get_ref<const std::string&>();
  if (kind == "content_block_delta") {
    const json* delta = member(e, "delta");
    if (delta == nullptr || !delta->is_object()) return;
    const std::string* text = nullptr;
    if (const auto [field, said] = written_text(*delta, "text_delta", "thinking_delta"); said != nullptr) {
      text_chunk(field, *said, out);
    } else if (is(member(*delta, "type"), "input_json_delta") && (text = text_of(*delta, "partial_json")) != nullptr) {
      const std::string key = index_key(member(e, "index"));
      if (json_blocks_.contains(key)) {  // the response_format tool's JSON is the reply's content
        text_chunk("content", *text, out);
      } else if (auto tool = tools_.find(key); tool != tools_.end()) {
        std::string d = "{\"tool_calls\":[{\"index\":" + std::to_string(tool->second) + ",\"function\":{\"arguments\":";
        append_json_string(*text, d);
        chunk(d + "}}]}", "", out);
      }
    }
  } else if (kind == "content_block_start") {
    const json* block = member(e, "content_block");
    if (block == nullptr || !block->is_object()) return;
    const json* btype = member(*block, "type");
    if (const auto [field, said] = written_text(*block, "text", "thinking"); said != nullptr) {
      text_chunk(field, *said, out);
    } else if (is(btype, "tool_use") && is(member(*block, "name"), json_tool_)) {
      json_blocks_.insert(index_key(member(e, "index")));
    } else if (is(btype, "tool_use")) {
      const json* id = member(*block, "id");
      const json* name = member(*block, "name");
      const json* input = member(*block, "input");
      for (const json* v : {id, name, input}) {
        if (v != nullptr && !nests_within(*v, kMaxDumpDepth)) {
          fail(StreamFailure::unreadable_event);
          return;
        }
      }
      const std::int64_t position = static_cast<std::int64_t>(tools_.size());
      tools_[index_key(member(e, "index"))] = position;
      std::string d = "{\"tool_calls\":[{\"index\":" + std::to_string(position) + ",\"id\":";
      append_value(id, d);
      d += ",\"type\":\"function\",\"function\":{\"name\":";
      append_value(name, d);
      d += ",\"arguments\":";
      // Usually empty here, the deltas carrying the arguments; given whole, written compact.
      append_json_string(input != nullptr && truthy(*input) ? input->dump() : std::string(), d);
      chunk(d + "}}]}", "", out);
    }
  } else if (kind == "message_start") {
    const json* message = member(e, "message");
    const std::string* id = message != nullptr ? text_of(*message, "id") : nullptr;
    id_ = id != nullptr ? *id : std::string();
    chunk("{\"role\":\"assistant\",\"content\":\"\"}", "", out);
  } else if (kind == "message_delta") {
    const json* delta = member(e, "delta");
    const json* reason = delta != nullptr ? member(*delta, "stop_reason") : nullptr;
    if (reason != nullptr && !reason->is_null()) {
      stop_reason_ = reason->is_string() ? reason->get<std::string>() : std::string();
    }
  } else if (kind == "message_stop") {
    stop(out);
  } else if (kind == "error") {
    failed_event_ = data_;
    fail(StreamFailure::error_event);
  }
  // ping, content_block_stop and event types added later carry nothing for the client.
}

void AnthropicChatStream::text_chunk(std::string_view field, std::string_view text,
                                     std::vector<std::string>& out) const {
  std::string delta = "{\"";
  delta.append(field).append("\":");
  append_json_string(text, delta);
  chunk(delta + "}", "", out);
}

void AnthropicChatStream::stop(std::vector<std::string>& out) {
  stopped_ = true;
  chunk("{}", anthropic_finish_reason(stop_reason_, !tools_.empty()), out);
}

void AnthropicChatStream::chunk(std::string_view delta, std::string_view finish_reason,
                                std::vector<std::string>& out) const {
  std::string c;
  c.reserve(head_.size() + id_.size() + delta.size() + 96);
  c += "data: {\"id\":";
  append_json_string(id_, c);
  c += head_;
  c += "[{\"index\":0,\"delta\":";
  c += delta;
  c += ",\"logprobs\":null,\"finish_reason\":";
  if (finish_reason.empty()) {
    c += "null";
  } else {
    append_json_string(finish_reason, c);
  }
  c += include_usage_ ? "}],\"usage\":null}\n\n" : "}]}\n\n";
  out.push_back(std::move(c));
}

}  // namespace llmbill
