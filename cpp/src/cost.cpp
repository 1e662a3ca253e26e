#include "llmbill/cost.hpp"

#include "llmbill/errors.hpp"

namespace llmbill {

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

}  // namespace llmbill
