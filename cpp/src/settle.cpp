// One crossing per call instead of three (price, ledger, spool): each call from Python on the request
// path converts its arguments and takes the interpreter's lock back, and at concurrency 1 every step
// runs cold.
#include "llmbill/settle.hpp"

#include "llmbill/errors.hpp"

namespace llmbill {

Settled settle_call(Ledger& ledger, Pipeline* pipeline, const ModelPrice* price, CallRecord& call,
                    const std::string& key, const SpendRowFields* row) {
  Settled out;
  if (price != nullptr) out.cost = compute_cost(*price, call.usage);
  call.unpriced = !out.cost.has_value();
  call.cost = out.cost ? out.cost->total : Money();
  // Made before the ledger records the call: should it throw (memory), nothing is billed half.
  if (row != nullptr) out.row_line = spend_row_line(call, *row);
  ledger.record(Attribution{key, call.user_id, call.team_id, call.end_user_id}, call.model, call.usage, call.cost);
  if (pipeline == nullptr) return out;
  try {
    pipeline->submit(call);
  } catch (const Error& e) {  // spool full or closed: the ledger has the call, so it must not throw now
    out.spool_error = e.what();
  }
  return out;
}

}  // namespace llmbill
