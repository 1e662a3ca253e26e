// The core's half of settling a successful call: its exact cost, its spend in the ledger and its Lago
// event spooled, and its spend-log row written as the line the journal and the spend flush take, in
// one step. The proxy's settle (python/llmbill/proxy/settle.py) calls this once a call when no margin
// applies — the other half (the journal's write, reservations, webhooks, metrics) stays with the
// Python state it reads — so a call crosses into the core once to be billed.
//
//   Settled s = settle_call(ledger, &pipeline, &price, call, "key-hash");
//   s.cost->total == ledger.get(EntityKind::key, "key-hash").spend (for a first call)
#pragma once
#include <optional>
#include <string>

#include "llmbill/cost.hpp"
#include "llmbill/event.hpp"
#include "llmbill/ledger.hpp"
#include "llmbill/pipeline.hpp"
#include "llmbill/prices.hpp"
#include "llmbill/spend_row.hpp"

namespace llmbill {

struct Settled {
  std::optional<Cost> cost;  // none: the model has no price (billed by its tokens, cost 0, flagged)
  // Why the call's Lago event is not spooled ("" when it is, or when there is no pipeline). The call
  // is already in the ledger then: the caller logs this and its spend log row keeps the call for
  // reconcile, as when the spool is full.
  std::string spool_error;
  std::string row_line;  // the call's spend-log row (spend_row.hpp), when settle_call was given its fields
};

// Prices `call.usage` with `price` (null: unpriced), records it in `ledger` under `key` and the call's
// user, team and customer (the call's cost: no margin), then spools its event(s) (pipeline null: no
// Lago). `call.cost` and `call.unpriced` are set here from the price. Throws before recording anything
// when the usage cannot be priced or counted (UsageError, MoneyOverflowError); a spool failure after
// the ledger took the call is reported in `spool_error`, never thrown, so the call is billed once.
// `row` (null: none) adds the call's spend-log row as billed, in `row_line`.
Settled settle_call(Ledger& ledger, Pipeline* pipeline, const ModelPrice* price, CallRecord& call,
                    const std::string& key, const SpendRowFields* row = nullptr);

}  // namespace llmbill
