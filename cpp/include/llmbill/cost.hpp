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

// The most any call of at most `prompt_tokens` prompt and `completion_tokens` completion tokens can
// cost at these prices, however its usage splits: every prompt token at the highest prompt-side rate
// (input, cache read, cache write — cache writes can cost more than input) and every completion token
// at the highest completion-side rate (output, reasoning), over the base rates and every tier (a tier
// can apply whatever the prompt turns out to be), plus the per-request price. Budget reservations rest
// on it. Throws like compute_cost: UnknownModelError unpriced, UsageError for negative counts.
Money cost_upper_bound(const ModelPrice& price, std::int64_t prompt_tokens, std::int64_t completion_tokens);

}  // namespace llmbill
