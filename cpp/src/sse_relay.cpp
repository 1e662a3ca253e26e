#include "llmbill/sse_relay.hpp"

#include <algorithm>
#include <optional>
#include <nlohmann/json.hpp>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

using json = nlohmann::json;

// A non-empty string `id` of `obj`, when `obj` is an object that has one.
const std::string* id_of(const json& obj) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find("id");
  if (it == obj.end() || !it->is_string()) return nullptr;
  const auto& id = it->get_ref<const std::string&>();
  return id.empty() ? nullptr : &id;
}

// The id of a data line written the way OpenAI writes its chunks, `{"id":"chatcmpl-…",…}`: read
// where it starts (nullopt for any other shape, an escaped or an empty id: the full parse decides).
std::optional<std::string_view> leading_id(std::string_view payload) {
  constexpr std::string_view kLead = R"({"id":")";
  if (!payload.starts_with(kLead)) return std::nullopt;
  const std::size_t end = payload.find_first_of("\"\\", kLead.size());
  if (end == std::string_view::npos || payload[end] != '"' || end == kLead.size()) return std::nullopt;
  return payload.substr(kLead.size(), end - kLead.size());
}

}  // namespace

std::size_t sse_event_end(std::string_view buffer) {
  const std::size_t lf = buffer.find("\n\n");
  // A CRLF blank line ends the event first only if it starts before the LF one, so only that stretch
  // is searched: a read of many LF-framed events is cut in one pass, not a scan to its end per event.
  const std::string_view before = lf == std::string_view::npos ? buffer : buffer.substr(0, lf + 3);
  const std::size_t crlf = before.find("\r\n\r\n");
  if (crlf != std::string_view::npos) return crlf + 4;
  if (lf != std::string_view::npos) return lf + 2;
  return std::string_view::npos;
}

SseEventRelay::SseEventRelay(std::string_view upstream_model, std::string_view client_model, bool strip_usage_only,
                             std::size_t max_event_bytes)
    : max_event_bytes_(std::max<std::size_t>(max_event_bytes, 3)),
      rename_from_("\"model\":\"" + std::string(upstream_model) + "\""),
      rename_to_("\"model\":\"" + std::string(client_model) + "\""),
      renames_(upstream_model != client_model),
      strip_usage_only_(strip_usage_only) {}

std::string SseEventRelay::feed(std::string_view bytes) {
  std::string out;
  if (passing_) {
    bytes = pass_long_event(bytes, out);
    if (passing_) return out;
  }
  std::string_view rest = bytes;
  std::size_t from = 0;  // where the first event's end may begin
  if (!buffer_.empty()) {  // the read continues an event: cut from the joined bytes
    // The buffer holds no complete event, so its end begins at most 3 bytes before the read: a long
    // event arriving in many reads is searched once, not once a read.
    from = buffer_.size() < 3 ? 0 : buffer_.size() - 3;
    buffer_.append(bytes);
    rest = buffer_;
  }
  std::size_t used = 0;
  for (;;) {
    const std::size_t start = std::max(used, from);
    const std::size_t end = sse_event_end(rest.substr(start));
    if (end == std::string_view::npos) break;
    const std::size_t length = start + end - used;
    relay_event(rest.substr(used, length), out);
    used += length;
  }
  if (buffer_.empty()) {
    buffer_.assign(rest.substr(used));
  } else {
    buffer_.erase(0, used);
  }
  if (buffer_.size() > max_event_bytes_) {  // not kept: passed on as it is, unread, until its end
    scan(buffer_);
    out.append(buffer_);
    pass_tail_ = buffer_.substr(buffer_.size() - 3);
    std::string().swap(buffer_);
    passing_ = true;
  }
  return out;
}

std::string_view SseEventRelay::pass_long_event(std::string_view bytes, std::string& out) {
  // pass_tail_ (the last 3 bytes passed) holds no event end: one that begins there ends in `bytes`.
  const std::string probe = pass_tail_ + std::string(bytes);
  const std::size_t end = sse_event_end(probe);
  if (end == std::string::npos) {
    scan(bytes);
    out.append(bytes);
    pass_tail_ = probe.substr(probe.size() - 3);
    return {};
  }
  const std::size_t in_read = end - pass_tail_.size();
  scan(bytes.substr(0, in_read));
  out.append(bytes.substr(0, in_read));
  pass_tail_.clear();
  passing_ = false;
  return bytes.substr(in_read);
}

void SseEventRelay::scan(std::string_view bytes) {
  try {
    scanner_.feed(bytes);
  } catch (const UsageError&) {
    // A malformed event is passed through; usage comes from the good ones.
  }
}

std::string SseEventRelay::tail() {
  std::string rest;
  rest.swap(buffer_);
  return rest;
}

void SseEventRelay::relay_event(std::string_view event, std::string& out) {
  scan(event);
  if (response_id_.empty()) note_id(event);
  if (strip_usage_only_ && scanner_.last_event_was_usage_only()) return;
  if (event.starts_with("data: {") || event.find("\ndata: {") != std::string_view::npos) ++data_events_;
  if (!renames_) {
    out.append(event);
    return;
  }
  std::size_t from = 0;
  for (std::size_t at; (at = event.find(rename_from_, from)) != std::string_view::npos; from = at + rename_from_.size()) {
    out.append(event.substr(from, at - from));
    out.append(rename_to_);
  }
  out.append(event.substr(from));
}

void SseEventRelay::note_id(std::string_view event) {
  // The first data line that mentions "id" is read: the reply's id, or Anthropic's message_start's
  // (`message.id`), or the Responses API's response.created's (`response.id`). Lines end at \n or \r.
  while (!event.empty()) {
    const std::size_t nl = event.find_first_of("\r\n");
    const std::string_view line = event.substr(0, nl);
    event.remove_prefix(nl == std::string_view::npos ? event.size() : nl + 1);
    if (!line.starts_with("data:") || line.find("\"id\"") == std::string_view::npos) continue;
    std::string_view payload = line.substr(5);
    payload.remove_prefix(std::min(payload.find_first_not_of(" \t"), payload.size()));
    if (const auto id = leading_id(payload)) {
      // The common case, most of a stream's relay cost when it was parsed into a tree: the line is
      // only validated (json::accept builds nothing), the id taken where it stands.
      if (json::accept(payload)) response_id_ = std::string(*id);
      return;
    }
    const json data = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (!data.is_object()) return;
    const std::string* id = id_of(data);
    for (const char* holder : {"message", "response"}) {
      if (id != nullptr) break;
      if (auto it = data.find(holder); it != data.end()) id = id_of(*it);
    }
    if (id != nullptr) response_id_ = *id;
    return;
  }
}

}  // namespace llmbill
