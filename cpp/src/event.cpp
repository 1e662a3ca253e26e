#include "llmbill/event.hpp"

#include <cstdio>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

const std::string& charged_id(const CallRecord& call, ChargeBy by) {
  switch (by) {
    case ChargeBy::user_id: return call.user_id;
    case ChargeBy::team_id: return call.team_id;
    case ChargeBy::end_user_id: break;
  }
  return call.end_user_id;
}

// Events are written straight into a string (no JSON tree): submit() runs on the caller's thread and
// this is most of its cost. Keys come in a fixed order, so the same call always gives the same bytes.
void put_string(std::string& out, std::string_view text) {
  out.push_back('"');
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      // Multi-byte UTF-8 passes through when well formed; anything else becomes U+FFFD, so the
      // event is always valid JSON.
      std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
      bool ok = len > 0 && i + len <= text.size();
      for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
      if (ok) {
        out.append(text.substr(i, len));
        i += len - 1;
      } else {
        out += "\xEF\xBF\xBD";
      }
    }
  }
  out.push_back('"');
}

void put_field(std::string& out, std::string_view name, std::string_view value) {
  out.push_back(',');
  put_string(out, name);
  out.push_back(':');
  put_string(out, value);
}

void put_field(std::string& out, std::string_view name, std::int64_t value) {
  out.push_back(',');
  put_string(out, name);
  out.push_back(':');
  out += std::to_string(value);
}

// Both namings (the seeds' input/output_tokens, LiteLLM's prompt/completion/total_tokens): users
// arrive with billable metrics built on either. Flat: Lago drops nested objects.
void put_properties(std::string& out, const CallRecord& call) {
  const Usage& u = call.usage;
  out += "{\"model\":";
  put_string(out, call.model);
  put_field(out, "input_tokens", u.prompt_tokens);
  put_field(out, "output_tokens", u.completion_tokens);
  put_field(out, "prompt_tokens", u.prompt_tokens);
  put_field(out, "completion_tokens", u.completion_tokens);
  put_field(out, "total_tokens", u.total_tokens());
  put_field(out, "cached_tokens", u.cached_tokens);
  put_field(out, "cache_creation_tokens", u.cache_creation_tokens);
  // The 1-hour writes among them (their own rate): only when there are any, so every other event
  // stays byte-identical to what earlier releases sent (resends of spooled events match).
  if (u.cache_creation_1h_tokens != 0) put_field(out, "cache_creation_1h_tokens", u.cache_creation_1h_tokens);
  put_field(out, "reasoning_tokens", u.reasoning_tokens);
  put_field(out, "response_cost", call.cost.to_usd_string());  // exact decimal string of the ledger value
  if (call.billed_amount) put_field(out, "billed_amount", call.billed_amount->to_usd_string());
  if (!call.key_alias.empty()) put_field(out, "key_alias", call.key_alias);
  if (!call.team_id.empty()) put_field(out, "team_id", call.team_id);
  if (!call.user_id.empty()) put_field(out, "user_id", call.user_id);
  if (!call.end_user_id.empty()) put_field(out, "end_user_id", call.end_user_id);
  if (call.unpriced) put_field(out, "unpriced", "true");
  if (u.estimated) put_field(out, "estimated", "true");
  out.push_back('}');
}

std::string event_json(const CallRecord& call, const std::string& code, const std::string& transaction_id,
                       const std::string& subscription) {
  std::string out;
  out.reserve(512);
  out += "{\"transaction_id\":";
  put_string(out, transaction_id);
  if (!subscription.empty()) {
    put_field(out, "external_subscription_id", subscription);
    put_field(out, "external_customer_id", subscription);  // dropped by current Lago, read by older self-hosted
  }
  put_field(out, "code", code);
  put_field(out, "timestamp", lago_timestamp(call.timestamp_ms));
  out += ",\"properties\":";
  put_properties(out, call);
  out.push_back('}');
  return out;
}

void check(const CallRecord& call, const EventOptions& options) {
  if (options.codes.empty()) throw Error("LAGO_API_EVENT_CODE: no billable metric code configured");
  if (call.call_id.empty()) throw Error("a billed call needs a call id (the Lago transaction_id)");
}

}  // namespace

ChargeBy parse_charge_by(std::string_view name) {
  if (name == "end_user_id" || name.empty()) return ChargeBy::end_user_id;
  if (name == "user_id") return ChargeBy::user_id;
  if (name == "team_id") return ChargeBy::team_id;
  throw Error("LAGO_API_CHARGE_BY: '" + std::string(name) + "' is not one of end_user_id, user_id, team_id");
}

std::string_view charge_by_name(ChargeBy by) {
  switch (by) {
    case ChargeBy::user_id: return "user_id";
    case ChargeBy::team_id: return "team_id";
    case ChargeBy::end_user_id: break;
  }
  return "end_user_id";
}

std::string lago_timestamp(std::int64_t unix_ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(unix_ms / 1000),
                static_cast<long long>(unix_ms % 1000));
  return buf;
}

BuiltEvents build_lago_events(const CallRecord& call, const EventOptions& options) {
  check(call, options);
  BuiltEvents out;
  const std::string& subscription = charged_id(call, options.charge_by);
  if (subscription.empty()) {
    out.missing_reason = "no " + std::string(charge_by_name(options.charge_by)) +
                         " on the call to charge (LAGO_API_CHARGE_BY=" + std::string(charge_by_name(options.charge_by)) + ")";
    return out;
  }
  const bool several = options.codes.size() > 1;
  for (const auto& code : options.codes) {
    std::string id = several ? call.call_id + ":" + code : call.call_id;
    out.events.push_back(event_json(call, code, id, subscription));
    out.events.back().shrink_to_fit();  // queued while Lago is down: keep only the bytes
  }
  return out;
}

std::string unbillable_event_json(const CallRecord& call, const EventOptions& options) {
  check(call, options);
  return event_json(call, options.codes.front(), call.call_id, "");
}

}  // namespace llmbill
