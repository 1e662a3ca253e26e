#include "llmbill/cost.hpp"

#include <algorithm>
#include <initializer_list>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

// The highest of the present rates, or zero when none is present.
Money highest(Money so_far, std::initializer_list<const std::optional<Money>*> rates) {
  for (const auto* rate : rates) {
    if (*rate) so_far = std::max(so_far, **rate);
  }
  return so_far;
}

}  // namespace

Cost compute_cost(const ModelPrice& price, const Usage& usage) {
  if (!price.priced()) {
    throw UnknownModelError("model '" + price.name + "' has no per-token or per-request price");
  }
  usage.validate();

  TokenRates rates = price.base;
  Cost cost;
  for (const PriceTier& tier : price.tiers) {  // ascending: the highest crossed tier wins
    if (usage.prompt_tokens > tier.above_tokens) {
      rates.overlay(tier.rates);
      if (tier.rates.cache_creation && !tier.rates.cache_creation_1h) rates.cache_creation_1h.reset();
      cost.tier_above_tokens = tier.above_tokens;
    }
  }
  const Money input = rates.input.value_or(Money());
  const Money output = rates.output.value_or(Money());

  const std::int64_t uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_creation_tokens;
  cost.input = input.times(uncached);
  cost.cache_read = rates.cache_read.value_or(input).times(usage.cached_tokens);
  const Money write_5m = rates.cache_creation.value_or(input);
  cost.cache_creation_1h = rates.cache_creation_1h.value_or(write_5m).times(usage.cache_creation_1h_tokens);
  cost.cache_creation =
      write_5m.times(usage.cache_creation_tokens - usage.cache_creation_1h_tokens) + cost.cache_creation_1h;
  cost.output = output.times(usage.completion_tokens - usage.reasoning_tokens);
  cost.reasoning = rates.reasoning.value_or(output).times(usage.reasoning_tokens);
  cost.per_request = price.per_request.value_or(Money());
  cost.total = cost.input + cost.cache_read + cost.cache_creation + cost.output + cost.reasoning + cost.per_request;
  return cost;
}

Money cost_upper_bound(const ModelPrice& price, std::int64_t prompt_tokens, std::int64_t completion_tokens) {
  if (!price.priced()) {
    throw UnknownModelError("model '" + price.name + "' has no per-token or per-request price");
  }
  if (prompt_tokens < 0 || completion_tokens < 0) throw UsageError("token counts must not be negative");
  // compute_cost only ever uses one of these values (or falls back to another of them), so their
  // maximum bounds every rate a token of that side can be billed at.
  auto prompt_rate = [](Money m, const TokenRates& r) { return highest(m, {&r.input, &r.cache_read, &r.cache_creation}); };
  auto completion_rate = [](Money m, const TokenRates& r) { return highest(m, {&r.output, &r.reasoning}); };
  Money in = prompt_rate(Money(), price.base);
  Money out = completion_rate(Money(), price.base);
  for (const PriceTier& tier : price.tiers) {
    in = prompt_rate(in, tier.rates);
    out = completion_rate(out, tier.rates);
  }
  return in.times(prompt_tokens) + out.times(completion_tokens) + price.per_request.value_or(Money());
}

}  // namespace llmbill
