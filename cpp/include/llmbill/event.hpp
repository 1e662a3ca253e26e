// The Lago usage event of one call (../shared/docs/lago-api.md, "Event fields" and "llmbill's event
// properties").
//
// The transaction_id and timestamp are fixed once, when the call is recorded, and travel with the
// event through the spool, so every resend is byte-identical: Lago's default store rejects it as
// `value_already_exist` and its ClickHouse store collapses it — never billed twice. A call that emits
// one event per code gets `<call id>:<code>` ids, because Lago's uniqueness key ignores the code.
//
// Thread safety: pure functions.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmbill/money.hpp"
#include "llmbill/usage.hpp"

namespace llmbill {

// Which id of a call is the Lago subscription billed (LAGO_API_CHARGE_BY).
enum class ChargeBy : std::uint8_t { end_user_id, user_id, team_id };
ChargeBy parse_charge_by(std::string_view name);  // throws Error naming the accepted values
std::string_view charge_by_name(ChargeBy by);

struct CallRecord {
  std::string call_id;              // unique per call; becomes the transaction_id
  std::int64_t timestamp_ms = 0;    // wall-clock time of the call, Unix milliseconds
  std::string model;
  Usage usage;
  Money cost;
  bool unpriced = false;            // the model had no price: billed by tokens, cost 0
  std::string key_alias;
  std::string user_id;              // internal user attached to the key
  std::string team_id;              // team attached to the key
  std::string end_user_id;          // the customer: OpenAI `user` field
  // What the customer pays (cost with its margin); set only when a margin applies, so the events of
  // calls without one stay byte-identical to earlier releases.
  std::optional<Money> billed_amount;
};

struct EventOptions {
  std::vector<std::string> codes;   // LAGO_API_EVENT_CODE (one or more billable metric codes)
  ChargeBy charge_by = ChargeBy::end_user_id;
};

struct BuiltEvents {
  std::vector<std::string> events;  // JSON objects, one per code, ready for a batch
  std::string missing_reason;       // set (and events empty) when the call has no id to charge
  bool ok() const { return missing_reason.empty(); }
};

// One event per code; or, when the id chosen by charge_by is empty, no event and the reason.
// Throws Error when codes is empty or the call id is empty.
BuiltEvents build_lago_events(const CallRecord& call, const EventOptions& options);

// The same event body for a call with no id to charge, kept in the dead letters so an operator can
// see (and replay after fixing) exactly what was not sent.
std::string unbillable_event_json(const CallRecord& call, const EventOptions& options);

// "1786000000123" ms → "1786000000.123" (Lago reads Unix seconds with a fraction).
std::string lago_timestamp(std::int64_t unix_ms);

}  // namespace llmbill
