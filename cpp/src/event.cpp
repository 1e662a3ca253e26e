#include "llmbill/event.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

using nlohmann::json;

const std::string& charged_id(const CallRecord& call, ChargeBy by) {
  switch (by) {
    case ChargeBy::user_id: return call.user_id;
    case ChargeBy::team_id: return call.team_id;
    case ChargeBy::end_user_id: break;
  }
  return call.end_user_id;
}

json properties_of(const CallRecord& call) {
  const Usage& u = call.usage;
  // Both namings (the seeds' input/output_tokens, LiteLLM's prompt/completion/total_tokens): users
  // arrive with billable metrics built on either. Flat: Lago drops nested objects.
  json p = {
      {"model", call.model},
      {"input_tokens", u.prompt_tokens},
      {"output_tokens", u.completion_tokens},
      {"prompt_tokens", u.prompt_tokens},
      {"completion_tokens", u.completion_tokens},
      {"total_tokens", u.total_tokens()},
      {"cached_tokens", u.cached_tokens},
      {"cache_creation_tokens", u.cache_creation_tokens},
      {"reasoning_tokens", u.reasoning_tokens},
      {"response_cost", call.cost.to_usd_string()},  // exact decimal string of the ledger value
  };
  if (!call.key_alias.empty()) p["key_alias"] = call.key_alias;
  if (!call.team_id.empty()) p["team_id"] = call.team_id;
  if (!call.user_id.empty()) p["user_id"] = call.user_id;
  if (!call.end_user_id.empty()) p["end_user_id"] = call.end_user_id;
  if (call.unpriced) p["unpriced"] = "true";
  if (u.estimated) p["estimated"] = "true";
  return p;
}

json event_json(const CallRecord& call, const std::string& code, const std::string& transaction_id,
                const std::string& subscription) {
  json e = {
      {"transaction_id", transaction_id},
      {"code", code},
      {"timestamp", lago_timestamp(call.timestamp_ms)},
      {"properties", properties_of(call)},
  };
  if (!subscription.empty()) {
    e["external_subscription_id"] = subscription;
    e["external_customer_id"] = subscription;  // dropped by current Lago, read by older self-hosted Lago
  }
  return e;
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
    out.events.push_back(event_json(call, code, id, subscription).dump());
    out.events.back().shrink_to_fit();  // queued while Lago is down: keep only the bytes
  }
  return out;
}

std::string unbillable_event_json(const CallRecord& call, const EventOptions& options) {
  check(call, options);
  return event_json(call, options.codes.front(), call.call_id, "").dump();
}

}  // namespace llmbill
