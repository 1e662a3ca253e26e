#include "llmbill/sender.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

namespace llmbill {
namespace {

using nlohmann::json;

void all_to(std::vector<std::size_t>& bucket, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) bucket.push_back(i);
}

// True when an event's errors say only that its transaction_id is already stored.
bool only_already_exists(const json& errors) {
  if (!errors.is_object() || errors.size() != 1) return false;
  auto it = errors.find("transaction_id");
  if (it == errors.end() || !it->is_array() || it->empty()) return false;
  return std::all_of(it->begin(), it->end(), [](const json& c) { return c == "value_already_exist"; });
}

std::chrono::milliseconds seconds_header(const HttpReply& reply, const char* name) {
  auto it = reply.headers.find(name);
  if (it == reply.headers.end()) return std::chrono::milliseconds(-1);
  char* end = nullptr;
  double s = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || !std::isfinite(s) || s < 0) return std::chrono::milliseconds(-1);
  return std::chrono::milliseconds(static_cast<long long>(std::min(s, 3600.0) * 1000));
}

ReplyOutcome classify_422(const HttpReply& reply, std::size_t n) {
  ReplyOutcome out;
  json body = json::parse(reply.body, nullptr, false);
  const json* details = nullptr;
  if (body.is_object()) {
    auto it = body.find("error_details");
    if (it != body.end() && it->is_object()) details = &*it;
  }
  if (details == nullptr) {
    // A 422 without Lago's error shape: nothing says which event is at fault, and resending cannot
    // change the answer. Dead-letter the batch with the body so the operator sees it.
    all_to(out.dead, n);
    for (std::size_t i = 0; i < n; ++i) out.dead_reasons[i] = "422 without error details: " + reply.body.substr(0, 500);
    out.error = "lago 422 without error_details";
    return out;
  }
  if (auto whole = details->find("events"); whole != details->end()) {
    if (whole->dump().find("too_many_events") != std::string::npos) {
      all_to(out.retry, n);
      // Nothing smaller than one event exists: back off rather than resend it in a tight loop.
      out.action = n > 1 ? ReplyAction::split : ReplyAction::backoff;
      out.error = "lago: too_many_events";
      return out;
    }
    all_to(out.dead, n);
    for (std::size_t i = 0; i < n; ++i) out.dead_reasons[i] = "batch refused: " + whole->dump();
    out.error = "lago refused the batch: " + whole->dump();
    return out;
  }
  for (std::size_t i = 0; i < n; ++i) {
    auto it = details->find(std::to_string(i));
    if (it == details->end()) {
      out.retry.push_back(i);  // all-or-nothing Lago stored nothing; old Lago answers duplicate next time
    } else if (only_already_exists(*it)) {
      out.delivered.push_back(i);
      out.duplicates.push_back(i);
    } else {
      out.dead.push_back(i);
      out.dead_reasons[i] = it->dump();
    }
  }
  out.error = "lago 422 on " + std::to_string(out.dead.size()) + " event(s)";
  return out;
}

}  // namespace

ReplyOutcome classify_reply(const HttpReply& reply, std::size_t n) {
  ReplyOutcome out;
  const long s = reply.status;
  if (s >= 200 && s < 300) {
    all_to(out.delivered, n);
    return out;
  }
  if (s == 422) return classify_422(reply, n);
  if (s == 429) {
    all_to(out.retry, n);
    out.action = ReplyAction::rate_limited;
    out.wait = seconds_header(reply, "x-ratelimit-reset");
    if (out.wait.count() < 0) out.wait = seconds_header(reply, "retry-after");
    if (out.wait.count() < 0) out.action = ReplyAction::backoff;
    out.error = "lago rate limit (429)";
    return out;
  }
  if (s == 0 || s >= 500 || s == 408) {
    all_to(out.retry, n);
    out.action = ReplyAction::backoff;
    out.error = s == 0 ? "lago unreachable: " + reply.transport_error : "lago " + std::to_string(s);
    return out;
  }
  if (s == 413 && n == 1) {
    // One event larger than Lago takes: resending it alone forever (with no wait: a split) cannot help.
    out.dead.push_back(0);
    out.dead_reasons[0] = "413: the event alone is larger than Lago accepts";
    out.error = "lago 413 on a single event";
    return out;
  }
  if (s == 413) {
    all_to(out.retry, n);
    out.action = ReplyAction::split;
    out.error = "lago 413: batch too large";
    return out;
  }
  if (s == 400) {
    // Lago answers 400 only to a body without `events`: a sender bug; resending cannot help.
    all_to(out.dead, n);
    for (std::size_t i = 0; i < n; ++i) out.dead_reasons[i] = "400: " + reply.body.substr(0, 500);
    out.error = "lago 400: " + reply.body.substr(0, 200);
    return out;
  }
  // 401, 403, 404 and anything unexpected: a configuration problem. Never drop.
  all_to(out.retry, n);
  out.action = ReplyAction::config_error;
  out.error = "lago " + std::to_string(s) + " (check LAGO_API_BASE and LAGO_API_KEY): " + reply.body.substr(0, 200);
  return out;
}

std::string batch_body(const std::vector<const std::string*>& events) {
  std::size_t size = 16;
  for (const auto* e : events) size += e->size() + 1;
  std::string body;
  body.reserve(size);
  body += "{\"events\":[";
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (i) body += ',';
    body += *events[i];
  }
  body += "]}";
  return body;
}

std::string lago_batch_url(std::string_view base) {
  std::string b(base);
  while (!b.empty() && b.back() == '/') b.pop_back();
  constexpr std::string_view kApi = "/api/v1";
  if (b.size() >= kApi.size() && std::string_view(b).substr(b.size() - kApi.size()) == kApi) b.resize(b.size() - kApi.size());
  return b + "/api/v1/events/batch";
}

std::string redact_url_password(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  std::size_t start = scheme + 3;
  std::size_t end = url.find_first_of("/?#", start);  // the authority ends here
  if (end == std::string_view::npos) end = url.size();
  std::string_view authority = url.substr(start, end - start);
  auto at = authority.rfind('@');  // a raw '@' in a password: the last one ends the user info
  if (at == std::string_view::npos) return std::string(url);
  auto colon = authority.find(':');
  if (colon == std::string_view::npos || colon >= at || colon + 1 == at) return std::string(url);
  return std::string(url.substr(0, start + colon + 1)) + "***" + std::string(url.substr(start + at));
}

std::chrono::milliseconds backoff_delay(int failures, std::chrono::milliseconds base, std::chrono::milliseconds cap,
                                        double random01) {
  double d = static_cast<double>(base.count()) * std::pow(2.0, std::min(failures - 1, 30));
  d = std::min(d, static_cast<double>(cap.count()));
  return std::chrono::milliseconds(static_cast<long long>(d * (0.5 + 0.5 * random01)));
}

}  // namespace llmbill
