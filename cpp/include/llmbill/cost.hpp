// The cost of one call: tokens × per-token prices, exact (Money), itemised.
//
// Rules (../shared/docs/usage-semantics.md):
// - uncached input = prompt − cache reads − cache writes, at the input rate;
//   cache reads at cache_read (else the input rate), cache writes at cache_creation (else input);
//   the 1-hour writes among them (Anthropic) at cache_creation_1h, else at the 5-minute write rate.
// - output = completion − reasoning at the output rate; reasoning at the reasoning rate (else output).
// - tiers: when prompt_tokens exceeds a tier's threshold, that tier's rates apply to the WHOLE request
//   (every input token, and output where the tier gives an output rate), the highest such tier winning.
//   A tier that gives a cache-write rate but no 1-hour one makes 1-hour writes fall back to the tier's
//   write rate (a lower tier's 1h rate would under-price them).
// - per_request price added once.
// Throws UnknownModelError for a model with no per-token or per-request price, UsageError for an
// invalid usage, MoneyOverflowError past the range (unreachable for real token counts).
#pragma once
#include <cstdint>

#include "llmbill/money.hpp"
#include "llmbill/prices.hpp"
#include "llmbill/usage.hpp"

namespace llmbill {

struct Cost {
  Money input;
  Money cache_read;
  Money cache_creation;     // all cache writes, the 1-hour ones included
  Money cache_creation_1h;  // the 1-hour writes' part of cache_creation (not added again to total)
  Money output;
  Money reasoning;
  Money per_request;
  Money total;
  std::int64_t tier_above_tokens = 0;  // the tier applied; 0 = base rates
};

Cost compute_cost(const ModelPrice& price, const Usage& usage);

}  // namespace llmbill
